"""Feature definitions (torch-rechub's ``torch_rechub.basic``)."""
from . import features

__all__ = ["features"]
