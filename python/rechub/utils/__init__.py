"""Data loading (``rechub.utils.data``) and multi-task helpers (``rechub.utils.mtl``)."""
from . import data, mtl

__all__ = ["data", "mtl"]
