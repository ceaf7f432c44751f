"""rechub.Predictor: serves a checkpoint (model.safetensors from MTLTrainer or ``rechub train``)."""
import json

import numpy as np

from . import _rechub
from .utils.data import _columns

__all__ = ["Predictor"]


def _as_strings(a):
    if a.dtype.kind in "iu":
        return a.astype(str)
    if a.dtype.kind == "f":
        return np.char.mod("%.9g", a)
    return a.astype(str)


class Predictor:
    """Serves a trained model from its checkpoint.

    Args:
        path (str): a model.safetensors written by MTLTrainer (model_path) or ``rechub train --out``.
        device (str): "cpu" or "cuda:N".

    ``predict(x)`` takes the feature columns as the model was trained on them (a dict of arrays or
    a DataFrame): raw values for a model trained by the ``rechub`` command (its saved
    vocabularies encode them), the encoded ids for a model trained from Python.
    """

    def __init__(self, path, device="cpu"):
        try:
            self._p = _rechub.Predictor(str(path), device)
        except _rechub.Error as e:
            raise ValueError(str(e)) from None
        if not self._p.has_preprocessor:
            raise ValueError(f"{path}: the checkpoint carries no preprocessor (a model trained on encoded data "
                             "outside rechub); Predictor needs one")
        self.task_names = list(self._p.task_names)
        self.sparse_columns, self.dense_columns = self._p.input_columns()

    @property
    def metadata(self):
        """The checkpoint's metadata (model kind and config, tasks, preprocessor)."""
        return json.loads(self._p.metadata_json())

    def predict(self, x, batch_size=4096):
        """Predictions [n, n_task] (probabilities for binary tasks, values for regression)."""
        cols = _columns(x, "x")
        header = list(self.sparse_columns) + list(self.dense_columns)
        missing = [c for c in header if c not in cols]
        if missing:
            raise ValueError(f"x has no column for feature(s) {missing}")
        n = len(cols[header[0]])
        for c in header:
            if len(cols[c]) != n:
                raise ValueError(f"x['{c}'] has {len(cols[c])} rows, x['{header[0]}'] has {n}")
        strs = [_as_strings(cols[c]).tolist() for c in header]
        rows = [list(r) for r in zip(*strs)]
        try:
            return self._p.predict_raw(rows, header, batch_size)
        except _rechub.Error as e:
            raise ValueError(str(e)) from None
