from .mtl_trainer import MTLTrainer as MTLTrainer
