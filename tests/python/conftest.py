"""Shared fixtures of the Python package's tests (run by ctest; see tests/python/CMakeLists.txt).

The data is the synthetic Ali-CCP set of `rechub synth` (the same generator, bound as
rechub.utils.data.ali_ccp_synthetic): train rows [0, 8000), validation the next 2000, test the
next 2000, as `rechub synth --rows 12000 --val-fraction 0.1667 --test-fraction 0.1667` cuts them.
"""
import os

import numpy as np
import pytest

N_TRAIN, N_VAL, N_TEST = 8000, 2000, 2000
SEED = 7
# Smaller vocabularies than the generator's default (10^5 .. 4): fast tests, the same signal.
VOCABS = [2000, 1000, 500, 200, 100, 50, 10, 4]


@pytest.fixture(scope="session")
def ali_ccp():
    from rechub.utils.data import ali_ccp_synthetic
    xt, yt = ali_ccp_synthetic(N_TRAIN, seed=SEED, vocab_sizes=VOCABS)
    xv, yv = ali_ccp_synthetic(N_VAL, seed=SEED, first_row=N_TRAIN, vocab_sizes=VOCABS)
    xs, ys = ali_ccp_synthetic(N_TEST, seed=SEED, first_row=N_TRAIN + N_VAL, vocab_sizes=VOCABS)
    sparse = [k for k in xt if not k.startswith("D")]
    dense = [k for k in xt if k.startswith("D")]
    # The tutorial's vocabulary sizes: max id over all splits + 1.
    vocab = {c: int(max(xt[c].max(), xv[c].max(), xs[c].max())) + 1 for c in sparse}
    return dict(train=(xt, yt), val=(xv, yv), test=(xs, ys), sparse=sparse, dense=dense, vocab=vocab)


@pytest.fixture(scope="session")
def cli():
    """The `rechub` command of the same build (RECHUB_CLI, set by ctest)."""
    path = os.environ.get("RECHUB_CLI", "")
    if not path or not os.path.exists(path):
        if os.environ.get("CI") == "true" or os.environ.get("RECHUB_REQUIRE_REFERENCES") == "1":
            pytest.fail("RECHUB_CLI does not name the rechub command; the CLI parity tests cannot run")
        pytest.skip("RECHUB_CLI not set: the CLI parity tests need the rechub command")
    return path


def features_of(data, embed_dim=8):
    from rechub.basic.features import DenseFeature, SparseFeature
    return [SparseFeature(c, vocab_size=data["vocab"][c], embed_dim=embed_dim) for c in data["sparse"]] + \
           [DenseFeature(c) for c in data["dense"]]


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
