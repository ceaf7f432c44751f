"""Data for rechub's trainers, with torch-rechub's ``DataGenerator``.

``x`` is a dict of 1-D numpy arrays (or lists) keyed by feature name, or a pandas DataFrame;
``y`` is an array ``[n]`` or ``[n, n_task]`` (or a DataFrame / Series) of labels in task order.
Columns are handed to the engine without copies when they already are C-contiguous int64 (sparse
ids) or float32 (dense values, labels); other integer / real dtypes are converted once.

Nothing is checked against a model until a trainer uses the loader: then every sparse column must
hold integers in ``[0, vocab_size)``, dense columns finite reals, binary labels 0 or 1; a bad value
raises ValueError (TypeError for a wrong dtype) naming the feature and the row.
"""
import numpy as np

from ..basic.features import _is_int

__all__ = ["DataGenerator", "DataLoader", "ali_ccp_synthetic"]


def _columns(x, what):
    """dict name -> 1-D numpy array from a dict of arrays or a DataFrame."""
    if hasattr(x, "columns") and hasattr(x, "__getitem__") and not isinstance(x, dict):  # pandas DataFrame
        return {str(c): np.asarray(x[c]) for c in x.columns}
    if not isinstance(x, dict):
        raise TypeError(f"{what} must be a dict of numpy arrays (feature name -> column) or a pandas DataFrame, "
                        f"got {type(x).__name__}")
    out = {}
    for k, v in x.items():
        a = np.asarray(v)
        if a.ndim == 2 and a.shape[1] == 1:
            a = a[:, 0]
        if a.ndim != 1:
            raise ValueError(f"{what}['{k}']: a feature column must be 1-D, got shape {a.shape}")
        out[str(k)] = a
    return out


def _labels(y, what):
    """(array [n, T] float-like, column names or None)."""
    if y is None:
        return None, None
    names = None
    if hasattr(y, "columns") and not isinstance(y, dict):  # DataFrame
        names = [str(c) for c in y.columns]
        arr = np.asarray(y)
    elif isinstance(y, dict):
        names = [str(k) for k in y]
        arr = np.stack([np.asarray(v) for v in y.values()], axis=1) if y else np.zeros((0, 0))
    else:
        if hasattr(y, "name") and hasattr(y, "to_numpy") and y.name is not None:  # Series
            names = [str(y.name)]
        arr = np.asarray(y)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{what} must be [n] or [n, n_task], got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{what}: labels must be numbers (0/1 for classification tasks), got dtype {arr.dtype}")
    return arr, names


class DataLoader:
    """Batches of (x, y) for MTLTrainer.fit / evaluate / predict: the rows, a batch size and
    whether to shuffle (a fresh seeded order every epoch, as the ``rechub`` command does).

    Built by ``DataGenerator.generate_dataloader`` or directly: ``DataLoader(x, y, batch_size=1024)``.
    ``y`` may be None for prediction. ``len(loader)`` is the number of batches.
    """

    def __init__(self, x, y=None, batch_size=1024, shuffle=False, seed=1):
        self._x = _columns(x, "x")
        if not self._x:
            raise ValueError("x has no columns")
        lens = {k: len(v) for k, v in self._x.items()}
        self.n = next(iter(lens.values()))
        for k, n in lens.items():
            if n != self.n:
                raise ValueError(f"x['{k}'] has {n} rows, x['{next(iter(lens))}'] has {self.n}")
        self._y, self._y_names = _labels(y, "y")
        if self._y is not None and self._y.shape[0] != self.n:
            raise ValueError(f"y has {self._y.shape[0]} rows, x has {self.n}")
        if not _is_int(batch_size) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self._cache = None

    def __len__(self):
        return (self.n + self.batch_size - 1) // self.batch_size

    @property
    def has_labels(self):
        return self._y is not None

    def label_names(self, n_task):
        """The label columns' names (y's column names, else label0, label1, ...)."""
        if self._y_names is not None and len(self._y_names) == n_task:
            return list(self._y_names)
        return [f"label{i}" for i in range(n_task)]

    def _source(self, model, with_labels=True):
        """The engine's view of these rows for `model`, every value checked first (cached)."""
        from .. import _rechub
        if self._cache is not None and self._cache[0] is model and self._cache[1] == with_labels:
            return self._cache[2]
        sparse = []
        for f in model.sparse_features:
            sparse.append(_sparse_column(self._x, f))
        dense = [_dense_column(self._x, f.name) for f in model.dense_features]
        labels, schema_labels = [], []
        if with_labels:
            if self._y is None:
                raise ValueError("this loader has no labels (y is None); training and evaluate need them")
            T = model.n_task
            if self._y.shape[1] != T:
                hint = ""
                if model.kind == "esmm" and self._y.shape[1] == 3:
                    hint = " (rechub's ESMM takes the two label columns click and purchase, not [cvr, ctr, ctcvr])"
                raise ValueError(f"y has {self._y.shape[1]} label column(s), the model has {T} tasks "
                                 f"{model.task_names}{hint}")
            names = self.label_names(T)
            for t in range(T):
                labels.append(_label_column(self._y[:, t], model.task_names[t], model.task_types[t]))
                schema_labels.append((model.task_names[t], names[t], model.task_types[t]))
        schema = model._make_schema(schema_labels)
        src = _rechub.ColumnSource(schema, sparse, dense, labels)
        self._cache = (model, with_labels, src)  # the last one only: a loader may outlive many models
        return src


def _sparse_column(x, f):
    if f.name not in x:
        raise ValueError(f"x has no column for sparse feature '{f.name}' (columns: {sorted(x)[:20]})")
    a = x[f.name]
    if a.dtype.kind not in "iu":
        raise TypeError(f"sparse feature '{f.name}': ids must be integers (e.g. from sklearn's LabelEncoder), got "
                        f"dtype {a.dtype}")
    if a.size:
        bad = np.flatnonzero((a < 0) | (a >= f.vocab_size))
        if bad.size:
            r = int(bad[0])
            raise ValueError(f"sparse feature '{f.name}', row {r}: id {int(a[r])} is outside the vocabulary "
                             f"[0, {f.vocab_size}) ({bad.size} such rows)")
    return np.ascontiguousarray(a, dtype=np.int64)


def _dense_column(x, name):
    if name not in x:
        raise ValueError(f"x has no column for dense feature '{name}' (columns: {sorted(x)[:20]})")
    a = x[name]
    if a.dtype.kind not in "iuf" :
        raise TypeError(f"dense feature '{name}': values must be real numbers, got dtype {a.dtype}")
    a = np.ascontiguousarray(a, dtype=np.float32)
    bad = np.flatnonzero(~np.isfinite(a))
    if bad.size:
        r = int(bad[0])
        raise ValueError(f"dense feature '{name}', row {r}: value {a[r]} is not finite (NaN or infinite; "
                         f"{bad.size} such rows): fill missing values before training")
    return a


def _label_column(a, task, task_type):
    a = np.ascontiguousarray(a, dtype=np.float32)
    bad = np.flatnonzero(~np.isfinite(a))
    if bad.size:
        r = int(bad[0])
        raise ValueError(f"label of task '{task}', row {r}: {a[r]} is not finite ({bad.size} such rows)")
    if task_type == "binary":
        bad = np.flatnonzero((a != 0) & (a != 1))
        if bad.size:
            r = int(bad[0])
            raise ValueError(f"label of task '{task}', row {r}: {a[r]} (a classification label must be 0 or 1; "
                             f"{bad.size} such rows)")
    return a


class DataGenerator:
    """torch-rechub's DataGenerator: wraps the training rows and cuts the loaders.

    Args:
        x (dict or DataFrame): feature columns by name (extra columns are ignored).
        y (array, DataFrame or None): labels, ``[n]`` or ``[n, n_task]``, in task order.
    """

    def __init__(self, x, y):
        self.x = _columns(x, "x")
        self.y = y
        DataLoader(self.x, y)  # checks shapes now

    def generate_dataloader(self, x_val=None, y_val=None, x_test=None, y_test=None, split_ratio=None, batch_size=16,
                            num_workers=8, shuffle=True, seed=1):
        """Returns (train, val, test) loaders; val/test are None when not given.

        Args:
            x_val, y_val, x_test, y_test: validation and test rows (as x and y).
            split_ratio (list, optional): without x_val/x_test, ``[train, val]`` fractions of the
                rows (the rest is test), split by a permutation seeded with ``seed``.
            batch_size (int): rows per training batch (validation and test use the same).
            num_workers (int): accepted for compatibility; rechub prepares batches on one
                background thread of the engine whatever the value.
            shuffle (bool): shuffle the training rows every epoch (torch-rechub does).
            seed (int): the training loader's shuffle seed (and the split's), as ``rechub train --seed``.
        """
        if not _is_int(num_workers) or num_workers < 0:
            raise ValueError(f"num_workers must be a non-negative int, got {num_workers!r}")
        x, y = self.x, self.y
        if split_ratio is not None:
            if x_val is not None or x_test is not None:
                raise ValueError("split_ratio and x_val/x_test exclude each other")
            if not isinstance(split_ratio, (list, tuple)) or len(split_ratio) != 2 or \
                    not all(0 <= r <= 1 for r in split_ratio) or sum(split_ratio) > 1:
                raise ValueError(f"split_ratio must be [train, val] fractions summing to at most 1, got {split_ratio!r}")
            n = len(next(iter(x.values())))
            perm = np.random.default_rng(seed).permutation(n)
            a = int(n * split_ratio[0])
            b = a + int(n * split_ratio[1])
            yarr, _ = _labels(y, "y")
            pick = lambda idx: ({k: v[idx] for k, v in x.items()}, yarr[idx] if yarr is not None else None)
            (x, y), (x_val, y_val), (x_test, y_test) = pick(perm[:a]), pick(perm[a:b]), pick(perm[b:])
        train = DataLoader(x, y, batch_size=batch_size, shuffle=shuffle, seed=seed)
        val = DataLoader(x_val, y_val, batch_size=batch_size) if x_val is not None else None
        test = DataLoader(x_test, y_test, batch_size=batch_size) if x_test is not None else None
        return train, val, test


def ali_ccp_synthetic(rows, seed=1, first_row=0, vocab_sizes=None, num_dense=4):
    """Synthetic click/purchase data shaped like Ali-CCP with a planted signal (the generator of
    ``rechub synth --kind ali-ccp``; row r is the same row whichever slice asks for it).

    Returns ``(x, y)``: x a dict of columns (sparse fields "101", "205", ... as int64 ids
    ``0 .. vocab - 1``; dense "D1".. as float32 in [0, 1]), y a float32 array [rows, 2] of
    (click, purchase). ``vocab_sizes`` (one per sparse field) defaults to the generator's
    (100000, 50000, 20000, 5000, 1000, 100, 10, 4).
    """
    from .. import _rechub
    if not _is_int(rows) or rows < 1:
        raise ValueError(f"ali_ccp_synthetic: rows must be a positive int, got {rows!r}")
    vs = [] if vocab_sizes is None else [int(v) for v in vocab_sizes]
    try:
        return _rechub.ali_ccp_synthetic(int(first_row), rows, int(seed), vs, int(num_dense))
    except _rechub.Error as e:
        raise ValueError(f"ali_ccp_synthetic: {e}") from None
