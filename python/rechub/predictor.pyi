from os import PathLike
from typing import Any, Union

import numpy as np
import numpy.typing as npt

class Predictor:
    task_names: list[str]
    sparse_columns: list[str]
    dense_columns: list[str]
    def __init__(self, path: Union[str, PathLike[str]], device: str = ...) -> None: ...
    @property
    def metadata(self) -> dict[str, Any]: ...
    def predict(self, x: Any, batch_size: int = ...) -> npt.NDArray[np.float64]: ...
