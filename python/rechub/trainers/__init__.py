"""Trainers (torch-rechub's ``torch_rechub.trainers``)."""
from .mtl_trainer import MTLTrainer

__all__ = ["MTLTrainer"]
