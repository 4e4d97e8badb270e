"""A static (attention-free) model as a :class:`~embedkit.encoders.protocol.SentenceEncoder`: a
sentence-transformers folder whose first module is ``StaticEmbedding`` (what ``embedkit
distill`` and model2vec write). A sentence is tokenised without special tokens, its token
vectors are averaged (an empty sentence gives zeros, as ``torch.nn.EmbeddingBag`` does), then
the folder's modules after it run (Normalize, Dense, LayerNorm: :meth:`STFolder.apply`), so
the vectors equal ``SentenceTransformer(folder).encode``.

Differences from sentence-transformers, both chosen to make it a model like any other:
``max_length`` truncates the tokens (sentence-transformers never truncates a StaticEmbedding),
and only the mean pooling (``last-avg``) exists.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embedkit.encoders.models import resolve_model_path
from embedkit.encoders.pooling import Pooling
from embedkit.encoders.st_folder import read_static_folder
from embedkit.errors import ConfigError

if TYPE_CHECKING:
    from embedkit.encoders import EncoderConfig

logger = logging.getLogger(__name__)

#: the longest input a static model takes (it has no positions; a bound for runners' checks)
STATIC_MAX_LENGTH = 1 << 20


def is_static_folder(model: str) -> bool:
    """Whether ``model`` (a folder or an alias of one) is a StaticEmbedding folder."""
    try:
        path = resolve_model_path(model, strict=False)
        return os.path.isdir(path) and read_static_folder(path) is not None
    except ConfigError:
        return True  # a damaged static folder: StaticEncoder says what is wrong


def _load_weights(where: Path) -> np.ndarray:
    from safetensors.numpy import load_file

    try:
        w = load_file(str(where / "model.safetensors"))
    except Exception as e:  # safetensors raises its own types for a damaged or absent file
        raise ConfigError(f"{where}/model.safetensors: cannot read it ({str(e)[:200]}); "
                          "distil the model again", param="model") from None
    emb = w.get("embedding.weight", w.get("embeddings"))
    if emb is None or emb.ndim != 2:
        raise ConfigError(f"{where}/model.safetensors holds no 2-D embedding.weight",
                          param="model")
    return np.ascontiguousarray(emb, dtype=np.float32)


class StaticEncoder:
    """Token vectors averaged: ``StaticEncoder(folder)`` (see the module docstring)."""

    #: the setting that rebuilds it (an index recipe, a run record); ``kind`` says it is static
    backend = "torch"
    quantize = "none"
    has_pooler = False

    def __init__(self, model: str, pooling: str | None = None, *, batch_size: int = 1024,
                 lowercase: bool = False, prompt: str | None = None,
                 truncate_dim: int | None = None) -> None:
        from tokenizers import Tokenizer

        self.name = model
        self.path = resolve_model_path(model)
        found = read_static_folder(self.path)
        if found is None:
            raise ConfigError(f"{self.path} is not a sentence-transformers folder whose first "
                              "module is StaticEmbedding", param="model")
        self.st, where = found
        self.weights = _load_weights(where)
        try:
            self.tokenizer = Tokenizer.from_file(str(where / "tokenizer.json"))
        except Exception as e:  # tokenizers raises a bare Exception for a bad file
            raise ConfigError(f"{where}/tokenizer.json: cannot read it ({str(e)[:200]})",
                              param="model") from None
        self.tokenizer.no_padding()  # as sentence-transformers: a saved truncation applies
        self.default_pooling = Pooling(pooling or "last-avg")
        self.check_pooling(self.default_pooling)
        self.st.check_width(self.weights.shape[1])
        full = self.st.out_dim(self.weights.shape[1])
        k = truncate_dim if truncate_dim is not None else self.st.truncate_dim
        if k is not None and not 1 <= k <= full:
            raise ConfigError(f"truncate_dim must be between 1 and the model's {full} "
                              f"dimensions, not {k}", param="truncate_dim")
        self.truncate_dim = k if k != full else None
        self.similarity = self.st.similarity or "cosine"
        self.batch_size, self.lowercase, self.prompt = batch_size, lowercase, prompt or ""
        self.instruction: str | None = None
        self.model_identity = self._weights_identity(where)

    def _weights_identity(self, where: Path) -> str:
        h = hashlib.sha256(self.st.digest.encode())
        for name in ("tokenizer.json", "model.safetensors"):
            h.update(name.encode() + b"\0" + (where / name).read_bytes())
        return "sha256:" + h.hexdigest()

    @property
    def identity(self) -> str:
        extra = ["static"] + (["lowercase"] if self.lowercase else [])
        extra += [f"prompt={self.prompt!r}"] if self.prompt else []
        extra += [f"truncate_dim={self.truncate_dim}"] if self.truncate_dim else []
        return ";".join([self.model_identity, *extra])

    @property
    def dim(self) -> int:
        return self.truncate_dim or self.st.out_dim(int(self.weights.shape[1]))

    @property
    def vocab_size(self) -> int:
        return int(self.weights.shape[0])

    def model_max_length(self) -> int:
        return STATIC_MAX_LENGTH

    def check_pooling(self, pooling: Pooling) -> None:
        if str(pooling) != "last-avg":
            raise ConfigError(f"a static model averages its token vectors: pooling {pooling} "
                              "is not available (use last-avg, or the default)",
                              param="pooling")

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "identity": self.model_identity,
                "backend": "torch", "kind": "static", "quantize": "none",
                "default_pooling": "last-avg",
                "dtype": "float32", "device": "cpu", "lowercase": self.lowercase,
                "prompt": self.prompt, "instruction": self.instruction,
                "vocab_size": self.vocab_size, "hidden_size": int(self.weights.shape[1]),
                "dim": self.dim, "st_folder": self.st.describe(),
                "truncate_dim": self.truncate_dim, "similarity": self.similarity}

    def encode(self, sentences: Sequence[str], pooling: str | None = None, *,
               max_length: int = 64) -> np.ndarray:
        p = Pooling(pooling or self.default_pooling)
        return self.encode_multi(sentences, [str(p)], max_length=max_length)[str(p)]

    def encode_multi(self, sentences: Sequence[str], poolings: Sequence[str], *,
                     max_length: int = 64) -> dict[str, np.ndarray]:
        pools = list(dict.fromkeys(Pooling(p) for p in poolings))
        for p in pools:
            self.check_pooling(p)
        if max_length < 1:
            raise ConfigError(f"max_length must be at least 1, not {max_length}",
                              param="max_length")
        texts = [self.prompt + (t.lower() if self.lowercase else t) for t in sentences]
        out = np.zeros((len(texts), self.dim), np.float32)
        for start in range(0, len(texts), self.batch_size):
            out[start:start + self.batch_size] = self._batch(
                texts[start:start + self.batch_size], max_length)
        return {str(p): out for p in pools}

    def _batch(self, texts: list[str], max_length: int) -> np.ndarray:
        encs = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        ids = [e.ids[:max_length] for e in encs]
        lengths = np.array([len(x) for x in ids], dtype=np.int64)
        pooled = np.zeros((len(ids), self.weights.shape[1]), np.float32)
        full = lengths > 0
        if full.any():
            flat = np.fromiter((i for x in ids for i in x), dtype=np.int64)
            if flat.max() >= self.vocab_size:
                raise ConfigError(f"{self.path}: the tokenizer gives token id {flat.max()} but "
                                  f"the embedding has {self.vocab_size} rows; the folder is "
                                  "inconsistent", param="model")
            starts = np.concatenate([[0], np.cumsum(lengths[full])[:-1]])
            sums = np.add.reduceat(self.weights[flat], starts, axis=0)
            pooled[full] = sums / lengths[full, None].astype(np.float32)
        vecs = self.st.apply(pooled)
        return vecs[:, :self.truncate_dim] if self.truncate_dim else vecs


def static_encoder(config: EncoderConfig) -> StaticEncoder:
    """:class:`StaticEncoder` from the settings that build any encoder; a setting a static
    model has no use for (another backend, quantisation, a GPU, a dtype, a revision) is
    refused in one line rather than ignored."""
    model, backend, quantize = config.model, config.backend, config.quantize
    device, dtype, revision = config.device, config.dtype, config.revision
    wrong = [(backend != "torch", "backend", f"backend {backend}"),
             (quantize != "none", "quantize", f"quantisation {quantize}"),
             (device not in (None, "cpu"), "device", f"device {device}"),
             (dtype not in ("float32", "fp32"), "dtype", f"dtype {dtype}"),
             (revision is not None, "revision", f"revision {revision}")]
    for bad, param, what in wrong:
        if bad:
            raise ConfigError(f"{model} is a static model (token vectors averaged in numpy, "
                              f"float32 on the cpu): {what} does not apply to it; drop it",
                              param=param)
    return StaticEncoder(model, config.pooling, batch_size=max(config.batch_size, 1),
                         lowercase=config.lowercase, prompt=config.prompt,
                         truncate_dim=config.truncate_dim)
