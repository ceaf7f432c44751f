"""Bad input raises ValueError / TypeError naming the argument, feature and row; never a crash.
Unsupported torch-rechub arguments are refused with a message saying what to use."""
import numpy as np
import pytest

from conftest import features_of
from rechub.basic.features import DenseFeature, SequenceFeature, SparseFeature
from rechub.models.multi_task import AITM, ESMM, MMOE, PLE, SharedBottom
from rechub.trainers import MTLTrainer
from rechub.utils.data import DataGenerator, DataLoader

CLS2 = ["classification", "classification"]


@pytest.fixture
def small(ali_ccp):
    xt, yt = ali_ccp["train"]
    x = {k: v[:600].copy() for k, v in xt.items()}
    y = yt[:600].copy()
    model = MMOE(features_of(ali_ccp), CLS2, n_expert=2, expert_params={"dims": [8]},
                 tower_params_list=[{"dims": [8]}] * 2)
    return x, y, model


def fit(model, x, y):
    dl = DataLoader(x, y, batch_size=128)
    MTLTrainer(model, CLS2, n_epoch=1, model_path=None).fit(dl)


def test_float_ids_are_a_type_error_naming_the_feature(small):
    x, y, model = small
    x["205"] = x["205"].astype(np.float64)
    with pytest.raises(TypeError, match=r"sparse feature '205'.*integers.*float64"):
        fit(model, x, y)


def test_id_beyond_the_vocabulary_names_feature_and_row(small, ali_ccp):
    x, y, model = small
    x["101"][417] = ali_ccp["vocab"]["101"]
    with pytest.raises(ValueError, match=r"sparse feature '101', row 417: id %d is outside the vocabulary \[0, %d\)"
                                         % (ali_ccp["vocab"]["101"], ali_ccp["vocab"]["101"])):
        fit(model, x, y)


def test_negative_id(small):
    x, y, model = small
    x["301"][5] = -1
    with pytest.raises(ValueError, match=r"sparse feature '301', row 5: id -1"):
        fit(model, x, y)


def test_nan_dense_value_names_feature_and_row(small):
    x, y, model = small
    x["D3"][123] = np.nan
    with pytest.raises(ValueError, match=r"dense feature 'D3', row 123: value nan is not finite"):
        fit(model, x, y)


def test_string_dense_column_is_a_type_error(small):
    x, y, model = small
    x["D2"] = x["D2"].astype(str)
    with pytest.raises(TypeError, match=r"dense feature 'D2'.*real numbers"):
        fit(model, x, y)


def test_bad_labels(small):
    x, y, model = small
    y2 = y.copy()
    y2[77, 1] = 2
    with pytest.raises(ValueError, match=r"label of task 'task1', row 77: 2.0 .*must be 0 or 1"):
        fit(model, x, y2)
    y2[77, 1] = np.nan
    with pytest.raises(ValueError, match=r"label of task 'task1', row 77: nan is not finite"):
        fit(model, x, y2)
    with pytest.raises(ValueError, match=r"y has 1 label column\(s\), the model has 2 tasks"):
        fit(model, x, y[:, 0])


def test_wrong_shapes(small):
    x, y, model = small
    bad = dict(x)
    bad["D1"] = np.zeros((600, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=r"x\['D1'\]: a feature column must be 1-D, got shape \(600, 3\)"):
        DataLoader(bad, y)
    short = dict(x)
    short["205"] = short["205"][:599]
    with pytest.raises(ValueError, match=r"x\['205'\] has 599 rows"):
        DataLoader(short, y)
    with pytest.raises(ValueError, match=r"y has 599 rows, x has 600"):
        DataLoader(x, y[:599])
    missing = {k: v for k, v in x.items() if k != "216"}
    with pytest.raises(ValueError, match=r"x has no column for sparse feature '216'"):
        fit(model, missing, y)
    with pytest.raises(TypeError, match=r"x must be a dict"):
        DataGenerator([1, 2, 3], y)


def test_unknown_keyword_arguments_are_type_errors(ali_ccp, small):
    _, _, model = small
    f = features_of(ali_ccp)
    with pytest.raises(TypeError, match="n_experts"):
        MMOE(f, CLS2, n_experts=4, expert_params={"dims": [8]}, tower_params_list=[{"dims": [8]}] * 2)
    with pytest.raises(TypeError, match="n_epochs"):
        MTLTrainer(model, CLS2, n_epochs=3)
    with pytest.raises(ValueError, match=r"expert_params has unknown key\(s\) \['dim'\]"):
        MMOE(f, CLS2, n_expert=4, expert_params={"dim": [8]}, tower_params_list=[{"dims": [8]}] * 2)
    with pytest.raises(ValueError, match=r"adaptive_params key\(s\) \['alpah'\] do not apply to method 'gradnorm'"):
        MTLTrainer(model, CLS2, adaptive_params={"method": "gradnorm", "alpah": 1.5})
    with pytest.raises(ValueError, match=r"adaptive_params\['method'\] = 'gradnrom'"):
        MTLTrainer(model, CLS2, adaptive_params={"method": "gradnrom"})


def test_unsupported_torch_rechub_arguments_say_what_to_use(ali_ccp, small):
    _, _, model = small
    f = features_of(ali_ccp)

    class StepLR:  # stands for torch.optim.lr_scheduler.StepLR
        pass

    class CosineAnnealingLR:
        pass

    class RMSprop:
        pass

    cases = [
        (dict(scheduler_fn=CosineAnnealingLR, scheduler_params={"T_max": 4}), "'CosineAnnealingLR' is not supported"),
        (dict(scheduler_fn=StepLR, scheduler_params={"step_size": 1, "last_epoch": 3}), r"\['last_epoch'\] are not"),
        (dict(scheduler_fn=StepLR, scheduler_params={"step_size": 0}), r"step_size'\] must be an int >= 1"),
        (dict(scheduler_fn=StepLR, scheduler_params={"step_size": 2, "gamma": 1.5}), r"gamma'\] must be a number"),
        (dict(model_logger=object()), "'rechub' logger"),
        (dict(regularization_params={"embedding_l2": 1e-4}), "weight_decay"),
        (dict(optimizer_params={"lr": 1e-3, "betas": (0.9, 0.99)}), r"\['betas'\] are not supported"),
        (dict(optimizer_fn=RMSprop), "use torch.optim.Adam, AdamW, SGD or Adagrad"),
        (dict(gpus=[0, 1]), "use device='cuda:N'"),
        (dict(task_types=["classification"] * 3), "has 3 entries, the model has 2 tasks"),
    ]
    for kwargs, message in cases:
        args = dict(task_types=CLS2, model_path=None)
        args.update(kwargs)
        with pytest.raises(ValueError, match=message):
            MTLTrainer(model, **args)
    with pytest.raises(ValueError, match="give each task the same 'dims'"):
        MMOE(f, CLS2, n_expert=2, expert_params={"dims": [8]}, tower_params_list=[{"dims": [8]}, {"dims": [4]}])
    with pytest.raises(ValueError, match="one dropout rate for every MLP"):
        PLE(f, CLS2, 1, 1, 1, expert_params={"dims": [8], "dropout": 0.2}, tower_params_list=[{"dims": [8]}] * 2)
    with pytest.raises(ValueError, match="same 'dims', 'activation' and 'dropout'"):
        ESMM(f[:4], f[4:], cvr_params={"dims": [8]}, ctr_params={"dims": [16]})
    with pytest.raises(ValueError, match="AITM has one: give them the same 'activation'"):
        AITM(f, 2, bottom_params={"dims": [8], "activation": "relu"},
             tower_params_list=[{"dims": [8], "activation": "sigmoid"}] * 2)
    with pytest.raises(ValueError, match="padding_idx is not supported"):
        SparseFeature("a", vocab_size=10, padding_idx=0)
    with pytest.raises(ValueError, match="SparseFeature and DenseFeature only"):
        SequenceFeature("hist", vocab_size=10, pooling="mean")
    with pytest.raises(ValueError, match="embed_dim must be 1"):
        DenseFeature("d", embed_dim=4)
    with pytest.raises(ValueError, match="task_types\\[1\\] = 'ranking'"):
        SharedBottom(f, ["classification", "ranking"], {"dims": [8]}, [{"dims": [8]}] * 2)


def test_esmm_refuses_torch_rechubs_three_label_form(ali_ccp):
    f = features_of(ali_ccp)
    model = ESMM(f[:4], f[4:], cvr_params={"dims": [8]}, ctr_params={"dims": [8]})
    xt, yt = ali_ccp["train"]
    y3 = np.stack([yt[:, 1], yt[:, 0], yt[:, 1]], axis=1)
    with pytest.raises(ValueError, match="two label columns click and purchase"):
        MTLTrainer(model, CLS2, n_epoch=1, model_path=None).fit(DataLoader(xt, y3))


def test_engine_errors_are_exceptions_not_crashes(small):
    """A divergence inside the engine comes back as an exception naming the task."""
    x, y, model = small
    trainer = MTLTrainer(model, CLS2, optimizer_fn="sgd", optimizer_params={"lr": 1e30}, n_epoch=3,
                         model_path=None)
    with pytest.raises(RuntimeError, match="training stopped"):
        trainer.fit(DataLoader(x, y, batch_size=64))
