"""Multi-task models with torch-rechub's constructors: SharedBottom, ESMM, MMOE, OMoE, PLE, AITM.

Each class builds the model in rechub's C++ engine at once (its weights are initialised from
``seed``). The layers follow torch-rechub's: an MLP layer is Linear -> BatchNorm -> activation ->
Dropout, towers end in Linear(., 1), binary tasks take a sigmoid. Parameter-dict keys are
torch-rechub's ``MLP`` arguments: ``dims``, ``dropout``, ``activation`` (and ``output_layer``,
which must be left True for towers and False/absent for experts and bottoms).

Where torch-rechub allows something rechub's engine does not (towers of different widths per task,
a different dropout in experts and towers), the constructor raises ValueError saying what to pass.
Beyond torch-rechub: ``task_names`` (names in metrics, logs and checkpoints) and ``seed``.
"""
from .. import _rechub
from ..basic.features import _is_int, DenseFeature, SparseFeature

__all__ = ["SharedBottom", "ESMM", "MMOE", "OMoE", "PLE", "AITM"]

_TASK_TYPES = {"classification": "binary", "classfication": "binary", "binary": "binary", "regression": "regression"}
_MLP_KEYS = {"dims", "dropout", "activation", "output_layer"}


def _task_types(model, task_types):
    if not isinstance(task_types, (list, tuple)) or not task_types:
        raise TypeError(f"{model}: task_types must be a non-empty list such as ['classification', 'classification']")
    out = []
    for i, t in enumerate(task_types):
        if t not in _TASK_TYPES:
            raise ValueError(f"{model}: task_types[{i}] = {t!r}: expected 'classification' or 'regression'")
        out.append(_TASK_TYPES[t])
    return out


def _features(model, features, arg="features"):
    if not isinstance(features, (list, tuple)) or not features:
        raise TypeError(f"{model}: {arg} must be a non-empty list of SparseFeature / DenseFeature")
    seen = set()
    for i, f in enumerate(features):
        if not isinstance(f, (SparseFeature, DenseFeature)):
            raise TypeError(f"{model}: {arg}[{i}] is a {type(f).__name__}, expected SparseFeature or DenseFeature")
        if f.name in seen:
            raise ValueError(f"{model}: feature '{f.name}' is listed twice")
        seen.add(f.name)
    return list(features)


def _mlp(model, arg, params, tower):
    """(dims, dropout, activation) from a torch-rechub MLP parameter dict."""
    if not isinstance(params, dict):
        raise TypeError(f"{model}: {arg} must be a dict such as {{'dims': [64, 32]}}, got {type(params).__name__}")
    unknown = set(params) - _MLP_KEYS
    if unknown:
        raise ValueError(f"{model}: {arg} has unknown key(s) {sorted(unknown)} (expected {sorted(_MLP_KEYS)})")
    dims = params.get("dims")
    if not isinstance(dims, (list, tuple)) or not dims or not all(_is_int(d) and d > 0 for d in dims):
        raise ValueError(f"{model}: {arg}['dims'] must be a non-empty list of positive ints, got {dims!r}")
    dropout = params.get("dropout", 0.0)
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise ValueError(f"{model}: {arg}['dropout'] must be a number in [0, 1), got {dropout!r}")
    activation = params.get("activation", "relu")
    if not isinstance(activation, str):
        raise ValueError(f"{model}: {arg}['activation'] must be a name such as 'relu', got {activation!r}")
    activation = activation.lower()
    if "output_layer" in params:
        want = tower
        if bool(params["output_layer"]) != want:
            raise ValueError(f"{model}: {arg}['output_layer'] = {params['output_layer']!r} is not supported: "
                             + ("every tower ends in Linear(., 1); leave output_layer out (or True)" if tower else
                                "experts and bottoms end in their last hidden layer; leave output_layer out (or False)"))
    return [int(d) for d in dims], float(dropout), activation


def _towers(model, tower_params_list, n_task):
    if not isinstance(tower_params_list, (list, tuple)) or len(tower_params_list) != n_task:
        raise ValueError(f"{model}: tower_params_list must be a list of {n_task} dicts (one per task), got "
                         f"{tower_params_list!r}")
    towers = [_mlp(model, f"tower_params_list[{i}]", p, True) for i, p in enumerate(tower_params_list)]
    for i, t in enumerate(towers[1:], 1):
        if t[0] != towers[0][0] or t[2] != towers[0][2]:
            raise ValueError(f"{model}: tower_params_list[{i}] differs from tower_params_list[0] in dims or activation; "
                             "rechub builds every task's tower alike: give each task the same 'dims' and 'activation'")
    return towers


def _one_dropout(model, named):
    """rechub's models have one dropout rate for all their MLPs."""
    first_name, first = named[0]
    for name, d in named[1:]:
        if d != first:
            raise ValueError(f"{model}: dropout {d} in {name} differs from {first} in {first_name}; rechub uses one "
                             "dropout rate for every MLP of a model: give them the same 'dropout'")
    return first


class _MultiTaskModel:
    """Base of the rechub multi-task models (the engine's model plus its Python description)."""

    kind = ""

    def _build(self, features, task_types, task_names, params, seed):
        self.features = features
        self.task_types = list(task_types)
        self.n_task = len(task_types)
        if task_names is None:
            task_names = [f"task{i}" for i in range(self.n_task)]
        if not isinstance(task_names, (list, tuple)) or len(task_names) != self.n_task or \
                not all(isinstance(n, str) and n for n in task_names) or len(set(task_names)) != self.n_task:
            raise ValueError(f"{type(self).__name__}: task_names must be {self.n_task} distinct non-empty strs, "
                             f"got {task_names!r}")
        self.task_names = list(task_names)
        if not _is_int(seed) or seed < 0:
            raise ValueError(f"{type(self).__name__}: seed must be a non-negative int, got {seed!r}")
        self.seed = seed
        self.params = dict(params, seed=seed)
        self._schema = self._make_schema(labels=[])
        try:
            self._model = _rechub.build_model(self.kind, self._schema, self.task_names, self.task_types, self.params)
        except _rechub.Error as e:
            raise ValueError(f"{type(self).__name__}: {e}") from None

    def _make_schema(self, labels):
        sparse = [(f.name, f.vocab_size, f.embed_dim, f.shared_with or "") for f in self.features
                  if isinstance(f, SparseFeature)]
        dense = [f.name for f in self.features if isinstance(f, DenseFeature)]
        try:
            return _rechub.Schema(sparse, dense, labels)
        except _rechub.Error as e:
            raise ValueError(f"{type(self).__name__}: {e}") from None

    @property
    def sparse_features(self):
        return [f for f in self.features if isinstance(f, SparseFeature)]

    @property
    def dense_features(self):
        return [f for f in self.features if isinstance(f, DenseFeature)]

    def parameter_count(self):
        """The number of trainable scalars."""
        return self._model.parameter_count()

    def state_dict(self):
        """Copies of every parameter and buffer as numpy arrays, by torch-rechub-style name
        (``experts.0.mlp.0.weight``, ...; embeddings are one arena per width, ``embedding.arena_d16``)."""
        return self._model.state_dict()

    def __repr__(self):
        return (f"{type(self).__name__}(tasks={self.task_names}, features={len(self.features)}, "
                f"parameters={self.parameter_count()})")


class SharedBottom(_MultiTaskModel):
    """Shared-Bottom (Caruana 1997): one MLP over the embedded input shared by every task, then a
    tower per task.

    Args:
        features (list): SparseFeature / DenseFeature, embedded and concatenated.
        task_types (list): 'classification' or 'regression' per task.
        bottom_params (dict): the shared MLP, e.g. ``{"dims": [128, 64], "dropout": 0.2}``.
        tower_params_list (list): one dict per task, e.g. ``[{"dims": [32]}] * 2`` (all alike).
        task_names (list, optional): names of the tasks (default task0, task1, ...).
        seed (int): initialisation and dropout seed (default 1, as ``rechub train --seed``).
    """

    kind = "shared_bottom"

    def __init__(self, features, task_types, bottom_params, tower_params_list, task_names=None, seed=1):
        m = "SharedBottom"
        types = _task_types(m, task_types)
        feats = _features(m, features)
        bottom = _mlp(m, "bottom_params", bottom_params, False)
        towers = _towers(m, tower_params_list, len(types))
        dropout = _one_dropout(m, [("bottom_params", bottom[1])] +
                               [(f"tower_params_list[{i}]", t[1]) for i, t in enumerate(towers)])
        if bottom[2] != towers[0][2]:
            raise ValueError(f"{m}: bottom_params and tower_params_list use different activations; rechub's "
                             "SharedBottom has one: give them the same 'activation'")
        self._build(feats, types, task_names, {"hidden_units": bottom[0], "tower_units": towers[0][0],
                                               "activation": bottom[2], "dropout": dropout}, seed)


class ESMM(_MultiTaskModel):
    """ESMM (Ma et al., SIGIR 2018): CTR and CVR towers over the shared embeddings; pCTCVR = pCTR * pCVR.

    rechub's ESMM has two tasks, ``ctr`` and ``ctcvr``, trained on the labels (click, purchase):
    give y those two columns, task_types of length 2, and read predictions [pCTR, pCTCVR].
    (torch-rechub's three-column form [cvr, ctr, ctcvr] is not taken.)

    Args:
        user_features (list): user-side SparseFeature / DenseFeature.
        item_features (list): item-side SparseFeature / DenseFeature.
        cvr_params (dict): the CVR tower, e.g. ``{"dims": [64, 32]}``.
        ctr_params (dict): the CTR tower: the same 'dims', 'activation' and 'dropout' as cvr_params.
        task_names (list, optional): default ``["ctr", "ctcvr"]``.
        seed (int): initialisation and dropout seed (default 1).
    """

    kind = "esmm"

    def __init__(self, user_features, item_features, cvr_params, ctr_params, task_names=None, seed=1):
        m = "ESMM"
        feats = _features(m, list(user_features) + list(item_features), "user_features + item_features")
        cvr = _mlp(m, "cvr_params", cvr_params, True)
        ctr = _mlp(m, "ctr_params", ctr_params, True)
        if cvr != ctr:
            raise ValueError("ESMM: cvr_params and ctr_params differ; rechub builds both towers alike: give them the "
                             "same 'dims', 'activation' and 'dropout'")
        self.user_features = list(user_features)
        self.item_features = list(item_features)
        self._build(feats, ["binary", "binary"], task_names or ["ctr", "ctcvr"],
                    {"tower_units": cvr[0], "activation": cvr[2], "dropout": cvr[1]}, seed)


class MMOE(_MultiTaskModel):
    """MMoE (Ma et al., KDD 2018): n_expert expert MLPs shared by all tasks, a softmax gate per
    task mixing them, a tower per task.

    Args:
        features (list): SparseFeature / DenseFeature.
        task_types (list): 'classification' or 'regression' per task.
        n_expert (int): number of experts.
        expert_params (dict): each expert's MLP, e.g. ``{"dims": [256, 128]}``.
        tower_params_list (list): one dict per task (all alike), e.g. ``[{"dims": [64, 32]}] * 2``.
        task_names (list, optional): names of the tasks (default task0, task1, ...).
        seed (int): initialisation and dropout seed (default 1).
    """

    kind = "mmoe"

    def __init__(self, features, task_types, n_expert, expert_params, tower_params_list, task_names=None, seed=1):
        m = type(self).__name__
        types = _task_types(m, task_types)
        feats = _features(m, features)
        if not _is_int(n_expert) or n_expert < 1:
            raise ValueError(f"{m}: n_expert must be a positive int, got {n_expert!r}")
        expert = _mlp(m, "expert_params", expert_params, False)
        towers = _towers(m, tower_params_list, len(types))
        dropout = _one_dropout(m, [("expert_params", expert[1])] +
                               [(f"tower_params_list[{i}]", t[1]) for i, t in enumerate(towers)])
        self._build(feats, types, task_names, {"expert_units": expert[0], "num_experts": n_expert,
                                               "expert_activation": expert[2], "tower_units": towers[0][0],
                                               "tower_activation": towers[0][2], "dropout": dropout}, seed)


class OMoE(MMOE):
    """OMoE: MMoE with One gate shared by every task (same arguments as MMOE)."""

    kind = "omoe"


class PLE(_MultiTaskModel):
    """PLE (Tang et al., RecSys 2020): n_level levels of CGC with task-specific and shared experts.

    Args:
        features (list): SparseFeature / DenseFeature.
        task_types (list): 'classification' or 'regression' per task.
        n_level (int): number of CGC levels.
        n_expert_specific (int): task-specific experts per task and level.
        n_expert_shared (int): shared experts per level.
        expert_params (dict): each expert's MLP, e.g. ``{"dims": [256, 128]}``.
        tower_params_list (list): one dict per task (all alike). Each tower ends in Linear(., 1).
        task_names (list, optional): names of the tasks (default task0, task1, ...).
        seed (int): initialisation and dropout seed (default 1).
    """

    kind = "ple"

    def __init__(self, features, task_types, n_level, n_expert_specific, n_expert_shared, expert_params,
                 tower_params_list, task_names=None, seed=1):
        m = "PLE"
        types = _task_types(m, task_types)
        feats = _features(m, features)
        for name, v in (("n_level", n_level), ("n_expert_specific", n_expert_specific),
                        ("n_expert_shared", n_expert_shared)):
            if not _is_int(v) or v < 1:
                raise ValueError(f"PLE: {name} must be a positive int, got {v!r}")
        expert = _mlp(m, "expert_params", expert_params, False)
        towers = _towers(m, tower_params_list, len(types))
        dropout = _one_dropout(m, [("expert_params", expert[1])] +
                               [(f"tower_params_list[{i}]", t[1]) for i, t in enumerate(towers)])
        self._build(feats, types, task_names, {"expert_units": expert[0], "num_experts": n_expert_specific,
                                               "num_layers": n_level, "num_shared_experts": n_expert_shared,
                                               "expert_activation": expert[2], "tower_units": towers[0][0],
                                               "tower_activation": towers[0][2], "dropout": dropout}, seed)


class AITM(_MultiTaskModel):
    """AITM (Xi et al., KDD 2021): per-task bottoms, information transferred along the conversion
    funnel (task t-1 -> t) through an attention layer, a tower per task. Every task is binary.

    Args:
        features (list): SparseFeature / DenseFeature.
        n_task (int): number of (binary) tasks, in funnel order.
        bottom_params (dict): each task's bottom MLP, e.g. ``{"dims": [128, 64]}``.
        tower_params_list (list): one dict per task (all alike), e.g. ``[{"dims": [32]}] * 2``.
        calibrator_weight (float): the paper's label-constraint weight (0: off, torch-rechub's behaviour).
        task_names (list, optional): names of the tasks (default task0, task1, ...).
        seed (int): initialisation and dropout seed (default 1).
    """

    kind = "aitm"

    def __init__(self, features, n_task, bottom_params, tower_params_list, calibrator_weight=0.0, task_names=None,
                 seed=1):
        m = "AITM"
        if not _is_int(n_task) or n_task < 2:
            raise ValueError(f"AITM: n_task must be an int >= 2, got {n_task!r}")
        feats = _features(m, features)
        bottom = _mlp(m, "bottom_params", bottom_params, False)
        towers = _towers(m, tower_params_list, n_task)
        dropout = _one_dropout(m, [("bottom_params", bottom[1])] +
                               [(f"tower_params_list[{i}]", t[1]) for i, t in enumerate(towers)])
        if bottom[2] != towers[0][2]:
            raise ValueError("AITM: bottom_params and tower_params_list use different activations; rechub's AITM "
                             "has one: give them the same 'activation'")
        if not isinstance(calibrator_weight, (int, float)) or calibrator_weight < 0:
            raise ValueError(f"AITM: calibrator_weight must be a non-negative number, got {calibrator_weight!r}")
        self._build(feats, ["binary"] * n_task, task_names,
                    {"hidden_units": bottom[0], "tower_units": towers[0][0], "activation": bottom[2],
                     "calibrator_weight": float(calibrator_weight), "dropout": dropout}, seed)
