"""Models (torch-rechub's ``torch_rechub.models``): the multi-task ones in ``rechub.models.multi_task``."""
from . import multi_task

__all__ = ["multi_task"]
