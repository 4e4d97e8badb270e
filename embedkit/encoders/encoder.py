"""Sentences in, float32 vectors out: any transformers encoder with the literature's poolings.

>>> enc = Encoder("m3e-small")                                   # doctest: +SKIP
>>> enc.encode(["我喜欢北京", "我爱北京"], pooling="cls").shape     # doctest: +SKIP
(2, 512)
"""

from __future__ import annotations

import inspect
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from embedkit.encoders.cache import EmbeddingCache
from embedkit.encoders.models import declared_pooling, is_local, model_identity, resolve_model_path
from embedkit.encoders.pooling import layers_needed, parse_pooling, pool
from embedkit.errors import ConfigError, EmbedkitError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
          "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
PROGRESS_MIN = 2000  # show a progress bar from this many sentences to encode
CACHE_CHUNK = 4096  # sentences encoded between two cache writes


@dataclass
class EncodeStats:
    """Counters of the encoder's work since creation (or the last reset)."""

    sentences: int = 0          # sentences asked for (with repeats)
    unique: int = 0             # distinct sentences among them
    cache_hits: int = 0         # distinct sentences found in the cache
    encoded: int = 0            # distinct sentences run through the model
    seconds: float = 0.0        # wall time spent in the model (tokenising included)
    per_call: list = field(default_factory=list)

    @property
    def sentences_per_second(self) -> float:
        return self.encoded / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {"sentences": self.sentences, "unique_sentences": self.unique,
                "cache_hits": self.cache_hits, "encoded": self.encoded,
                "seconds_encoding": round(self.seconds, 3),
                "sentences_per_second": round(self.sentences_per_second, 1)}


class Encoder:
    """A transformers encoder with BERT-whitening poolings, de-duplication, length-sorted batches
    and an optional on-disk cache.

    Args:
        model: hub id (``moka-ai/m3e-small``), local folder, or alias (``m3e-small``).
        pooling: default pooling; ``None`` takes the one the model folder declares, else ``cls``.
        device: ``cpu``, ``cuda``, ``cuda:1`` ...; ``None`` picks cuda when available.
        dtype: ``float32`` (default), ``bfloat16`` or ``float16`` for the model's weights.
        lowercase: lower-case text before tokenising (the published Keras code does); by
            default the tokenizer's own casing is kept.
        cache: an :class:`EmbeddingCache`, or ``None`` for no cache.
        revision: hub revision (branch, tag or commit) when ``model`` is a hub id.
    """

    def __init__(self, model: str, pooling: str | None = None, *, device: str | None = "cpu",
                 dtype: str = "float32", lowercase: bool = False,
                 cache: EmbeddingCache | None = None, batch_size: int = 64,
                 revision: str | None = None, progress: bool | None = None):
        from transformers import AutoModel, AutoTokenizer

        self.name = model
        self.path = resolve_model_path(model)
        if dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {dtype!r}; valid: float32, bfloat16, float16")
        self.dtype_name = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}.get(dtype, dtype)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError("--device cuda was given but torch sees no CUDA device; use --device cpu")
        local = is_local(self.path)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, revision=revision)
            self.model, info = AutoModel.from_pretrained(
                self.path, revision=revision, output_loading_info=True)
        except (OSError, ValueError) as e:  # an empty or wrong folder raises ValueError
            hint = ("" if local else " (offline? pass a local folder, or set HF_HUB_OFFLINE=0 "
                    "with network access)")
            raise EmbedkitError(f"cannot load model {model!r} from {self.path}: "
                                f"{str(e).splitlines()[0]}{hint}") from None
        missing = set(info.get("missing_keys", []))
        self.has_pooler = getattr(self.model, "pooler", None) is not None and not any(
            "pooler" in k for k in missing)
        self.model.eval().to(self.device, dtype=DTYPES[dtype])
        commit = getattr(self.model.config, "_commit_hash", None)
        self.identity = model_identity(self.path, commit)
        self.default_pooling = parse_pooling(pooling or declared_pooling(self.path if local else None)
                                             or "cls")
        self.lowercase = lowercase
        self.cache = cache
        self.batch_size = batch_size
        self.progress = progress
        self.stats = EncodeStats()
        self.max_positions = int(getattr(self.model.config, "max_position_embeddings", 512))
        self._takes_token_types = "token_type_ids" in inspect.signature(self.model.forward).parameters

    # -- settings ---------------------------------------------------------------------------
    def model_max_length(self) -> int:
        """The model's own maximum sequence length (the C-MTEB protocol uses it)."""
        tok_max = getattr(self.tokenizer, "model_max_length", None) or self.max_positions
        return int(min(tok_max, self.max_positions))

    def cache_settings(self, pooling: str, max_length: int) -> dict:
        """Everything besides the text that determines a vector (the cache namespace)."""
        return {"model_identity": self.identity, "model": self.name, "pooling": pooling,
                "max_length": max_length, "dtype": self.dtype_name, "lowercase": self.lowercase}

    def describe(self) -> dict:
        return {"name": self.name, "path": self.path, "identity": self.identity,
                "default_pooling": self.default_pooling, "dtype": self.dtype_name,
                "device": str(self.device), "lowercase": self.lowercase,
                "hidden_size": int(getattr(self.model.config, "hidden_size", 0)),
                "num_layers": int(getattr(self.model.config, "num_hidden_layers", 0))}

    def _check_pooling(self, pooling: str) -> None:
        if pooling in ("pooler", "pooler-tanh") and not self.has_pooler:
            raise ConfigError(f"pooling {pooling!r} needs pooler weights, and {self.name} has none "
                              "in its checkpoint (transformers would initialise them randomly); "
                              "choose cls, last-avg or first-last-avg")

    # -- encoding ---------------------------------------------------------------------------
    def encode(self, sentences: Sequence[str], pooling: str | None = None, *,
               max_length: int = 64, batch_size: int | None = None) -> np.ndarray:
        """Encode sentences into an (n, d) float32 array, in input order.

        Each sentence is encoded alone as ``[CLS] ... [SEP]``, truncated to ``max_length``
        tokens counting the special tokens. Identical sentences are encoded once.
        """
        p = parse_pooling(pooling or self.default_pooling)
        return self.encode_multi(sentences, [p], max_length=max_length, batch_size=batch_size)[p]

    def encode_multi(self, sentences: Sequence[str], poolings: Sequence[str], *,
                     max_length: int = 64, batch_size: int | None = None) -> dict[str, np.ndarray]:
        """Encode once and pool several ways: {pooling: (n, d) float32 array}."""
        poolings = list(dict.fromkeys(parse_pooling(p) for p in poolings))
        for p in poolings:
            self._check_pooling(p)
        if max_length < 3:
            raise ConfigError("max_length must be at least 3 ([CLS], one token, [SEP])")
        max_length = min(max_length, self.max_positions)
        sentences = list(sentences)
        bad = [i for i, s in enumerate(sentences) if not isinstance(s, str)]
        if bad:
            raise ConfigError(f"sentence {bad[0]} is {type(sentences[bad[0]]).__name__}, not str")
        unique = list(dict.fromkeys(sentences))
        index = {s: i for i, s in enumerate(unique)}
        inverse = np.fromiter((index[s] for s in sentences), dtype=np.int64, count=len(sentences))
        self.stats.sentences += len(sentences)
        self.stats.unique += len(unique)

        full: dict[str, np.ndarray | None] = {p: None for p in poolings}

        def store(p: str, rows, vecs: np.ndarray) -> None:
            if full[p] is None:
                full[p] = np.zeros((len(unique), vecs.shape[1]), dtype=np.float32)
            full[p][rows] = vecs

        namespaces = {}
        complete = np.ones(len(unique), dtype=bool)
        if self.cache is not None:
            for p in poolings:
                namespaces[p] = self.cache.namespace(self.cache_settings(p, max_length))
                vecs, missing = self.cache.get(namespaces[p], unique)
                found = np.ones(len(unique), dtype=bool)
                found[missing] = False
                if vecs is not None:
                    store(p, np.flatnonzero(found), vecs)
                complete &= found
        else:
            complete[:] = False
        todo = np.flatnonzero(~complete)
        # longest first (by characters, a cheap proxy for tokens) so that chunks pad little
        todo = todo[np.argsort([-len(unique[i]) for i in todo], kind="stable")]
        self.stats.cache_hits += len(unique) - len(todo)

        # Encode in chunks, caching each as it is done: an interrupted run keeps its work.
        bar = self._progress_bar(len(todo))
        try:
            for start in range(0, len(todo), CACHE_CHUNK):
                rows = todo[start:start + CACHE_CHUNK]
                texts = [unique[i] for i in rows]
                computed = self._run(texts, poolings, max_length, batch_size or self.batch_size, bar)
                for p in poolings:
                    store(p, rows, computed[p])
                    if self.cache is not None:
                        self.cache.put(namespaces[p], texts, computed[p])
        finally:
            if bar is not None:
                bar.close()
        width = int(getattr(self.model.config, "hidden_size", 0))
        return {p: (full[p] if full[p] is not None else np.zeros((0, width), np.float32))[inverse]
                for p in poolings}

    def _progress_bar(self, total: int):
        show = self.progress if self.progress is not None else (
            total >= PROGRESS_MIN and sys.stderr.isatty())
        if not show or total == 0:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, desc="encoding", unit="sent", leave=False)

    @torch.inference_mode()
    def _run(self, texts: list[str], poolings: list[str], max_length: int,
             batch_size: int, bar=None) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        inputs = [t.lower() for t in texts] if self.lowercase else texts
        enc = self.tokenizer(inputs, truncation=True, max_length=max_length, padding=False,
                             return_attention_mask=False, return_token_type_ids=False)
        ids = enc["input_ids"]
        order = np.argsort([-len(x) for x in ids], kind="stable")  # longest first: peak memory early
        need_hidden = any(layers_needed(p) for p in poolings)
        results: dict[str, np.ndarray] = {}
        pad_id = self.tokenizer.pad_token_id or 0
        chunks = []
        for start in range(0, len(texts), batch_size):
            sel = order[start:start + batch_size]
            batch = [ids[i] for i in sel]
            width = max(len(x) for x in batch)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for r, x in enumerate(batch):
                input_ids[r, :len(x)] = torch.tensor(x, dtype=torch.long)
                mask[r, :len(x)] = 1
            input_ids, mask = input_ids.to(self.device), mask.to(self.device)
            extra = {"token_type_ids": torch.zeros_like(input_ids)} if self._takes_token_types else {}
            outputs = self.model(input_ids=input_ids, attention_mask=mask, **extra,
                                 output_hidden_states=need_hidden, return_dict=True)
            pooled = {p: pool(p, outputs, mask, self.model).cpu().numpy() for p in poolings}
            chunks.append((sel, pooled))
            if bar is not None:
                bar.update(len(batch))
        for p in poolings:
            dim = chunks[0][1][p].shape[1]
            arr = np.empty((len(texts), dim), dtype=np.float32)
            for sel, pooled in chunks:
                arr[sel] = pooled[p]
            results[p] = arr
        self.stats.encoded += len(texts)
        self.stats.seconds += time.perf_counter() - t0
        return results
