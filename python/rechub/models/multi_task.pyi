from typing import Any, Optional, Sequence, Union

import numpy as np

from ..basic.features import DenseFeature, SparseFeature

Feature = Union[SparseFeature, DenseFeature]
MLPParams = dict[str, Any]  # {"dims": [..], "dropout": float, "activation": str, "output_layer": bool}

class _MultiTaskModel:
    kind: str
    features: list[Feature]
    task_types: list[str]
    task_names: list[str]
    n_task: int
    seed: int
    @property
    def sparse_features(self) -> list[SparseFeature]: ...
    @property
    def dense_features(self) -> list[DenseFeature]: ...
    def parameter_count(self) -> int: ...
    def state_dict(self) -> dict[str, np.ndarray]: ...

class SharedBottom(_MultiTaskModel):
    def __init__(self, features: Sequence[Feature], task_types: Sequence[str], bottom_params: MLPParams,
                 tower_params_list: Sequence[MLPParams], task_names: Optional[Sequence[str]] = ...,
                 seed: int = ...) -> None: ...

class ESMM(_MultiTaskModel):
    user_features: list[Feature]
    item_features: list[Feature]
    def __init__(self, user_features: Sequence[Feature], item_features: Sequence[Feature], cvr_params: MLPParams,
                 ctr_params: MLPParams, task_names: Optional[Sequence[str]] = ..., seed: int = ...) -> None: ...

class MMOE(_MultiTaskModel):
    def __init__(self, features: Sequence[Feature], task_types: Sequence[str], n_expert: int,
                 expert_params: MLPParams, tower_params_list: Sequence[MLPParams],
                 task_names: Optional[Sequence[str]] = ..., seed: int = ...) -> None: ...

class OMoE(MMOE): ...

class PLE(_MultiTaskModel):
    def __init__(self, features: Sequence[Feature], task_types: Sequence[str], n_level: int, n_expert_specific: int,
                 n_expert_shared: int, expert_params: MLPParams, tower_params_list: Sequence[MLPParams],
                 task_names: Optional[Sequence[str]] = ..., seed: int = ...) -> None: ...

class AITM(_MultiTaskModel):
    def __init__(self, features: Sequence[Feature], n_task: int, bottom_params: MLPParams,
                 tower_params_list: Sequence[MLPParams], calibrator_weight: float = ...,
                 task_names: Optional[Sequence[str]] = ..., seed: int = ...) -> None: ...
