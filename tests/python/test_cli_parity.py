"""Python and the `rechub` command: the same data, seed and settings train the same weights (bit
for bit), a Python-trained checkpoint evaluates with `rechub eval` to the same metrics, and a
CLI-trained one serves from rechub.Predictor with the predictions of `rechub predict`.

The CLI fits its vocabularies on the raw ids (most frequent value first, ties in byte order, id 0
for values unseen in training); encode_like_cli below is an independent Python implementation of
that rule, so both sides train on the same ids."""
import json
import os
import struct
import subprocess

import numpy as np
import pandas as pd
import pytest

from rechub import Predictor
from rechub.basic.features import DenseFeature, SparseFeature
from rechub.models.multi_task import MMOE, PLE, SharedBottom
from rechub.trainers import MTLTrainer
from rechub.utils.data import DataGenerator, DataLoader

LABELS = ["click", "purchase"]


def read_safetensors(path):
    """name -> numpy array, read with the format's definition (8-byte header length, JSON, data)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = {"F32": np.float32, "I64": np.int64, "F64": np.float64}[info["dtype"]]
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=dt).reshape(info["shape"])
    return out


def write_csv(path, x, y, columns):
    df = pd.DataFrame({c: x[c] for c in columns})
    for c in columns:
        if df[c].dtype.kind == "f":
            df[c] = [format(float(v), ".9g") for v in df[c]]  # exact float32 round trip
    if y is not None:
        for t, name in enumerate(LABELS):
            df.insert(t, name, y[:, t].astype(np.int64))
    df.to_csv(path, index=False)


def encode_like_cli(train, others, sparse):
    """Frequency-ranked ids fitted on the training split, as the CLI's Vocabulary does."""
    enc_train, enc_others, vocab = dict(train), [dict(o) for o in others], {}
    for c in sparse:
        values, counts = np.unique(train[c], return_counts=True)
        order = sorted(range(len(values)), key=lambda i: (-counts[i], str(values[i]).encode()))
        ids = {int(values[i]): rank + 1 for rank, i in enumerate(order)}
        vocab[c] = len(ids) + 1
        for src, dst in [(train, enc_train)] + list(zip(others, enc_others)):
            dst[c] = np.array([ids.get(int(v), 0) for v in src[c]], dtype=np.int64)
    return enc_train, enc_others, vocab


CASES = {
    "mmoe-gradnorm": dict(cli=["--model", "mmoe", "--expert-units", "32,16", "--num-experts", "4",
                               "--tower-units", "16", "--balance", "gradnorm", "--gradnorm-alpha", "1.5"],
                          py=lambda f: MMOE(f, ["classification"] * 2, n_expert=4, expert_params={"dims": [32, 16]},
                                            tower_params_list=[{"dims": [16]}] * 2, task_names=LABELS),
                          adaptive={"method": "gradnorm", "alpha": 1.5}),
    "ple-fixed": dict(cli=["--model", "ple", "--expert-units", "16", "--num-experts", "2", "--num-shared-experts",
                           "1", "--num-layers", "2", "--tower-units", "16", "--task-weights", "1,0.5",
                           "--dropout", "0.1"],
                      py=lambda f: PLE(f, ["classification"] * 2, n_level=2, n_expert_specific=2, n_expert_shared=1,
                                       expert_params={"dims": [16], "dropout": 0.1},
                                       tower_params_list=[{"dims": [16], "dropout": 0.1}] * 2, task_names=LABELS),
                      weights=[1.0, 0.5]),
    # torch-rechub's StepLR, stepped once per epoch, is `--lr-schedule step`.
    "shared_bottom-steplr": dict(cli=["--model", "shared_bottom", "--hidden-units", "32", "--tower-units", "16",
                                      "--lr-schedule", "step", "--lr-step-epochs", "1", "--lr-gamma", "0.5"],
                                 py=lambda f: SharedBottom(f, ["classification"] * 2, bottom_params={"dims": [32]},
                                                           tower_params_list=[{"dims": [16]}] * 2, task_names=LABELS),
                                 scheduler=("StepLR", {"step_size": 1, "gamma": 0.5})),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_python_and_cli_train_the_same_model(ali_ccp, cli, tmp_path, case):
    spec = CASES[case]
    (xt, yt), (xv, yv), (xs, ys) = ali_ccp["train"], ali_ccp["val"], ali_ccp["test"]
    sparse, dense = ali_ccp["sparse"], ali_ccp["dense"]
    columns = sparse + dense
    for name, (x, y) in {"train": (xt, yt), "val": (xv, yv), "test": (xs, ys)}.items():
        write_csv(tmp_path / f"{name}.csv", x, y, columns)
    out_cli = tmp_path / "cli"
    subprocess.run([cli, "train", "--train", str(tmp_path / "train.csv"), "--val", str(tmp_path / "val.csv"),
                    "--test", str(tmp_path / "test.csv"), "--tasks", "click,purchase", "--embed-dim", "8",
                    "--epochs", "2", "--batch-size", "256", "--lr", "0.003", "--weight-decay", "1e-5", "--seed", "1",
                    "--normalize", "none",  # Python feeds the dense columns as given, like torch-rechub
                    "--out", str(out_cli), "--quiet", "--no-cache"] + spec["cli"],
                   check=True, stdout=subprocess.DEVNULL)

    # The same run from Python: the ids as the CLI encodes them, the same sizes, seed and settings.
    enc_t, (enc_v, enc_s), vocab = encode_like_cli(xt, [xv, xs], sparse)
    features = [SparseFeature(c, vocab_size=vocab[c], embed_dim=8) for c in sparse] + [DenseFeature(c) for c in dense]
    model = spec["py"](features)
    label_df = lambda y: pd.DataFrame({n: y[:, t] for t, n in enumerate(LABELS)})
    train_dl, val_dl, test_dl = DataGenerator(enc_t, label_df(yt)).generate_dataloader(
        x_val=enc_v, y_val=label_df(yv), x_test=enc_s, y_test=label_df(ys), batch_size=256, seed=1)
    out_py = tmp_path / "py"
    trainer = MTLTrainer(model, ["classification"] * 2, optimizer_params={"lr": 0.003, "weight_decay": 1e-5},
                         adaptive_params=spec.get("adaptive"), task_weights=spec.get("weights"), n_epoch=2,
                         scheduler_fn=spec.get("scheduler", (None, None))[0],
                         scheduler_params=spec.get("scheduler", (None, None))[1],
                         earlystop_patience=0, model_path=str(out_py), seed=1)
    trainer.fit(train_dl, val_dl)

    w_cli = read_safetensors(out_cli / "model.safetensors")
    w_py = read_safetensors(out_py / "model.safetensors")
    assert sorted(w_cli) == sorted(w_py)
    for name in w_cli:
        assert np.array_equal(w_cli[name], w_py[name]), f"{name} differs"

    # The CLI's test metrics are the Python trainer's.
    m_cli = json.loads((out_cli / "test_metrics.json").read_text())["tasks"]
    m_py = trainer.evaluate_metrics(trainer.model, test_dl)
    for t in LABELS:
        assert m_py[t]["auc"] == pytest.approx(m_cli[t]["auc"], abs=1e-12)
        assert m_py[t]["logloss"] == pytest.approx(m_cli[t]["logloss"], abs=1e-12)

    # A Python-trained checkpoint evaluates with `rechub eval` (on the encoded columns it was trained on).
    write_csv(tmp_path / "test_encoded.csv", enc_s, ys, columns)
    r = subprocess.run([cli, "eval", "--model", str(out_py / "model.safetensors"), "--data",
                        str(tmp_path / "test_encoded.csv"), "--json"], check=True, capture_output=True, text=True)
    m_eval = json.loads(r.stdout)["tasks"]
    for t in LABELS:
        assert m_eval[t]["auc"] == pytest.approx(m_py[t]["auc"], abs=1e-12)
        assert m_eval[t]["logloss"] == pytest.approx(m_py[t]["logloss"], abs=1e-12)

    # The CLI's checkpoint serves from Python on the raw ids, as `rechub predict` does.
    subprocess.run([cli, "predict", "--model", str(out_cli / "model.safetensors"), "--data",
                    str(tmp_path / "test.csv"), "--out", str(tmp_path / "pred.csv")], check=True,
                   stdout=subprocess.DEVNULL)
    p_cli = pd.read_csv(tmp_path / "pred.csv")[LABELS].to_numpy()
    p_served = Predictor(out_cli / "model.safetensors").predict({c: xs[c] for c in columns})
    p_trainer = trainer.predict(trainer.model, DataLoader(enc_s))
    np.testing.assert_allclose(p_served, p_trainer, rtol=0, atol=1e-7)
    np.testing.assert_allclose(p_served, p_cli, rtol=0, atol=2e-6)  # the CSV holds 6 decimals
    # And the Python checkpoint serves the same from the encoded ids.
    np.testing.assert_allclose(Predictor(out_py / "model.safetensors").predict(enc_s), p_trainer, rtol=0, atol=1e-7)


def test_export_onnx_writes_the_graph_rechub_export_writes(ali_ccp, cli, tmp_path):
    """MTLTrainer.export_onnx and `rechub export` (whose graphs tests/onnx runs in ONNX Runtime
    against Predictor) write the same graph for the same model; ONNX's checker accepts it."""
    onnx = pytest.importorskip("onnx")
    import rechub
    if not rechub._rechub.has_onnx:
        pytest.skip("built without the ONNX exporter")
    from conftest import features_of
    xt, yt = ali_ccp["train"]
    model = MMOE(features_of(ali_ccp), ["classification"] * 2, n_expert=2, expert_params={"dims": [8]},
                 tower_params_list=[{"dims": [8]}] * 2, task_names=LABELS)
    trainer = MTLTrainer(model, ["classification"] * 2, n_epoch=1, model_path=str(tmp_path / "m"))
    trainer.fit(DataLoader({k: v[:1000] for k, v in xt.items()}, yt[:1000], batch_size=256))
    assert trainer.export_onnx(tmp_path / "py.onnx") is True
    subprocess.run([cli, "export", "--model", str(tmp_path / "m" / "model.safetensors"), "--onnx",
                    str(tmp_path / "cli.onnx")], check=True, stdout=subprocess.DEVNULL)
    a, b = onnx.load(str(tmp_path / "py.onnx")), onnx.load(str(tmp_path / "cli.onnx"))
    onnx.checker.check_model(a)
    assert a.graph.SerializeToString() == b.graph.SerializeToString()
    assert [i.name for i in a.graph.input] == ali_ccp["sparse"] + ["dense"]
    assert [o.name for o in a.graph.output] == LABELS
    with pytest.raises(ValueError, match="opset 17"):
        trainer.export_onnx(tmp_path / "x.onnx", opset_version=14)
