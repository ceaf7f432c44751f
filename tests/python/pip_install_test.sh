#!/bin/sh
# pip install --no-build-isolation of the source tree into a fresh venv (system site packages for
# numpy; no network: --no-index), then `import rechub` and a short fit from outside the source tree.
# Usage: pip_install_test.sh PYTHON SOURCE_DIR BUILD_DIR WORK_DIR
set -eu
py=$1 src=$2 build=$3 work=$4
rm -rf "$work"
mkdir -p "$work"
"$py" -m venv --system-site-packages "$work/venv"
# Reuse this build's extension (already compiled by the test's build) instead of a second CMake build.
RECHUB_CMAKE_BUILD_DIR=$build "$work/venv/bin/python" -m pip install --no-build-isolation --no-index -q "$src"
cd "$work"
"$work/venv/bin/python" - <<'PY'
import os, sys
import numpy as np
import rechub
from rechub.basic.features import SparseFeature, DenseFeature
from rechub.models.multi_task import MMOE
from rechub.trainers import MTLTrainer
from rechub.utils.data import DataGenerator, ali_ccp_synthetic
here = os.path.realpath(rechub.__file__)
assert here.startswith(os.path.realpath(sys.prefix)), f"rechub imported from {here}, not the venv {sys.prefix}"
x, y = ali_ccp_synthetic(2000, vocab_sizes=[100, 50, 20, 5])
feats = [SparseFeature(c, vocab_size=int(x[c].max()) + 1, embed_dim=4) for c in x if not c.startswith("D")] + \
        [DenseFeature(c) for c in x if c.startswith("D")]
model = MMOE(feats, ["classification"] * 2, n_expert=2, expert_params={"dims": [8]}, tower_params_list=[{"dims": [4]}] * 2)
train, _, _ = DataGenerator(x, y).generate_dataloader(batch_size=256)
trainer = MTLTrainer(model, ["classification"] * 2, n_epoch=1, model_path="out")
trainer.fit(train)
assert os.path.exists("out/model.safetensors")
print("installed rechub", rechub.__version__, "at", here)
PY
