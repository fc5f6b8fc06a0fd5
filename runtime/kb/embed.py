"""all-MiniLM-L6-v2 sentence embeddings, offline, in numpy: the 6-layer BERT encoder,
mean pooling and L2 normalisation are computed here, so neither torch nor a download is
needed (chromadb's default embedding function downloads a model and fails offline).

The weights and tokenizer are vendored in `model/`: sentence-transformers/all-MiniLM-L6-v2
(revision 1110a243, Apache-2.0; LICENSE, NOTICE and the upstream MODEL_CARD.md beside
them). The matrices are stored as int8 with one float16 scale per 64 columns and
dequantised to float32 at load: 23.5 MB instead of 91 MB in the repository and the wheel
(float16 would still be 45 MB), for a cosine to the float32 vectors of 0.9994 or more on
every text measured and the same recall on the labelled set; tests/tools/test_knowledge.py
checks this against reference vectors from sentence-transformers on the original weights.
`model/convert.py` reproduces the file from the original weights, byte for byte."""

from __future__ import annotations

import threading
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file
from scipy.special import erf
from tokenizers import Tokenizer

MAX_TOKENS = 256  # the model's max_seq_length
LAYERS, HEADS, HIDDEN = 6, 12, 384
SCALE = ".__scale__"  # suffix of a quantised matrix's scales (see model/convert.py)


def model_dir() -> Path:
    return Path(str(resources.files("autopilot.runtime.kb") / "model"))


def load_weights(path: Path) -> dict[str, np.ndarray]:
    """float32 tensors from a safetensors file: int8 matrices are multiplied back by their
    per-group scales; anything else (float32 biases, LayerNorm) is taken as it is."""
    raw = load_file(str(path))
    w: dict[str, np.ndarray] = {}
    for k, v in raw.items():
        if k.endswith(SCALE):
            continue
        s = raw.get(k + SCALE)
        if s is None:
            w[k] = v.astype(np.float32)
        else:
            rows, cols = v.shape
            groups = s.shape[1]
            q = v.reshape(rows, groups, cols // groups).astype(np.float32)
            w[k] = (q * s.astype(np.float32)[..., None]).reshape(rows, cols)
    return w


class MiniLM:
    def __init__(self, folder: Path | None = None) -> None:
        folder = folder or model_dir()
        self.w = load_weights(folder / "model.safetensors")
        self.tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tok.enable_truncation(MAX_TOKENS)
        self.tok.enable_padding(pad_id=0, pad_token="[PAD]")
        self.lock = threading.Lock()  # the tokenizer's padding state is shared

    def _ln(self, x: np.ndarray, name: str) -> np.ndarray:
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-12) * self.w[f"{name}.weight"] + self.w[f"{name}.bias"]

    def _dense(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self.w[f"{name}.weight"].T + self.w[f"{name}.bias"]

    def encode(self, texts: list[str], batch: int = 32) -> np.ndarray:
        out = [self._encode(texts[i : i + batch]) for i in range(0, len(texts), batch)]
        return np.vstack(out) if out else np.zeros((0, HIDDEN), dtype=np.float32)

    def _encode(self, texts: list[str]) -> np.ndarray:
        with self.lock:
            enc = self.tok.encode_batch(texts)
        ids = np.array([e.ids for e in enc])
        mask = np.array([e.attention_mask for e in enc], dtype=np.float32)
        types = np.array([e.type_ids for e in enc])
        n, t = ids.shape
        w = self.w
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:t][None]
            + w["embeddings.token_type_embeddings.weight"][types]
        )
        x = self._ln(x, "embeddings.LayerNorm")
        bias = (1.0 - mask)[:, None, None, :] * -1e9
        d = HIDDEN // HEADS
        for i in range(LAYERS):
            p = f"encoder.layer.{i}"

            def heads(y: np.ndarray) -> np.ndarray:
                return y.reshape(n, t, HEADS, d).transpose(0, 2, 1, 3)

            q = heads(self._dense(x, f"{p}.attention.self.query"))
            k = heads(self._dense(x, f"{p}.attention.self.key"))
            v = heads(self._dense(x, f"{p}.attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d) + bias
            scores -= scores.max(-1, keepdims=True)
            att = np.exp(scores)
            att /= att.sum(-1, keepdims=True)
            ctx = (att @ v).transpose(0, 2, 1, 3).reshape(n, t, HIDDEN)
            x = self._ln(
                x + self._dense(ctx, f"{p}.attention.output.dense"),
                f"{p}.attention.output.LayerNorm",
            )
            h = self._dense(x, f"{p}.intermediate.dense")
            h = 0.5 * h * (1.0 + erf(h / np.sqrt(2.0)))
            x = self._ln(x + self._dense(h, f"{p}.output.dense"), f"{p}.output.LayerNorm")
        pooled = (x * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        return (pooled / np.linalg.norm(pooled, axis=1, keepdims=True)).astype(np.float32)


@lru_cache(maxsize=1)
def minilm() -> MiniLM:
    return MiniLM()


class MiniLMEmbeddingFunction:
    """A chromadb embedding function over the offline MiniLM."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, input: list[str]) -> list[np.ndarray]:  # `input`: chromadb's name
        return list(minilm().encode(list(input)))

    def embed_query(self, input: list[str]) -> list[np.ndarray]:
        return self(input)

    @staticmethod
    def name() -> str:
        return "autopilot-minilm-numpy"

    def get_config(self) -> dict[str, Any]:
        return {}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MiniLMEmbeddingFunction:
        return MiniLMEmbeddingFunction()

    def is_legacy(self) -> bool:
        return False

    def default_space(self) -> str:
        return "cosine"

    def supported_spaces(self) -> list[str]:
        return ["cosine", "l2", "ip"]
