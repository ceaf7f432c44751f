from typing import Any, Mapping, Optional, Sequence

import numpy as np
import numpy.typing as npt

Columns = Any  # dict of 1-D arrays by feature name, or a pandas DataFrame
Labels = Any   # array [n] or [n, n_task], a DataFrame / Series, or None

class DataLoader:
    n: int
    batch_size: int
    shuffle: bool
    seed: int
    def __init__(self, x: Columns, y: Labels = ..., batch_size: int = ..., shuffle: bool = ..., seed: int = ...) -> None: ...
    def __len__(self) -> int: ...
    @property
    def has_labels(self) -> bool: ...
    def label_names(self, n_task: int) -> list[str]: ...

class DataGenerator:
    x: dict[str, np.ndarray]
    y: Labels
    def __init__(self, x: Columns, y: Labels) -> None: ...
    def generate_dataloader(self, x_val: Optional[Columns] = ..., y_val: Labels = ..., x_test: Optional[Columns] = ...,
                            y_test: Labels = ..., split_ratio: Optional[Sequence[float]] = ..., batch_size: int = ...,
                            num_workers: int = ..., shuffle: bool = ..., seed: int = ...
                            ) -> tuple[DataLoader, Optional[DataLoader], Optional[DataLoader]]: ...

def ali_ccp_synthetic(rows: int, seed: int = ..., first_row: int = ..., vocab_sizes: Optional[Sequence[int]] = ...,
                      num_dense: int = ...) -> tuple[dict[str, np.ndarray], npt.NDArray[np.float32]]: ...
