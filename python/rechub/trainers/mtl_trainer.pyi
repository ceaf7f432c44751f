from os import PathLike
from typing import Any, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

from ..models.multi_task import _MultiTaskModel
from ..utils.data import DataLoader

class MTLTrainer:
    model: _MultiTaskModel
    task_types: list[str]
    n_task: int
    model_path: Optional[Union[str, PathLike[str]]]
    batch_size_eval: int
    def __init__(self, model: _MultiTaskModel, task_types: Sequence[str], optimizer_fn: Any = ...,
                 optimizer_params: Optional[dict[str, float]] = ..., regularization_params: Optional[dict[str, float]] = ...,
                 scheduler_fn: Any = ..., scheduler_params: Optional[dict[str, float]] = ..., adaptive_params: Optional[dict[str, Any]] = ...,
                 n_epoch: int = ..., earlystop_taskid: int = ..., earlystop_patience: int = ..., device: str = ...,
                 gpus: Optional[Sequence[int]] = ..., model_path: Optional[Union[str, PathLike[str]]] = ...,
                 model_logger: None = ..., task_weights: Optional[Sequence[float]] = ...,
                 task_specific_lr: Optional[dict[str, float]] = ..., pos_weights: Optional[Sequence[float]] = ...,
                 clip_grad_norm: float = ..., earlystop_metric: Optional[str] = ..., seed: int = ...,
                 progress: bool = ..., batch_size_eval: int = ...) -> None: ...
    def fit(self, train_dataloader: DataLoader, val_dataloader: Optional[DataLoader] = ..., mode: str = ...,
            seed: int = ...) -> list[list[float]]: ...
    def evaluate(self, model: _MultiTaskModel, data_loader: DataLoader) -> list[float]: ...
    def evaluate_metrics(self, model: _MultiTaskModel, data_loader: DataLoader) -> dict[str, dict[str, float]]: ...
    def predict(self, model: _MultiTaskModel, data_loader: DataLoader) -> npt.NDArray[np.float64]: ...
    def export_onnx(self, output_path: Union[str, PathLike[str]], dummy_input: Any = ..., batch_size: int = ...,
                    seq_length: int = ..., opset_version: Optional[int] = ..., dynamic_batch: bool = ...,
                    device: Optional[str] = ..., verbose: bool = ..., onnx_export_kwargs: Optional[dict[str, Any]] = ...
                    ) -> bool: ...
    def save_model(self, path: Union[str, PathLike[str]]) -> None: ...
    @property
    def history(self) -> list[dict[str, Any]]: ...
    @property
    def task_weights(self) -> list[float]: ...
