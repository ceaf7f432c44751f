"""rechub: multi-task recommendation models trained by rechub's C++ engine, with torch-rechub's API.

A torch-rechub multi-task script runs on rechub after changing its imports::

    from rechub.basic.features import SparseFeature, DenseFeature
    from rechub.models.multi_task import SharedBottom, ESMM, MMOE, PLE, AITM
    from rechub.trainers import MTLTrainer
    from rechub.utils.data import DataGenerator

The models, the training loop, the task balancers (fixed weights, GradNorm, MetaBalance, UWL, DWA,
PCGrad) and the metrics run in C++ (the GIL is released while training); checkpoints are the same
safetensors files as the ``rechub`` command's (``rechub eval --model out/model.safetensors``), and
``rechub.Predictor`` serves them. Progress is logged to the ``"rechub"`` logger (``logging``).
"""
import numbers

from . import _rechub
from ._rechub import Error
from .predictor import Predictor
from . import basic, models, trainers, utils

__version__ = "0.1.0"
__all__ = ["Error", "Predictor", "basic", "models", "trainers", "utils", "set_num_threads", "get_num_threads"]


def set_num_threads(n: int) -> None:
    """Sets the number of OpenMP threads the engine trains and predicts with (as ``rechub --threads``)."""
    if not _is_int(n):
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__}")
    if n <= 0:
        raise ValueError(f"set_num_threads: n must be positive, got {n}")
    _rechub.set_num_threads(n)


def get_num_threads() -> int:
    """The number of OpenMP threads the engine uses."""
    return _rechub.get_num_threads()


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)
