"""MTLTrainer with torch-rechub's arguments, training in rechub's C++ engine."""
import json
import logging
import math
import os

import numpy as np

from ..basic.features import _is_int

from .. import _rechub
from ..models.multi_task import _TASK_TYPES, _MultiTaskModel
from ..utils.data import DataLoader

__all__ = ["MTLTrainer"]

log = logging.getLogger("rechub")

_OPTIMIZERS = {"adam": "adam", "adamw": "adamw", "sgd": "sgd", "adagrad": "adagrad"}
_METHODS = {"fixed", "uwl", "gradnorm", "metabalance", "dwa", "pcgrad"}
_ADAPTIVE_KEYS = {
    "fixed": set(),
    "uwl": set(),
    "gradnorm": {"alpha", "lr", "layers"},
    "metabalance": {"relax_factor", "beta", "main_task"},
    "dwa": {"temperature"},
    "pcgrad": set(),
}


def _optimizer_name(optimizer_fn):
    """'adam' etc. from a name or a torch.optim class (matched by name; torch is not imported)."""
    if optimizer_fn is None:
        return "adam"
    name = optimizer_fn if isinstance(optimizer_fn, str) else getattr(optimizer_fn, "__name__", None)
    if not isinstance(name, str) or name.lower() not in _OPTIMIZERS:
        raise ValueError(f"MTLTrainer: optimizer_fn {optimizer_fn!r} is not supported; use torch.optim.Adam, AdamW, "
                         "SGD or Adagrad (or the names 'adam', 'adamw', 'sgd', 'adagrad')")
    return _OPTIMIZERS[name.lower()]


class MTLTrainer:
    """Trains a rechub multi-task model; torch-rechub's MTLTrainer arguments, same names and meaning.

    Args:
        model: a model from ``rechub.models.multi_task``.
        task_types (list): 'classification' or 'regression' per task (must match the model's).
        optimizer_fn: ``torch.optim.Adam`` (default), ``AdamW``, ``SGD`` or ``Adagrad``, or their names.
        optimizer_params (dict): ``{"lr": 1e-3, "weight_decay": 1e-5}`` (the default); other keys
            (betas, momentum, eps) are refused.
        regularization_params (dict): refused unless every value is 0; use optimizer_params'
            weight_decay.
        scheduler_fn, scheduler_params: ``torch.optim.lr_scheduler.StepLR`` (or ``"StepLR"``) with
            ``{"step_size": n, "gamma": g}`` (gamma defaults to 0.1, as in torch): the rate is
            multiplied by g every n epochs, as torch-rechub steps its scheduler once per epoch
            (rechub's ``step`` schedule). Other schedulers and keys are refused. None (the
            default): a constant rate, as in torch-rechub.
        adaptive_params (dict): the task balancing, ``{"method": m, ...}`` with m one of
            ``"uwl"``, ``"gradnorm"`` (``alpha``, default 0.16 as torch-rechub; ``lr``, the
            weights' learning rate, default 0.025), ``"metabalance"`` (``relax_factor`` 0.7,
            ``beta`` 0.9, ``main_task``), and beyond torch-rechub ``"dwa"`` (``temperature``),
            ``"pcgrad"``, ``"fixed"``. None: fixed weights (``task_weights``, default all 1).
        n_epoch (int): epochs (default 10).
        earlystop_taskid (int): the task whose validation AUC decides early stopping (default 0).
        earlystop_patience (int): epochs without improvement before stopping (default 10); the
            best epoch's weights are restored at the end. Needs a validation loader.
        device (str): ``"cpu"`` or ``"cuda:0"`` (a build with the CUDA backend).
        gpus (list): refused when it names more than one GPU; use device.
        model_path (str): directory for the checkpoints: ``model.safetensors`` (what ``rechub eval``
            and ``rechub.Predictor`` read), ``checkpoint.safetensors``, ``metrics.jsonl``, ``report.svg``.
            None writes nothing.
        model_logger: refused; rechub logs each epoch to the ``"rechub"`` logger (``logging``).

    Beyond torch-rechub:
        task_weights (list): fixed loss weights per task (method "fixed").
        task_specific_lr (dict): task name -> learning rate of that task's layers.
        pos_weights (list): positive-class weight per task.
        clip_grad_norm (float): clip the global gradient norm (0: off).
        earlystop_metric (str): "auc" (default), "logloss", "mse" or "mae".
        seed (int): the balancers' seed (PCGrad's order), as ``rechub train --seed`` (default 1).
        progress (bool): print the command line's live progress line on stderr (default False).
        batch_size_eval (int): rows per forward pass in validation (default 4096, as the CLI).
    """

    def __init__(self, model, task_types, optimizer_fn=None, optimizer_params=None, regularization_params=None,
                 scheduler_fn=None, scheduler_params=None, adaptive_params=None, n_epoch=10, earlystop_taskid=0,
                 earlystop_patience=10, device="cpu", gpus=None, model_path="./", model_logger=None,
                 task_weights=None, task_specific_lr=None, pos_weights=None, clip_grad_norm=0.0,
                 earlystop_metric=None, seed=1, progress=False, batch_size_eval=4096):
        if not isinstance(model, _MultiTaskModel):
            raise TypeError(f"MTLTrainer: model must be a rechub.models.multi_task model, got {type(model).__name__}")
        self.model = model
        if not isinstance(task_types, (list, tuple)) or len(task_types) != model.n_task:
            hint = ""
            if model.kind == "esmm" and isinstance(task_types, (list, tuple)) and len(task_types) == 3:
                hint = " (rechub's ESMM has two tasks, ctr and ctcvr: pass two task types and labels (click, purchase))"
            raise ValueError(f"MTLTrainer: task_types has {len(task_types) if isinstance(task_types, (list, tuple)) else '?'}"
                             f" entries, the model has {model.n_task} tasks {model.task_names}{hint}")
        for i, t in enumerate(task_types):
            if _TASK_TYPES.get(t) != model.task_types[i]:
                raise ValueError(f"MTLTrainer: task_types[{i}] = {t!r} but the model's task {model.task_names[i]!r} "
                                 f"is {model.task_types[i]}")
        self.task_types = list(task_types)
        self.n_task = model.n_task
        opts = {"optimizer": _optimizer_name(optimizer_fn)}
        if optimizer_params is None:
            optimizer_params = {"lr": 1e-3, "weight_decay": 1e-5}
        if not isinstance(optimizer_params, dict):
            raise TypeError("MTLTrainer: optimizer_params must be a dict such as {'lr': 1e-3, 'weight_decay': 1e-5}")
        unknown = set(optimizer_params) - {"lr", "weight_decay"}
        if unknown:
            raise ValueError(f"MTLTrainer: optimizer_params key(s) {sorted(unknown)} are not supported; rechub's "
                             "optimizers take 'lr' and 'weight_decay' (other settings are PyTorch's defaults)")
        lr = optimizer_params.get("lr", 1e-3)
        wd = optimizer_params.get("weight_decay", 0.0)
        if not isinstance(lr, (int, float)) or not lr > 0 or not math.isfinite(lr):
            raise ValueError(f"MTLTrainer: optimizer_params['lr'] must be a positive number, got {lr!r}")
        if not isinstance(wd, (int, float)) or not wd >= 0:
            raise ValueError(f"MTLTrainer: optimizer_params['weight_decay'] must be >= 0, got {wd!r}")
        opts.update(lr=float(lr), weight_decay=float(wd))
        if regularization_params and any(v for v in regularization_params.values()):
            raise ValueError("MTLTrainer: regularization_params (embedding/dense L1, L2) are not supported; use "
                             "optimizer_params={'weight_decay': ...} for L2")
        if scheduler_fn is not None or scheduler_params is not None:
            opts.update(self._scheduler(scheduler_fn, scheduler_params))
        if gpus is not None and len(gpus) > 1:
            raise ValueError("MTLTrainer: gpus with more than one GPU is not supported; use device='cuda:N'")
        if model_logger is not None:
            raise ValueError("MTLTrainer: model_logger is not supported; rechub logs every epoch to the 'rechub' "
                             "logger of Python's logging module (logging.basicConfig(level=logging.INFO))")
        opts.update(self._adaptive(adaptive_params, task_weights))
        if not _is_int(n_epoch) or n_epoch < 1:
            raise ValueError(f"MTLTrainer: n_epoch must be a positive int, got {n_epoch!r}")
        opts["n_epochs"] = n_epoch
        if not _is_int(earlystop_taskid) or \
                not 0 <= earlystop_taskid < self.n_task:
            raise ValueError(f"MTLTrainer: earlystop_taskid must be a task index in [0, {self.n_task}), got "
                             f"{earlystop_taskid!r}")
        if not _is_int(earlystop_patience) or earlystop_patience < 0:
            raise ValueError(f"MTLTrainer: earlystop_patience must be a non-negative int, got {earlystop_patience!r}")
        opts.update(earlystop_patience=earlystop_patience, earlystop_task=model.task_names[earlystop_taskid])
        if earlystop_metric is not None:
            if earlystop_metric not in ("auc", "logloss", "mse", "mae"):
                raise ValueError(f"MTLTrainer: earlystop_metric must be auc, logloss, mse or mae, got {earlystop_metric!r}")
            opts["earlystop_metric"] = earlystop_metric
        if not isinstance(device, str):
            device = str(device)  # a torch.device prints as "cuda:0"
        opts["device"] = device
        if model_path is not None:
            if not isinstance(model_path, (str, os.PathLike)):
                raise TypeError(f"MTLTrainer: model_path must be a directory path or None, got {model_path!r}")
            opts["out_dir"] = os.fspath(model_path)
        self.model_path = model_path
        if task_specific_lr is not None:
            if not isinstance(task_specific_lr, dict) or any(k not in model.task_names for k in task_specific_lr):
                raise ValueError(f"MTLTrainer: task_specific_lr must map task names {model.task_names} to learning "
                                 f"rates, got {task_specific_lr!r}")
            opts["task_specific_lr"] = {k: float(v) for k, v in task_specific_lr.items()}
        if pos_weights is not None:
            if len(pos_weights) != self.n_task:
                raise ValueError(f"MTLTrainer: pos_weights needs {self.n_task} values, got {pos_weights!r}")
            opts["pos_weights"] = [float(w) for w in pos_weights]
        if not isinstance(clip_grad_norm, (int, float)) or clip_grad_norm < 0:
            raise ValueError(f"MTLTrainer: clip_grad_norm must be >= 0, got {clip_grad_norm!r}")
        opts["clip_grad_norm"] = float(clip_grad_norm)
        if not _is_int(seed) or seed < 0:
            raise ValueError(f"MTLTrainer: seed must be a non-negative int, got {seed!r}")
        opts["seed"] = seed
        opts["progress"] = bool(progress)
        self.batch_size_eval = int(batch_size_eval)
        self._options = opts
        try:
            self._trainer = _rechub.Trainer(model._model, opts)
        except _rechub.Error as e:
            raise ValueError(f"MTLTrainer: {e}") from None

    @staticmethod
    def _scheduler(scheduler_fn, scheduler_params):
        """torch-rechub's scheduler_fn/scheduler_params as rechub's learning-rate schedule options."""
        name = scheduler_fn if isinstance(scheduler_fn, str) else getattr(scheduler_fn, "__name__", repr(scheduler_fn))
        if name != "StepLR":
            raise ValueError(f"MTLTrainer: scheduler_fn {name!r} is not supported; rechub runs "
                             "torch.optim.lr_scheduler.StepLR (scheduler_params={'step_size': n, 'gamma': g}), "
                             "stepped once per epoch as torch-rechub does, or a constant rate (scheduler_fn=None)")
        params = dict(scheduler_params or {})
        unknown = sorted(set(params) - {"step_size", "gamma"})
        if unknown:
            raise ValueError(f"MTLTrainer: scheduler_params key(s) {unknown} are not supported with StepLR; "
                             "give step_size (epochs) and gamma")
        step, gamma = params.get("step_size"), params.get("gamma", 0.1)
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise ValueError(f"MTLTrainer: scheduler_params['step_size'] must be an int >= 1 (epochs), got {step!r}")
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0 < gamma <= 1:
            raise ValueError(f"MTLTrainer: scheduler_params['gamma'] must be a number in (0, 1], got {gamma!r}")
        return {"lr_schedule": "step", "lr_step_epochs": int(step), "lr_gamma": float(gamma)}

    def _adaptive(self, adaptive_params, task_weights):
        out = {}
        if task_weights is not None:
            if len(task_weights) != self.n_task or not all(isinstance(w, (int, float)) and w >= 0 for w in task_weights):
                raise ValueError(f"MTLTrainer: task_weights needs {self.n_task} non-negative numbers, got {task_weights!r}")
            out["task_weights"] = [float(w) for w in task_weights]
        if adaptive_params is None:
            out["strategy"] = "fixed"
            return out
        if not isinstance(adaptive_params, dict) or "method" not in adaptive_params:
            raise ValueError("MTLTrainer: adaptive_params must be a dict with a 'method', e.g. {'method': 'gradnorm', "
                             "'alpha': 1.5}")
        method = adaptive_params["method"]
        if method not in _METHODS:
            raise ValueError(f"MTLTrainer: adaptive_params['method'] = {method!r}; expected one of {sorted(_METHODS)}")
        unknown = set(adaptive_params) - {"method"} - _ADAPTIVE_KEYS[method]
        if unknown:
            raise ValueError(f"MTLTrainer: adaptive_params key(s) {sorted(unknown)} do not apply to method {method!r} "
                             f"(it takes {sorted(_ADAPTIVE_KEYS[method]) or 'none'})")
        if task_weights is not None and method != "fixed":
            raise ValueError(f"MTLTrainer: task_weights are fixed weights; they do not combine with method {method!r}")
        out["strategy"] = method
        if method == "gradnorm":
            out["gradnorm_alpha"] = float(adaptive_params.get("alpha", 0.16))  # torch-rechub's default
            if "lr" in adaptive_params:
                out["gradnorm_lr"] = float(adaptive_params["lr"])
            if "layers" in adaptive_params:
                raise ValueError("MTLTrainer: adaptive_params['layers'] is not supported from Python; GradNorm uses "
                                 "the model's last shared layer")
        elif method == "metabalance":
            for k in ("relax_factor", "beta"):
                if k in adaptive_params:
                    out[k] = float(adaptive_params[k])
            if "main_task" in adaptive_params:
                mt = adaptive_params["main_task"]
                out["main_task"] = self.model.task_names[mt] if isinstance(mt, int) else str(mt)
        elif method == "dwa" and "temperature" in adaptive_params:
            out["dwa_temperature"] = float(adaptive_params["temperature"])
        return out

    def _loader(self, dl, what):
        if not isinstance(dl, DataLoader):
            raise TypeError(f"{what} must be a rechub.utils.data.DataLoader (from DataGenerator.generate_dataloader), "
                            f"got {type(dl).__name__}")
        return dl

    def fit(self, train_dataloader, val_dataloader=None, mode="base", seed=0):
        """Trains for n_epoch epochs (the GIL is released; Ctrl-C stops between batches with
        KeyboardInterrupt, the last finished epoch's checkpoint kept). Each epoch is logged to the
        "rechub" logger. Returns torch-rechub's log: per epoch [train loss per task..., validation
        AUC (or MSE) per task...]. ``mode`` and ``seed`` are accepted for compatibility (torch-rechub
        uses them only in its .pth file name); the loader's shuffle seed is DataGenerator's ``seed``.
        A second fit continues the same run (weights and optimizer state)."""
        train = self._loader(train_dataloader, "train_dataloader")
        val = self._loader(val_dataloader, "val_dataloader") if val_dataloader is not None else None
        train_src = train._source(self.model)
        val_src = val._source(self.model) if val is not None else None
        n_epoch = self._options["n_epochs"]
        names = self.model.task_names

        def on_epoch(record_json):
            r = json.loads(record_json)
            parts = [f"epoch {r['epoch']}/{n_epoch}",
                     "train loss " + " ".join(f"{t} {_num(r['train_loss'][t]):.5f}" for t in names)]
            if "val" in r:
                parts.append("val " + " ".join(f"{t} {_score_text(r['val']['tasks'][t])}" for t in names))
            if "task_weights" in r:
                parts.append("weights " + " ".join(f"{_num(r['task_weights'][t]):.3f}" for t in names))
            parts.append(f"{r.get('rows_per_s', 0):.0f} rows/s")
            log.info(", ".join(parts))

        start = len(json.loads(self._trainer.history()))
        try:
            self._trainer.fit(train_src, train.batch_size, train.shuffle, train.seed, val_src,
                              self.batch_size_eval, on_epoch)
        except _rechub.Error as e:
            raise RuntimeError(str(e)) from None
        history = json.loads(self._trainer.history())[start:]
        total_log = []
        for r in history:
            row = [_num(r["train_loss"][t]) for t in names]
            if "val" in r:
                row += [_score(r["val"]["tasks"][t]) for t in names]
            total_log.append(row)
        return total_log

    def evaluate(self, model, data_loader):
        """One score per task, as torch-rechub returns: AUC for classification tasks, MSE for
        regression. (``evaluate_metrics`` gives AUC and LogLoss together.)"""
        m = self.evaluate_metrics(model, data_loader)
        return [_score(m[t]) for t in model.task_names]

    def evaluate_metrics(self, model, data_loader):
        """Every metric per task: ``{task: {"auc", "logloss", "rows"}}`` for classification
        (ESMM adds "cvr", pCVR on the clicked rows), ``{"mse", "mae", "rows"}`` for regression."""
        if not isinstance(model, _MultiTaskModel):
            raise TypeError(f"evaluate: model must be a rechub multi-task model, got {type(model).__name__}")
        dl = self._loader(data_loader, "data_loader")
        r = json.loads(_rechub.evaluate(model._model, dl._source(model), self.batch_size_eval))
        for w in r.get("warnings", []):
            log.warning(w)
        return r["tasks"]

    def predict(self, model, data_loader):
        """Predictions as a numpy array [n, n_task] in row order: probabilities for classification
        tasks (ESMM: [pCTR, pCTCVR]), values for regression. The loader needs no labels."""
        if not isinstance(model, _MultiTaskModel):
            raise TypeError(f"predict: model must be a rechub multi-task model, got {type(model).__name__}")
        dl = self._loader(data_loader, "data_loader")
        return _rechub.predict(model._model, dl._source(model, with_labels=False), self.batch_size_eval)

    def save_model(self, path):
        """Writes the model (weights, config, the data's schema) as a safetensors checkpoint that
        ``rechub eval``/``predict`` and ``rechub.Predictor`` read. fit writes model_path/model.safetensors itself."""
        try:
            self._trainer.save_model(os.fspath(path))
        except _rechub.Error as e:
            raise RuntimeError(str(e)) from None

    def export_onnx(self, output_path, dummy_input=None, batch_size=2, seq_length=10, opset_version=None,
                    dynamic_batch=True, device=None, verbose=False, onnx_export_kwargs=None):
        """Writes the model as ONNX (opset 17, what ``rechub export`` writes; see
        mtl/export/onnx_export.h): one int64 [batch] input per sparse feature (encoded ids), a
        float "dense" [batch, n_dense] input, one [batch] output per task. The graph is built
        from the model's layers, not traced, so ``dummy_input``, ``batch_size``, ``seq_length``,
        ``device`` and ``verbose`` are accepted and not needed; ``opset_version`` other than 17,
        ``dynamic_batch=False`` and ``onnx_export_kwargs`` are refused. Returns True."""
        if opset_version is not None and opset_version != 17:
            raise ValueError(f"export_onnx: rechub writes opset 17, not opset_version={opset_version!r}")
        if not dynamic_batch:
            raise ValueError("export_onnx: the batch dimension is always dynamic; leave dynamic_batch=True")
        if onnx_export_kwargs:
            raise ValueError("export_onnx: onnx_export_kwargs are torch.onnx.export's; rechub's exporter takes none")
        try:
            _rechub.export_onnx(self.model._model, os.fspath(output_path))
        except _rechub.Error as e:
            raise RuntimeError(str(e)) from None
        return True

    @property
    def history(self):
        """Every epoch's record (train loss, task weights, validation metrics, rows/s) as dicts."""
        return json.loads(self._trainer.history())

    @property
    def task_weights(self):
        """The balancer's current task weights."""
        return list(self._trainer.task_weights())


def _score(m):
    v = m.get("auc") if "auc" in m else m.get("mse")
    return float("nan") if v is None else float(v)


def _score_text(m):
    if "auc" in m:
        return f"auc {_score(m):.5f}"
    return f"mse {_score(m):.5f}"


def _num(v):
    return float("nan") if v is None else float(v)
