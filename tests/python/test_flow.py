"""The torch-rechub tutorial's flow for every model and three task balancings, checked against
scikit-learn on the predictions the package returns."""
import logging

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from conftest import features_of
from rechub.models.multi_task import AITM, ESMM, MMOE, PLE, OMoE, SharedBottom
from rechub.trainers import MTLTrainer
from rechub.utils.data import DataGenerator

CLS2 = ["classification", "classification"]


def make_model(kind, data):
    f = features_of(data)
    towers = [{"dims": [16]}] * 2
    if kind == "shared_bottom":
        return SharedBottom(f, CLS2, bottom_params={"dims": [32, 16]}, tower_params_list=towers)
    if kind == "esmm":
        user = [x for i, x in enumerate(f) if i % 2 == 0]
        item = [x for i, x in enumerate(f) if i % 2 == 1]
        return ESMM(user, item, cvr_params={"dims": [16]}, ctr_params={"dims": [16]})
    if kind == "mmoe":
        return MMOE(f, CLS2, n_expert=4, expert_params={"dims": [32, 16]}, tower_params_list=towers)
    if kind == "omoe":
        return OMoE(f, CLS2, n_expert=4, expert_params={"dims": [32, 16]}, tower_params_list=towers)
    if kind == "ple":
        return PLE(f, CLS2, n_level=2, n_expert_specific=2, n_expert_shared=1, expert_params={"dims": [16]},
                   tower_params_list=towers)
    if kind == "aitm":
        return AITM(f, n_task=2, bottom_params={"dims": [32, 16]}, tower_params_list=towers)
    raise AssertionError(kind)


BALANCING = {
    "fixed": dict(task_weights=[1.0, 0.5]),
    "gradnorm": dict(adaptive_params={"method": "gradnorm", "alpha": 1.5}),
    "metabalance": dict(adaptive_params={"method": "metabalance"}),
}


@pytest.mark.parametrize("balancing", sorted(BALANCING))
@pytest.mark.parametrize("kind", ["shared_bottom", "esmm", "mmoe", "ple", "aitm"])
def test_tutorial_flow(ali_ccp, kind, balancing, tmp_path, caplog):
    (xt, yt), (xv, yv), (xs, ys) = ali_ccp["train"], ali_ccp["val"], ali_ccp["test"]
    model = make_model(kind, ali_ccp)
    dg = DataGenerator(xt, yt)
    train_dl, val_dl, test_dl = dg.generate_dataloader(x_val=xv, y_val=yv, x_test=xs, y_test=ys, batch_size=256)
    trainer = MTLTrainer(model, task_types=CLS2, optimizer_params={"lr": 3e-3, "weight_decay": 1e-5},
                         n_epoch=2, earlystop_patience=2, model_path=str(tmp_path), **BALANCING[balancing])
    with caplog.at_level(logging.INFO, logger="rechub"):
        log = trainer.fit(train_dl, val_dl)
    assert len(log) == 2 and all(len(row) == 4 for row in log)
    epochs = [r.getMessage() for r in caplog.records if r.name == "rechub"]
    assert len(epochs) == 2 and epochs[0].startswith("epoch 1/2") and "val" in epochs[0]

    aucs = trainer.evaluate(trainer.model, test_dl)
    preds = trainer.predict(trainer.model, test_dl)
    assert preds.shape == (len(ys), 2) and preds.dtype == np.float64
    assert np.all((preds > 0) & (preds < 1))
    for t in range(2):
        assert aucs[t] == pytest.approx(roc_auc_score(ys[:, t], preds[:, t]), abs=1e-9)
    full = trainer.evaluate_metrics(trainer.model, test_dl)
    for t, name in enumerate(model.task_names):
        assert full[name]["logloss"] == pytest.approx(log_loss(ys[:, t], preds[:, t]), rel=1e-6)
    # The planted signal is learnt: the click task ranks far better than chance.
    assert aucs[0] > 0.6, aucs
    if kind == "esmm":
        assert np.all(preds[:, 1] <= preds[:, 0] + 1e-7)  # pCTCVR = pCTR * pCVR
    w = trainer.task_weights
    if balancing == "fixed":
        assert w == [1.0, 0.5]
    elif balancing == "gradnorm":
        assert sum(w) == pytest.approx(2.0, rel=1e-6) and w != [1.0, 1.0]
    assert (tmp_path / "model.safetensors").exists()


def test_omoe_and_regression(ali_ccp):
    """OMoE, and a regression task beside a binary one (MSE checked against numpy)."""
    (xt, yt), (xs, ys) = ali_ccp["train"], ali_ccp["test"]
    f = features_of(ali_ccp)
    y_reg = np.stack([yt[:, 0], xt["D1"] * 2.0 + 0.5], axis=1)
    ys_reg = np.stack([ys[:, 0], xs["D1"] * 2.0 + 0.5], axis=1)
    types = ["classification", "regression"]
    model = OMoE(f, types, n_expert=2, expert_params={"dims": [16]}, tower_params_list=[{"dims": [8]}] * 2)
    train_dl, _, test_dl = DataGenerator(xt, y_reg).generate_dataloader(x_test=xs, y_test=ys_reg, batch_size=256)
    trainer = MTLTrainer(model, types, n_epoch=2, model_path=None)
    trainer.fit(train_dl)
    scores = trainer.evaluate(trainer.model, test_dl)
    preds = trainer.predict(trainer.model, test_dl)
    assert scores[1] == pytest.approx(np.mean((preds[:, 1] - ys_reg[:, 1]) ** 2), rel=1e-5)
    assert scores[0] == pytest.approx(roc_auc_score(ys[:, 0], preds[:, 0]), abs=1e-9)


def test_split_ratio_and_dataframe_input(ali_ccp):
    pd = pytest.importorskip("pandas")
    xt, yt = ali_ccp["train"]
    df = pd.DataFrame(xt)
    y = pd.DataFrame({"click": yt[:, 0], "purchase": yt[:, 1]})
    train_dl, val_dl, test_dl = DataGenerator(df, y).generate_dataloader(split_ratio=[0.7, 0.1], batch_size=512)
    assert train_dl.n == 5600 and val_dl.n == 800 and test_dl.n == 1600
    model = make_model("mmoe", ali_ccp)
    trainer = MTLTrainer(model, CLS2, n_epoch=1, model_path=None)
    trainer.fit(train_dl, val_dl)
    assert len(trainer.predict(trainer.model, test_dl)) == 1600


def test_shared_task_layers_names_the_towers_as_task_layers(ali_ccp):
    from rechub.utils.mtl import shared_task_layers
    model = make_model("mmoe", ali_ccp)
    shared, tasks = shared_task_layers(model)
    assert any(n.startswith("experts.") for n in shared) and any(n.startswith("embedding") for n in shared)
    assert len(tasks) == 2
    for t in range(2):
        assert tasks[t] and all(n.startswith((f"towers.{t}.", f"gates.{t}.")) for n in tasks[t])
    params = model.state_dict()
    assert sum(params[n].size for n in shared + tasks[0] + tasks[1]) == model.parameter_count()
