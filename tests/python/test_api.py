"""The type stubs (.pyi) agree with the code, and every public class and function has a docstring."""
import ast
import importlib
import inspect
import os

import pytest

import rechub

PKG = os.path.dirname(rechub.__file__)
MODULES = ["rechub.basic.features", "rechub.models.multi_task", "rechub.trainers.mtl_trainer", "rechub.utils.data",
           "rechub.utils.mtl", "rechub.predictor"]


def stub_functions(module_name):
    """{qualified name: [parameter names]} of the stub file of a module."""
    path = os.path.join(PKG, *module_name.split(".")[1:]) + ".pyi"
    tree = ast.parse(open(path).read())
    out = {}

    def params(fn):
        a = fn.args
        return [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs] + \
               ([a.vararg.arg] if a.vararg else []) + ([a.kwarg.arg] if a.kwarg else [])

    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            out[node.name] = params(node)
        elif isinstance(node, ast.ClassDef):
            out[node.name] = None
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    out[f"{node.name}.{item.name}"] = params(item)
    return out


@pytest.mark.parametrize("module_name", MODULES)
def test_stubs_match_the_code(module_name):
    mod = importlib.import_module(module_name)
    stubs = stub_functions(module_name)
    for name in getattr(mod, "__all__"):
        assert name in stubs, f"{module_name}.{name} is missing from the stub"
        obj = getattr(mod, name)
        targets = [(name, obj)] if not inspect.isclass(obj) else \
            [(f"{name}.{m}", f) for m, f in vars(obj).items() if inspect.isfunction(f) and
             (not m.startswith("_") or m == "__init__")]
        for qual, fn in targets:
            assert qual in stubs, f"{module_name}.{qual} is missing from the stub"
            if isinstance(inspect.getattr_static(obj, qual.split(".")[-1], None), property):
                continue
            runtime = list(inspect.signature(fn).parameters)
            assert stubs[qual] == runtime, f"{module_name}.{qual}: stub {stubs[qual]} vs code {runtime}"


def test_extension_stub_names_exist():
    tree = ast.parse(open(os.path.join(PKG, "_rechub.pyi")).read())
    names = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    for n in names:
        assert hasattr(rechub._rechub, n), f"_rechub.pyi names {n}, the extension has no such attribute"


@pytest.mark.parametrize("module_name", MODULES + ["rechub"])
def test_public_names_have_docstrings(module_name):
    mod = importlib.import_module(module_name)
    assert mod.__doc__
    for name in mod.__all__:
        obj = getattr(mod, name)
        if inspect.ismodule(obj):
            continue
        assert inspect.getdoc(obj), f"{module_name}.{name} has no docstring"
        if inspect.isclass(obj):
            for m, f in vars(obj).items():
                if inspect.isfunction(f) and not m.startswith("_"):
                    assert inspect.getdoc(f), f"{module_name}.{name}.{m} has no docstring"


def test_int64_and_float32_columns_are_read_in_place(ali_ccp):
    """Columns already of the engine's dtype cross without a copy (the engine sees a later in-place
    change); a column of another dtype is converted once (it does not)."""
    import numpy as np
    from conftest import features_of
    from rechub.models.multi_task import MMOE
    from rechub.trainers import MTLTrainer
    from rechub.utils.data import DataLoader
    xs, _ = ali_ccp["test"]
    x = {k: v[:500].copy() for k, v in xs.items()}
    assert x["101"].dtype == np.int64 and x["D1"].dtype == np.float32
    x["D2"] = x["D2"].astype(np.float64)
    model = MMOE(features_of(ali_ccp), ["classification"] * 2, n_expert=2, expert_params={"dims": [8]},
                 tower_params_list=[{"dims": [8]}] * 2)
    trainer = MTLTrainer(model, ["classification"] * 2, model_path=None)
    dl = DataLoader(x)
    before = trainer.predict(model, dl)
    x["D2"][:] = 0.5  # the float64 column: the engine holds a float32 copy
    assert np.array_equal(trainer.predict(model, dl), before)
    x["D1"][:] = 0.5  # the float32 column: the engine reads this very array
    assert not np.array_equal(trainer.predict(model, dl), before)
