"""How model.safetensors in this folder was made (a script, not imported by the package).

usage: python convert.py SRC/model.safetensors OUTDIR  ->  OUTDIR/model.safetensors

SRC is the original float32 all-MiniLM-L6-v2 weights (Hugging Face
sentence-transformers/all-MiniLM-L6-v2, revision 1110a243fdf4706b3f48f1d95db1a4f5529b4d41,
Apache-2.0); the script refuses any other file. The output is byte-identical on every run
(sha256 in NOTICE).

int8 layout: every 2-D tensor W (rows, cols) becomes
  W            int8    q = round(W / s), clipped to [-127, 127], one s per group of GROUP columns
  W.__scale__  float16 (rows, cols // GROUP), s = max|W[r, group]| / 127
1-D tensors (biases, LayerNorm) stay float32: they are tiny. The unused int64 buffer
embeddings.position_ids is dropped. embed.load_weights dequantises back to float32.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

SHA = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
REVISION = "1110a243fdf4706b3f48f1d95db1a4f5529b4d41"
GROUP = 64  # divides both matrix widths, 384 and 1536


def quantise(w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    q: dict[str, np.ndarray] = {}
    for k, v in w.items():
        if v.ndim == 2:
            r, c = v.shape
            g = v.reshape(r, c // GROUP, GROUP)
            s = (np.abs(g).max(axis=2) / 127.0).astype(np.float16)
            s[s == 0] = 1.0
            q[k] = (
                np.clip(np.rint(g / s.astype(np.float32)[..., None]), -127, 127)
                .astype(np.int8)
                .reshape(r, c)
            )
            q[k + ".__scale__"] = s
        else:
            q[k] = v.astype(np.float32)
    return q


def main(src: str, out: str) -> None:
    h = hashlib.sha256(Path(src).read_bytes()).hexdigest()
    if h != SHA:
        raise SystemExit(f"unexpected source weights (sha256 {h})")
    w = {k: v for k, v in load_file(src).items() if k != "embeddings.position_ids"}
    # One metadata key only: safetensors writes several keys in random order, which
    # would make the output bytes (and their sha256) differ from run to run.
    prov = f"sentence-transformers/all-MiniLM-L6-v2@{REVISION} sha256:{SHA} Apache-2.0"
    Path(out).mkdir(parents=True, exist_ok=True)
    save_file(
        quantise(w),
        str(Path(out) / "model.safetensors"),
        metadata={"provenance": f"{prov}; converted to int8, float16 scales per {GROUP} columns"},
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
