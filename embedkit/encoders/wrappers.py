"""Wrappers that stack around any :class:`~embedkit.encoders.protocol.SentenceEncoder`, the way
mteb stacks its cache and compression wrappers around a model:

- :class:`CachedEncoder`: de-duplicates sentences, reads and writes the on-disk cache, and
  encodes what is missing in pieces of a few seconds, committing them to the cache once
  :data:`_CACHE_CHUNK` sentences wait or half of :data:`_COMMIT_SECONDS` has passed since the last
  commit (pieces last about that half, so commits are at most :data:`_COMMIT_SECONDS` apart); an
  interrupt (Ctrl-C) commits what was encoded and is raised again as
  :class:`~embedkit.errors.WorkKept`, so a rerun resumes; vectors that are not finite (NaN or
  inf) are an error, never scored or cached;
- :class:`MeteredEncoder`: counts and times what reaches the model and reports progress (a bar
  on a terminal, periodic log lines otherwise), after each batch where the model reports its
  batches (``on_batch``).

Both share one :class:`EncodeStats`, which :func:`encode_stats` reads for a run record.

>>> import numpy as np
>>> class Echo:  # any object with the protocol's methods will do
...     name, identity, default_pooling, dim = "echo", "echo@1", "cls", 1
...     def model_max_length(self): return 8
...     def describe(self): return {"name": self.name}
...     def encode_multi(self, sentences, poolings, *, max_length=64):
...         return {str(p): np.array([[len(s)] for s in sentences], np.float32) for p in poolings}
...     def encode(self, sentences, pooling=None, *, max_length=64):
...         return self.encode_multi(sentences, [pooling or "cls"])[str(pooling or "cls")]
>>> enc = CachedEncoder(MeteredEncoder(Echo(), progress=False), cache=None)
>>> enc.encode(["ab", "abc", "ab"], "cls").ravel().tolist()
[2.0, 3.0, 2.0]
>>> encode_stats(enc)["encoded"], encode_stats(enc)["unique_sentences"]
(2, 2)
"""

from __future__ import annotations

import inspect
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embedkit.encoders.cache import EmbeddingCache
from embedkit.encoders.pooling import Pooling
from embedkit.encoders.protocol import SentenceEncoder
from embedkit.errors import ConfigError, EmbedkitError, WorkKept

logger = logging.getLogger(__name__)

_CACHE_CHUNK = 4096   # at most this many sentences encoded between two cache commits
_COMMIT_SECONDS = 10.0  # and at most this many seconds (a model call lasts about half of it)
PROGRESS_MIN = 2000  # report progress from this many sentences to encode
LOG_EVERY = 30.0     # seconds between two progress log lines when stderr is not a terminal
_STEP_BATCHES = 16    # batches per model call of an encoder that takes no on_batch callback


@dataclass
class EncodeStats:
    """Counters of an encoder stack's work since creation."""

    sentences: int = 0          # sentences asked for (with repeats)
    unique: int = 0             # distinct sentences among them
    cache_hits: int = 0         # distinct sentences found in the cache
    encoded: int = 0            # sentences run through the model
    stored: int = 0             # distinct sentences whose new vectors were stored in the cache
    seconds: float = 0.0        # wall time spent in the model (tokenising included)
    per_call: list[float] = field(default_factory=list)

    @property
    def sentences_per_second(self) -> float:
        return self.encoded / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"sentences": self.sentences, "unique_sentences": self.unique,
                "cache_hits": self.cache_hits, "encoded": self.encoded,
                "seconds_encoding": round(self.seconds, 3),
                "sentences_per_second": round(self.sentences_per_second, 1)}


class EncoderWrapper:
    """Forwards the protocol's attributes to the wrapped encoder (``inner``)."""

    def __init__(self, inner: SentenceEncoder) -> None:
        self.inner = inner
        self.stats: EncodeStats = getattr(inner, "stats", None) or EncodeStats()

    def __getattr__(self, name: str) -> Any:  # name, path, device, model, tokenizer ...
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def identity(self) -> str:
        return self.inner.identity

    @property
    def default_pooling(self) -> Pooling:
        return Pooling(self.inner.default_pooling)

    @property
    def dim(self) -> int:
        return self.inner.dim

    def model_max_length(self) -> int:
        return self.inner.model_max_length()

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def encode(self, sentences: Sequence[str], pooling: str | None = None, *,
               max_length: int = 64, **options: Any) -> np.ndarray:
        """``options`` (e.g. ``batch_size``) are passed down to the model."""
        p = Pooling(pooling or self.default_pooling)
        return self.encode_multi(sentences, [p], max_length=max_length, **options)[str(p)]

    def encode_multi(self, sentences: Sequence[str], poolings: Sequence[str], *,
                     max_length: int = 64, **options: Any) -> dict[str, np.ndarray]:
        return self.inner.encode_multi(sentences, poolings, max_length=max_length, **options)


def _duration(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``1 h 02 min``.

    >>> _duration(42.4), _duration(185), _duration(3720)
    ('42 s', '3 min 5 s', '1 h 02 min')
    """
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class _Progress:
    """A tqdm bar on a terminal; otherwise INFO log lines: one when encoding starts, one after
    the first update (a batch; rate and time left from the first minute on), then one every
    :data:`LOG_EVERY` seconds and one at the end."""

    def __init__(self, total: int, show: bool | None, name: str = "") -> None:
        self.total, self.done, self.t0 = total, 0, time.perf_counter()
        self.last: float | None = None
        tty = sys.stderr.isatty()
        wanted = show if show is not None else total >= PROGRESS_MIN
        self.bar = None
        self.log = bool(wanted and not tty and show is not False and total)
        if wanted and tty and total:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="encoding", unit="sent", leave=False)
        if self.log:
            by = f" with {name}" if name else ""
            logger.info("encoding %d sentences%s (progress every %.0f s)", total, by, LOG_EVERY)

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.log:
            now = time.perf_counter() - self.t0
            if self.last is None or now - self.last >= LOG_EVERY or self.done >= self.total:
                self.last = now
                self._line(now)

    def _line(self, now: float) -> None:
        rate = self.done / now if now > 0 else 0.0
        pct = 100 * self.done / self.total
        if self.done >= self.total:
            logger.info("encoding: %d/%d sentences (100%%) in %s, %.0f sentences/s", self.done,
                        self.total, _duration(now), rate)
            return
        left = _duration((self.total - self.done) / rate) if rate > 0 else "unknown"
        logger.info("encoding: %d/%d sentences (%.0f%%), %.0f sentences/s, about %s left",
                    self.done, self.total, pct, rate, left)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class MeteredEncoder(EncoderWrapper):
    """Counts and times the sentences that reach the wrapped encoder, and shows progress.

    A caller that encodes in several calls announces the total with :meth:`begin` and closes
    with :meth:`end`, so that one progress display covers them all.
    """

    def __init__(self, inner: SentenceEncoder, progress: bool | None = None) -> None:
        super().__init__(inner)
        self.progress = progress
        self._display: _Progress | None = None

    def begin(self, total: int) -> None:
        self.end()
        self._display = _Progress(total, self.progress, str(getattr(self.inner, "name", "")))

    def end(self) -> None:
        if self._display is not None:
            self._display.close()
            self._display = None

    def encode_multi(self, sentences: Sequence[str], poolings: Sequence[str], *,
                     max_length: int = 64, **options: Any) -> dict[str, np.ndarray]:
        """One call of the wrapped encoder when it reports its batches (``on_batch``, as
        :meth:`~embedkit.encoders.base.TokenizedEncoder.encode_multi` does): progress moves
        with every batch. Else (an encoder of the protocol alone) steps of
        :data:`_STEP_BATCHES` batches, one call each, so that progress moves between them."""
        own = self._display is None
        if own:
            self.begin(len(sentences))
        try:
            if takes_on_batch(self.inner):
                return self._step(sentences, poolings, max_length, options, per_batch=True)
            step = self._step_size(options)
            if len(sentences) <= step:
                return self._step(sentences, poolings, max_length, options)
            # longest first across the steps (characters as the proxy for tokens), so that each
            # step's batches are as even as one call over all of them would make them
            order = np.argsort([-len(t) for t in sentences], kind="stable")
            ordered = [sentences[i] for i in order]
            parts = [self._step(ordered[i:i + step], poolings, max_length, options)
                     for i in range(0, len(ordered), step)]
            out = {}
            for p in parts[0]:
                full = np.empty((len(ordered), parts[0][p].shape[1]), dtype=np.float32)
                full[order] = np.concatenate([part[p] for part in parts])
                out[p] = full
            return out
        finally:
            if own:
                self.end()

    def _step_size(self, options: dict[str, Any]) -> int:
        """Sentences per model call: :data:`_STEP_BATCHES` batches, so that progress moves
        (and the first progress line comes) after seconds, not after a whole chunk."""
        batch = options.get("batch_size") or getattr(self.inner, "batch_size", None) or 64
        return max(1, int(batch)) * _STEP_BATCHES

    def _step(self, sentences: Sequence[str], poolings: Sequence[str], max_length: int,
              options: dict[str, Any], per_batch: bool = False) -> dict[str, np.ndarray]:
        """One call of the wrapped encoder, counted and timed; progress moves after it, or
        after each of its batches (``per_batch``: the encoder takes ``on_batch``)."""
        display = self._display
        if per_batch and display is not None:
            theirs = options.get("on_batch")  # a caller's own callback is called too

            def moved(n: int) -> None:
                display.update(n)
                if theirs is not None:
                    theirs(n)

            options = {**options, "on_batch": moved}
        t0 = time.perf_counter()
        out = self.inner.encode_multi(sentences, poolings, max_length=max_length, **options)
        self.stats.encoded += len(sentences)
        self.stats.seconds += time.perf_counter() - t0
        if display is not None and not per_batch:
            display.update(len(sentences))
        return out


def takes_on_batch(encoder: Any) -> bool:
    """Whether an encoder's ``encode_multi`` takes ``on_batch`` (a callback after each batch,
    with its number of sentences), as every :class:`~embedkit.encoders.base.TokenizedEncoder`'s
    does; an encoder may also declare it with ``takes_on_batch = True``.

    >>> class Old:
    ...     def encode_multi(self, sentences, poolings, *, max_length=64): ...
    >>> class New:
    ...     def encode_multi(self, sentences, poolings, *, max_length=64, on_batch=None): ...
    >>> takes_on_batch(Old()), takes_on_batch(New())
    (False, True)
    """
    declared = getattr(type(encoder), "takes_on_batch", None)
    if isinstance(declared, bool):
        return declared
    method = getattr(encoder, "encode_multi", None)
    if method is None:
        return False
    try:
        return "on_batch" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def settings_record(encoder: SentenceEncoder) -> dict[str, Any]:
    """What a run record states about how an encoder ran (its :meth:`describe`, defaults
    resolved: device, dtype, backend, casing, prompt, batching, versions, cache folder; the
    calibration set of int8-static). The
    settings as configured are :meth:`~embedkit.encoders.config.EncoderConfig.record`."""
    d = encoder.describe()
    cache = getattr(encoder, "cache", None)
    root = getattr(cache, "root", None)
    return {"device": d.get("device"), "dtype": d.get("dtype", "float32"),
            "backend": d.get("backend", "torch"), "quantize": d.get("quantize", "none"),
            "threads": d.get("threads"), "prompt": d.get("prompt", ""),
            "inference_precision": d.get("inference_precision"),
            "instruction": d.get("instruction"),
            "revision": d.get("revision"), "lowercase": d.get("lowercase", False),
            "batch_size": getattr(encoder, "batch_size", None),
            "token_budget": d.get("token_budget"), "versions": d.get("versions", {}),
            "truncate_dim": d.get("truncate_dim"), "similarity": d.get("similarity", "cosine"),
            "cache": str(root) if isinstance(root, (str, Path)) else None,
            **({"calibration": d["calibration"]} if d.get("calibration") else {})}


def _check_texts(sentences: Sequence[str]) -> list[str]:
    texts = list(sentences)
    bad = [i for i, s in enumerate(texts) if not isinstance(s, str)]
    if bad:
        raise ConfigError(f"sentence {bad[0]} is {type(texts[bad[0]]).__name__}, not str",
                          param="sentences")
    return texts


class CachedEncoder(EncoderWrapper):
    """De-duplicates sentences and keeps their vectors in an :class:`EmbeddingCache`
    (``cache=None``: de-duplication only). The namespace is everything besides the text that
    determines a vector: the wrapped encoder's identity, pooling and max length."""

    def __init__(self, inner: SentenceEncoder, cache: EmbeddingCache | None,
                 chunk: int = _CACHE_CHUNK, commit_seconds: float = _COMMIT_SECONDS) -> None:
        super().__init__(inner)
        self.cache = cache
        self.chunk = chunk
        self.commit_seconds = commit_seconds
        self.clock = time.monotonic  # what commits are timed by (tests give a fake one)

    def namespace_settings(self, pooling: str, max_length: int) -> dict[str, Any]:
        """The cache namespace's settings (shown by ``cache info``): the wrapped encoder's
        identity and name, the pooling and max length, and of its :func:`settings_record` the
        dtype and casing (those keys, and so every namespace, are as they always were)."""
        run = settings_record(self.inner)
        return {"model_identity": self.inner.identity, "model": self.inner.name,
                "pooling": str(pooling), "max_length": max_length,
                "dtype": run["dtype"], "lowercase": run["lowercase"]}

    def namespace(self, pooling: str, max_length: int) -> str:
        """The cache namespace vectors of ``pooling`` at ``max_length`` are kept under."""
        if self.cache is None:
            raise ConfigError("this encoder has no cache, so no cache namespace",
                              param="cache")
        return self.cache.namespace(self.namespace_settings(pooling, max_length))

    def encode_multi(self, sentences: Sequence[str], poolings: Sequence[str], *,
                     max_length: int = 64, **options: Any) -> dict[str, np.ndarray]:
        pools = [str(p) for p in dict.fromkeys(Pooling(p) for p in poolings)]
        check = getattr(self.inner, "check_pooling", None)
        for p in pools:
            if check is not None:
                check(Pooling(p))
        texts = _check_texts(sentences)
        unique = list(dict.fromkeys(texts))
        index = {s: i for i, s in enumerate(unique)}
        inverse = np.fromiter((index[s] for s in texts), dtype=np.int64, count=len(texts))
        self.stats.sentences += len(texts)
        self.stats.unique += len(unique)
        if max_length < 3:
            raise ConfigError("max_length must be at least 3 ([CLS], one token, [SEP])",
                              param="max_length")
        full, todo, spaces = self._lookup(unique, pools, max_length)
        self.stats.cache_hits += len(unique) - len(todo)
        self._fill(full, unique, todo, pools, (max_length, options), spaces)
        return {p: full[p][inverse] for p in pools}

    def _lookup(self, unique: list[str], pools: list[str], max_length: int
                ) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, str]]:
        full = {p: np.zeros((len(unique), self.inner.dim), np.float32) for p in pools}
        complete = np.full(len(unique), self.cache is not None and bool(unique))
        spaces: dict[str, str] = {}
        if self.cache is not None and unique:
            for p in pools:
                spaces[p] = self.namespace(p, max_length)
                vecs, missing = self.cache.get(spaces[p], unique, dim=self.inner.dim or None)
                found = np.ones(len(unique), dtype=bool)
                found[missing] = False
                if vecs is not None:
                    if vecs.shape[1] != full[p].shape[1]:
                        full[p] = np.zeros((len(unique), vecs.shape[1]), np.float32)
                    full[p][found] = vecs
                complete &= found
        todo = np.flatnonzero(~complete)
        # longest first (characters, a cheap proxy for tokens) so that chunks pad little
        return full, todo[np.argsort([-len(unique[i]) for i in todo], kind="stable")], spaces

    def _fill(self, full: dict[str, np.ndarray], unique: list[str], todo: np.ndarray,
              pools: list[str], how: tuple[int, dict[str, Any]], spaces: dict[str, str]) -> None:
        """Encode the ``todo`` rows a piece at a time (each piece sized to last about half of
        :attr:`commit_seconds`), committing to the cache by size and by time; an interrupt
        commits what was encoded before it goes on (:class:`WorkKept`)."""
        max_length, options = how
        begin, end = getattr(self.inner, "begin", None), getattr(self.inner, "end", None)
        if begin is not None:
            begin(len(todo))
        pending: list[np.ndarray] = []
        try:
            # without a cache there is nothing to commit: one call (progress moves with its
            # batches, and the encoder tokenises the next ones while it runs); with one, a
            # first piece of two batches, which times the pieces after it
            first = len(todo) if self.cache is None else min(2 * self._batch(options),
                                                             self.chunk)
            start, piece, last = 0, first, self.clock()
            while start < len(todo):
                rows = todo[start:start + piece]
                t0 = self.clock()
                self._encode_piece(full, unique, rows, pools, max_length, options)
                pending.append(rows)
                start += len(rows)
                now = self.clock()
                if self.cache is not None:
                    piece = self._piece_size(len(rows), now - t0, options)
                if sum(map(len, pending)) >= self.chunk or now - last >= self.commit_seconds / 2:
                    self._commit(full, unique, pending, pools, spaces)
                    last = now
            self._commit(full, unique, pending, pools, spaces)
        except KeyboardInterrupt:
            if self.cache is None:
                raise
            self._commit(full, unique, pending, pools, spaces)
            raise WorkKept(self.stats.stored, f"the embedding cache {self.cache.root}",
                           read_only=self.cache.read_only and not self.stats.stored) from None
        finally:
            if end is not None:
                end()

    def _batch(self, options: dict[str, Any]) -> int:
        batch = options.get("batch_size") or getattr(self.inner, "batch_size", None) or 64
        return max(1, int(batch))

    def _piece_size(self, n: int, seconds: float, options: dict[str, Any]) -> int:
        """Sentences for the next model call: what the last call's rate encodes in half of
        :attr:`commit_seconds`, in whole batches, from one batch to :attr:`chunk`.

        >>> enc = CachedEncoder(None, cache=None, chunk=4096)
        >>> [enc._piece_size(128, s, {"batch_size": 64}) for s in (1.0, 5.0, 60.0, 0.0)]
        [640, 128, 64, 4096]
        """
        batch = self._batch(options)
        most = max(self.chunk // batch * batch, min(batch, self.chunk))
        if seconds <= 0:
            return most
        target = int(n / seconds * self.commit_seconds / 2) // batch * batch
        return max(min(batch, most), min(target, most))

    def _encode_piece(self, full: dict[str, np.ndarray], unique: list[str], rows: np.ndarray,
                      pools: list[str], max_length: int, options: dict[str, Any]) -> None:
        texts = [unique[i] for i in rows]
        computed = self.inner.encode_multi(texts, pools, max_length=max_length, **options)
        for p in pools:
            self._check_finite(computed[p], texts, p)
            if computed[p].shape[1] != full[p].shape[1]:
                full[p] = np.zeros((len(unique), computed[p].shape[1]), np.float32)
            full[p][rows] = computed[p]

    def _commit(self, full: dict[str, np.ndarray], unique: list[str],
                pending: list[np.ndarray], pools: list[str], spaces: dict[str, str]) -> None:
        """Store the pending rows' vectors (one transaction per pooling), then forget them."""
        if self.cache is None or not pending:
            pending.clear()
            return
        rows = np.concatenate(pending)
        texts = [unique[i] for i in rows]
        stored = [self.cache.put(spaces[p], texts, full[p][rows]) for p in pools]
        self.stats.stored += max(stored, default=0)
        pending.clear()

    def _check_finite(self, vectors: np.ndarray, texts: list[str], pooling: str) -> None:
        """A model that outputs NaN or inf is an error, never vectors to score (or cache)."""
        bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
        if not len(bad):
            return
        dtype = self.inner.describe().get("dtype", "float32")
        hint = (f"{dtype} overflows for this model: use float32 (dtype)" if dtype != "float32"
                else "its weights may be damaged (check them, or re-download the model)")
        raise EmbedkitError(
            f"model {self.inner.name!r} produced vectors that are not finite (NaN or inf) for "
            f"{len(bad)} of {len(texts)} sentences (pooling {pooling}; the first: "
            f"{texts[bad[0]][:40]!r}); {hint}. Nothing was scored, and none of these vectors was cached")


def encode_stats(encoder: Any) -> dict[str, Any]:
    """The counters of an encoder stack (zeros for an encoder without statistics)."""
    stats = getattr(encoder, "stats", None)
    return (stats if isinstance(stats, EncodeStats) else EncodeStats()).as_dict()
