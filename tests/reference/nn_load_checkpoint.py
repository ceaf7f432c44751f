"""Opens a rechub checkpoint as a PyTorch user would: reads it with the plain safetensors layout,
loads the model tensors into torch-rechub's MLP with load_state_dict(strict=True), and runs it.

Usage: nn_load_checkpoint.py CHECKPOINT INPUT OUTPUT
INPUT holds "x" and the MLP config in its "case" metadata; OUTPUT gets "y" (eval-mode forward),
"data_crc_ok" (1 when zlib.crc32 of the data section matches rechub.data_checksum) and
"optim_steps" (the optimizer step counts found, in parameter order).
"""
import json
import os
import struct
import sys
import zlib

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nn_parity  # noqa: E402
import nn_safetensors as st  # noqa: E402


def main():
    ckpt, inp, outp = sys.argv[1:4]
    tensors, meta = st.load(ckpt)
    assert meta["rechub.format_version"] == "1", meta
    record = json.loads(meta["rechub.metadata"])
    params = json.loads(meta["rechub.parameters"])
    with open(ckpt, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    crc_ok = meta["rechub.data_checksum"] == "crc32:%08x" % (zlib.crc32(data[8 + n:]) & 0xFFFFFFFF)

    x, imeta = st.load(inp)
    cfg = json.loads(imeta["case"])
    assert record["config"] == cfg, (record, cfg)
    m = nn_parity.MLP(cfg["input_dim"], cfg["dims"], cfg["activation"], 0.0, cfg["batch_norm"], cfg["output_layer"])
    state = {k: torch.from_numpy(v) for k, v in tensors.items() if not k.startswith("optim.")}
    m.load_state_dict(state, strict=True)  # every name and shape must match
    assert [k for k, _ in m.named_parameters()] == params, params
    m.eval()
    with torch.no_grad():
        y = m(torch.from_numpy(x["x"])).numpy()
    steps = [int(tensors["optim.%s.step" % p]) for p in params]
    st.save(outp, {"y": y, "data_crc_ok": np.array([int(crc_ok)], dtype=np.int64),
                   "optim_steps": np.array(steps, dtype=np.int64)})


if __name__ == "__main__":
    main()
