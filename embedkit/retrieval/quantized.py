"""Quantised indexes with rescoring: FAISS's scalar quantiser (``SQ8``) and binary indexes
(``IndexBinaryFlat``, ``IndexBinaryHNSW``, ``IndexBinaryIVF``), searched with oversampling and
rescored on vectors kept on disk.

``vectors="int8"`` builds the SQ8 form of the factory (``Flat`` -> ``SQ8``, ``IVF1024,Flat`` ->
``IVF1024,SQ8``, ``HNSW32`` -> ``HNSW32_SQ8``; FAISS's ``ScalarQuantizer`` ``QT_8bit``, trained
per dimension on the training sample) behind the usual baked pre-transforms.
``vectors="binary"`` keeps the sign bits of the transformed vectors (``np.packbits(x > 0)``) in
the binary form of the factory (``BFlat``, ``BHNSW32``, ``BIVF1024``), searched by Hamming
distance; FAISS's binary indexes take no pre-transform, so the transform chain is kept in an
empty ``IndexPreTransform`` and applied here before packing.

A search asks the quantised index for ``rescore x k`` candidates and scores them exactly
(inner product, cosine or squared L2 on the transformed vectors) from a :class:`RescoreStore`:
the transformed float32 vectors (``rescore.f32``) or their int8 codes (``rescore.i8``,
per-dimension scales fitted on the training sample, in ``rescore.scale.npy``) -- one raw file,
memory-mapped, of which a search reads only the candidates' rows.

Why not ``faiss.IndexRefineFlat``: it rescores SQ8 candidates exactly but keeps every float
vector in an ``IndexFlat`` in RAM (it is serialised into ``index.faiss`` and read back whole),
which is the memory these indexes exist to save; and it cannot wrap a binary index. The store
here is a file of the index folder (its sha256 checked like every other file) mapped with
``np.memmap``.

>>> import numpy as np
>>> x = np.random.default_rng(0).standard_normal((300, 16)).astype("float32")
>>> q = make_quantized(16, "Flat", "cosine", None, vectors="binary")
>>> q.train(x); q.add(x)
>>> int(q.search_with(x[:1], 1)[1][0, 0])
0
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedkit.errors import ConfigError
from embedkit.postprocess.affine import AffineMap
from embedkit.retrieval.choices import DEFAULT_RESCORE, INDEX_CODES, RESCORE_WITH
from embedkit.retrieval.faiss_ops import (
    faiss,
    ivf_nlist,
    make_faiss_index,
    search_parameters,
    serialized_bytes,
    train_index,
)

__all__ = ["DEFAULT_RESCORE", "RESCORE_WITH", "VECTORS", "QuantizedIndex", "RescoreStore",
           "binary_factory", "is_binary_factory", "make_index", "make_quantized",
           "parse_spec", "quantized_factory", "read_quantized", "tune_quantized"]

logger = logging.getLogger(__name__)

VECTORS = INDEX_CODES
STORE_FILES = {"float": "rescore.f32", "int8": "rescore.i8"}
SCALE_FILE = "rescore.scale.npy"
#: the binary index inside a binary index folder (index.faiss holds the transform chain)
BINARY_FILE = "codes.faissb"
#: the mean a binary index's vectors are centred on before their sign bits are kept
CENTRE_FILE = "binary.centre.npy"
_DTYPES = {"float": np.float32, "int8": np.int8}


# --------------------------------------------------------------------------------------------
# factories


def is_binary_factory(factory: str) -> bool:
    """True for FAISS's binary factory strings (``BFlat``, ``BHNSW32``, ``BIVF1024``).

    >>> is_binary_factory("BHNSW32"), is_binary_factory("HNSW32")
    (True, False)
    """
    return bool(re.fullmatch(r"B(Flat|HNSW\d+|IVF\d+)", factory.strip()))


def binary_factory(factory: str) -> str:
    """The binary form of a float factory: Flat -> BFlat, HNSWm -> BHNSWm, IVFn,Flat -> BIVFn.

    >>> binary_factory("IVF256,Flat"), binary_factory("HNSW32"), binary_factory("BFlat")
    ('BIVF256', 'BHNSW32', 'BFlat')
    """
    f = factory.replace(" ", "")
    if is_binary_factory(f):
        return f
    hnsw, ivf = _flat_kind(f, f"factory {factory!r} has no binary form; binary indexes are "
                              "Flat, HNSW<M> or IVF<n>,Flat (BFlat, BHNSW<M>, BIVF<n>)")
    return f"BHNSW{hnsw}" if hnsw else (f"BIVF{ivf}" if ivf else "BFlat")


def _flat_kind(f: str, refusal: str) -> tuple[str | None, str | None]:
    """``(M, None)`` for ``HNSW<M>``, ``(None, n)`` for ``IVF<n>,Flat``, ``(None, None)`` for
    ``Flat``: the float factories a quantised form exists for (``refusal`` otherwise)."""
    m = re.fullmatch(r"(?:Flat|HNSW(\d+)(?:,Flat)?|IVF(\d+),Flat)", f)
    if m is None:
        raise ConfigError(refusal, param="factory")
    return m.group(1), m.group(2)


def quantized_factory(factory: str, vectors: str) -> str:
    """The factory an index of ``vectors`` builds (``float``: ``factory`` as it is).

    >>> quantized_factory("IVF64,Flat", "int8"), quantized_factory("HNSW32", "int8")
    ('IVF64,SQ8', 'HNSW32_SQ8')
    """
    if vectors not in VECTORS:
        raise ConfigError(f"unknown vectors {vectors!r}; choose one of {', '.join(VECTORS)}",
                          param="vectors")
    f = factory.replace(" ", "")
    if vectors == "float":
        return f
    if vectors == "binary":
        return binary_factory(f)
    if vectors == "factory":  # the factory's own codes (PQ, SQ4, PCA+SQ8), rescored
        return f
    if "SQ8" in f:
        return f
    hnsw, ivf = _flat_kind(f, f"factory {factory!r} has no int8 (SQ8) form; use Flat, "
                              "HNSW<M> or IVF<n>,Flat")
    return f"HNSW{hnsw}_SQ8" if hnsw else (f"IVF{ivf},SQ8" if ivf else "SQ8")


def _check_rescore(rescore: int, rescore_with: str) -> None:
    if int(rescore) < 0:
        raise ConfigError(f"rescore must be >= 0 (0: no rescoring), got {rescore}",
                          param="rescore")
    if rescore_with not in RESCORE_WITH:
        raise ConfigError(f"unknown rescore vectors {rescore_with!r}; choose one of "
                          f"{', '.join(RESCORE_WITH)}", param="rescore_with")


# --------------------------------------------------------------------------------------------
# the store of rescoring vectors


class RescoreStore:
    """The transformed vectors as one raw file (float32, or int8 codes with per-dimension
    scales), appended while building and memory-mapped for searching."""

    def __init__(self, path: Path, dim: int, kind: str, scale: np.ndarray | None = None):
        self.path, self.dim, self.kind = Path(path), int(dim), kind
        self.scale = None if scale is None else np.asarray(scale, dtype=np.float32)
        self._map: np.memmap | None = None

    @classmethod
    def temporary(cls, dim: int, kind: str) -> RescoreStore:
        """A new empty store in the system's temporary folder, removed with the object."""
        fd, name = tempfile.mkstemp(prefix="embedkit-rescore-", suffix=f".{kind}")
        os.close(fd)
        store = cls(Path(name), dim, kind)
        weakref.finalize(store, _unlink, name)
        return store

    def fit_scale(self, x: np.ndarray) -> None:
        """int8: ``max |x_j| / 127`` per dimension on ``x`` (the training sample)."""
        if self.kind == "int8":
            top = np.abs(x).max(axis=0) if x.shape[0] else np.ones(self.dim)
            self.scale = (np.where(top > 0, top, 1.0) / 127.0).astype(np.float32)

    def append(self, x: np.ndarray) -> None:
        """Write the transformed rows ``x`` at the end of the file."""
        if self.kind == "int8":
            if self.scale is None:
                self.fit_scale(x)
            assert self.scale is not None
            rows = np.clip(np.rint(x / self.scale), -127, 127).astype(np.int8)
        else:
            rows = np.ascontiguousarray(x, dtype=np.float32)
        with open(self.path, "ab") as fh:
            fh.write(rows.tobytes())
        self._map = None

    @property
    def rows(self) -> int:
        return os.path.getsize(self.path) // (self.dim * np.dtype(_DTYPES[self.kind]).itemsize)

    def mapped(self) -> np.ndarray:
        """The file as a read-only ``np.memmap`` (n x dim); nothing is read until indexed."""
        if self._map is None:
            n = self.rows
            self._map = (np.memmap(self.path, dtype=_DTYPES[self.kind], mode="r",
                                   shape=(n, self.dim)) if n else
                         np.zeros((0, self.dim), _DTYPES[self.kind]))  # type: ignore[assignment]
        assert self._map is not None
        return self._map

    def take(self, ids: np.ndarray) -> np.ndarray:
        """The float32 vectors of rows ``ids`` (int8 dequantised), read from the file."""
        rows = np.asarray(self.mapped()[np.asarray(ids, dtype=np.int64)], dtype=np.float32)
        return rows * self.scale if self.scale is not None else rows

    def files(self) -> dict[str, Any]:
        """The folder files of the store: name -> a path or bytes."""
        out: dict[str, Any] = {STORE_FILES[self.kind]: self.path}
        if self.scale is not None:
            out[SCALE_FILE] = _npy(self.scale)
        return out


def _npy(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _unlink(name: str) -> None:
    try:
        os.unlink(name)
    except OSError:
        pass


# --------------------------------------------------------------------------------------------
# the index


@dataclass
class QuantizedSettings:
    """What index.json's ``quantized`` entry holds."""

    vectors: str
    rescore: int
    rescore_with: str
    dim: int
    #: binary: the sign bits are those of the vectors minus the training sample's mean
    #: (``binary.centre.npy``); False in folders written before it
    centre: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"vectors": self.vectors, "rescore": int(self.rescore),
                "rescore_with": self.rescore_with if self.rescore else None,
                "dim": int(self.dim), "centre": bool(self.centre)}


class QuantizedIndex:
    """A quantised FAISS index (SQ8 behind the transforms, or binary after them) and the store
    its candidates are rescored from. It answers what :class:`EmbeddingIndex` asks of a FAISS
    index (``ntotal``, ``d``, ``is_trained``, ``train``, ``add``, ``chain``) and searches with
    :meth:`search_with`."""

    def __init__(self, base: Any, pre: Any, factory: str, metric: str,
                 settings: QuantizedSettings, store: RescoreStore | None,
                 centre: np.ndarray | None = None):
        self.base, self.pre, self.factory, self.metric = base, pre, factory, metric
        self.settings, self.store = settings, store
        self.binary = settings.vectors == "binary"
        # binary: the training sample's mean, subtracted before the sign bits are kept
        self.centre = None if centre is None else np.asarray(centre, dtype=np.float32)

    # ---- what EmbeddingIndex reads of a faiss index ----------------------------------------

    @property
    def ntotal(self) -> int:
        return int(self.base.ntotal)

    @property
    def d(self) -> int:
        return int(self.pre.d)

    @property
    def is_trained(self) -> bool:
        """The quantiser, the binary centre and the int8 store's scales all fitted."""
        return bool(self.base.is_trained) and not self._to_fit()

    def _to_fit(self) -> bool:
        return bool((self.binary and self.settings.centre and self.centre is None) or (
            self.store is not None and self.store.kind == "int8" and self.store.scale is None))

    def bits(self, t: np.ndarray) -> np.ndarray:
        """Packed sign bits of transformed rows ``t`` (centred on the training sample's mean
        first when built with ``centre``)."""
        return np.packbits((t - self.centre if self.centre is not None else t) > 0, axis=1)

    def train_sample_size(self, total: int, train_size: int | None) -> int:
        """Training rows out of ``total`` (faiss_ops' rule for the quantiser's IVF lists)."""
        from embedkit.retrieval.faiss_ops import train_sample_size

        if self.binary:
            nlist = _nlist(self)
            probe = make_faiss_index(8, f"IVF{nlist},Flat" if nlist else "Flat", "l2", None)
            return train_sample_size(probe, total, train_size)
        return train_sample_size(self.base, total, train_size)

    def tunable(self) -> frozenset[str]:
        """The search setting a default is chosen for (``nprobe`` / ``efSearch``)."""
        return frozenset({"nprobe"} if _nlist(self) else
                         {"efSearch"} if "HNSW" in self.factory else set())

    @property
    def chain(self) -> Any:
        return self.pre.chain

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Raw vectors through the baked chain (affine map, then the cosine normalisation)."""
        out = np.ascontiguousarray(x, dtype=np.float32)
        for i in range(self.pre.chain.size()):
            out = faiss.downcast_VectorTransform(self.pre.chain.at(i)).apply(out)
        return np.ascontiguousarray(out, dtype=np.float32)

    def train(self, x: np.ndarray, seed: int = 0, train_size: int | None = None) -> None:
        """Train the quantiser (SQ8 ranges, IVF centroids) and the int8 store's scales."""
        if self.store is not None and self.store.kind == "int8" and self.store.scale is None:
            self.store.fit_scale(self.transform(x))
        if self.binary and self.settings.centre and self.centre is None:
            self.centre = self.transform(x).mean(axis=0).astype(np.float32)
        if self.base.is_trained:
            return
        if self.binary:
            self.base.train(self.bits(self.transform(x)))
        else:
            train_index(self.base, x, self.factory, train_size, seed)

    def add(self, x: np.ndarray) -> None:
        """Append raw vectors (their codes to the index, their transformed rows to the store)."""
        if x.shape[0] == 0:
            return
        t = self.transform(x)
        if self.binary:
            self.base.add(self.bits(t))
        else:
            self.base.add(np.ascontiguousarray(x, dtype=np.float32))
        if self.store is not None:
            self.store.append(t)

    # ---- search ---------------------------------------------------------------------------

    def _params(self, nprobe: int | None, ef_search: int | None) -> Any:
        if not self.binary:
            return search_parameters(self.base, self.factory, nprobe=nprobe, ef_search=ef_search)
        inner = faiss.downcast_IndexBinary(self.base)
        if nprobe is not None:
            if not isinstance(inner, faiss.IndexBinaryIVF):
                raise ConfigError(f"nprobe applies to IVF indexes only; this index is "
                                  f"{self.factory!r}", param="nprobe")
            return faiss.SearchParametersIVF(nprobe=int(nprobe))
        if ef_search is not None:
            if not isinstance(inner, faiss.IndexBinaryHNSW):
                raise ConfigError(f"ef_search applies to HNSW indexes only; this index is "
                                  f"{self.factory!r}", param="ef_search")
            return faiss.SearchParametersHNSW(efSearch=int(ef_search))
        return None

    def candidates(self, q: np.ndarray, k: int, *, nprobe: int | None = None,
                   ef_search: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The quantised index's top ``k``: (scores, labels); binary scores are the Hamming
        similarity ``1 - 2 hamming / bits`` (the cosine of the sign vectors)."""
        params = self._params(nprobe, ef_search)
        if not self.binary:
            return self.base.search(q, k, params=params)
        dist, labels = self.base.search(self.bits(self.transform(q)), k, params=params)
        return 1.0 - 2.0 * dist.astype(np.float32) / self.settings.dim, labels

    def search_with(self, q: np.ndarray, k: int, *, nprobe: int | None = None,
                    ef_search: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` of ``rescore x k`` candidates rescored exactly from the store (without a
        store: the quantised index's own top ``k``)."""
        k = min(int(k), self.ntotal)
        if self.store is None or not self.settings.rescore:
            return self.candidates(q, k, nprobe=nprobe, ef_search=ef_search)
        kk = min(self.ntotal, k * int(self.settings.rescore))
        _, labels = self.candidates(q, kk, nprobe=nprobe, ef_search=ef_search)
        return rescore(self.transform(q), labels, self.store, self.metric, k)

    # ---- files ----------------------------------------------------------------------------

    def memory_bytes(self) -> int:
        """Bytes the index keeps in RAM (the serialised quantised index; the store is on
        disk, mapped)."""
        if self.binary:
            return int(faiss.serialize_index_binary(self.base).nbytes)
        return serialized_bytes(self.base)

    def write_index(self, path: str | os.PathLike) -> None:
        """``index.faiss``: the SQ8 index, or (binary) the transform chain around an empty
        flat index."""
        faiss.write_index(self.pre, os.fspath(path))

    def files(self) -> dict[str, Any]:
        """The extra files of the folder: the binary index and the rescoring store."""
        out: dict[str, Any] = {}
        if self.binary:
            out[BINARY_FILE] = faiss.serialize_index_binary(self.base).tobytes()
        if self.centre is not None:
            out[CENTRE_FILE] = _npy(self.centre)
        if self.store is not None:
            out.update(self.store.files())
        return out


def rescore(qt: np.ndarray, labels: np.ndarray, store: RescoreStore, metric: str,
            k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` of each row's candidate ``labels`` by the exact score of the transformed
    queries ``qt`` against the store's rows (only those rows are read)."""
    nq, kk = labels.shape
    out_s = np.full((nq, k), -np.inf if metric != "l2" else np.inf, dtype=np.float32)
    out_l = np.full((nq, k), -1, dtype=np.int64)
    valid = labels >= 0
    flat = np.unique(labels[valid])
    if flat.size == 0:
        return out_s, out_l
    vecs = store.take(flat)
    pos = np.searchsorted(flat, np.where(valid, labels, flat[0]))
    cand = vecs[pos]  # (nq, kk, dim)
    if metric == "l2":
        scores = ((cand - qt[:, None, :]) ** 2).sum(axis=2)
        scores = np.where(valid, scores, np.inf)
        order = np.argsort(scores, axis=1, kind="stable")[:, :k]
    else:
        if metric == "cosine" and store.kind == "int8":
            cand = cand / np.maximum(np.linalg.norm(cand, axis=2, keepdims=True), 1e-12)
        scores = np.einsum("qd,qkd->qk", qt, cand)
        scores = np.where(valid, scores, -np.inf)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    n = min(k, kk)
    out_s[:, :n] = np.take_along_axis(scores, order, axis=1)
    out_l[:, :n] = np.where(np.take_along_axis(valid, order, axis=1),
                            np.take_along_axis(labels, order, axis=1), -1)
    return out_s, out_l


def make_index(dim_in: int, factory: str, metric: str, transform: AffineMap | None, *,
               codes: str = "float", rescore: int = DEFAULT_RESCORE, rescore_with: str = "float",
               store_dir: Path | None = None) -> Any:
    """The empty index of the one builder (:func:`~embedkit.retrieval.shards.fill_index`
    fills either): FAISS's ``factory`` for ``codes="float"``, else a :class:`QuantizedIndex`
    whose rescoring store is written in ``store_dir`` (default: the system's temporary
    folder)."""
    if codes == "float":
        return make_faiss_index(dim_in, factory, metric, transform)
    dim = transform.k if transform is not None else dim_in
    store = (RescoreStore(Path(store_dir) / STORE_FILES[rescore_with], dim, rescore_with)
             if store_dir is not None and rescore else None)
    return make_quantized(dim_in, factory, metric, transform, vectors=codes, rescore=rescore,
                          rescore_with=rescore_with, store=store)


def make_quantized(dim_in: int, factory: str, metric: str, transform: AffineMap | None, *,
                   vectors: str, rescore: int = DEFAULT_RESCORE, rescore_with: str = "float",
                   store: RescoreStore | None = None, centre: bool = False) -> QuantizedIndex:
    """An empty quantised index; ``store`` (default: a temporary one) receives the rescoring
    vectors as they are added (none when ``rescore`` is 0). ``centre`` (binary): keep the sign
    bits of the vectors minus the training sample's mean (measured: no better than plain sign
    on the synthetic scale vectors, whose shared direction survives centring; plain sign, as
    sentence-transformers' ``quantize_embeddings`` does, is the default)."""
    _check_rescore(rescore, rescore_with)
    if vectors not in ("int8", "binary", "factory"):
        raise ConfigError(f"vectors must be int8, binary or factory here, not {vectors!r}",
                          param="vectors")
    qf = quantized_factory(factory, vectors)
    dim = transform.k if transform is not None else dim_in
    if vectors == "binary":
        if dim % 8:
            raise ConfigError(f"binary indexes need a dimension divisible by 8, got {dim}",
                              param="vectors")
        pre = make_faiss_index(dim_in, "Flat", metric, transform)
        base = faiss.index_binary_factory(int(dim), qf)
    else:
        pre = base = make_faiss_index(dim_in, qf, metric, transform)
    if rescore and store is None:
        store = RescoreStore.temporary(dim, rescore_with)
    settings = QuantizedSettings(vectors, int(rescore), rescore_with, int(dim),
                                 centre=bool(centre and vectors == "binary"))
    return QuantizedIndex(base, pre, qf, metric, settings, store if rescore else None)


def _nlist(index: QuantizedIndex) -> int:
    if index.binary:
        inner = faiss.downcast_IndexBinary(index.base)
        return int(inner.nlist) if isinstance(inner, faiss.IndexBinaryIVF) else 0
    return int(ivf_nlist(index.base) or 0)


def read_quantized(directory: Path, meta: dict[str, Any], pre: Any) -> QuantizedIndex:
    """The quantised index of a folder: ``pre`` is its ``index.faiss`` (read and checked by
    the caller); the binary index and the store are the folder's checked files (the store is
    mapped, not read)."""
    q = meta.get("quantized") or {}
    try:
        settings = QuantizedSettings(str(q["vectors"]), int(q["rescore"]),
                                     str(q.get("rescore_with") or "float"), int(q["dim"]),
                                     centre=bool(q.get("centre", False)))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{directory}/index.json: malformed 'quantized' entry ({exc}); "
                          "rebuild the index") from exc
    if settings.vectors == "binary":
        base = faiss.read_index_binary(str(directory / BINARY_FILE))
    else:
        base = pre
    store = None
    if settings.rescore:
        kind = settings.rescore_with
        scale = np.load(directory / SCALE_FILE) if kind == "int8" else None
        store = RescoreStore(directory / STORE_FILES[kind], settings.dim, kind, scale)
        if store.rows != base.ntotal:
            raise ConfigError(f"{store.path}: {store.rows} rows but the index holds "
                              f"{base.ntotal}; rebuild the index")
    centre = np.load(directory / CENTRE_FILE) if settings.centre else None
    return QuantizedIndex(base, pre, str(meta.get("factory")), str(meta["metric"]), settings,
                          store, centre)


def tune_quantized(index: QuantizedIndex, x: np.ndarray | None, transform: AffineMap | None,
                   *, seed: int = 0, target: float = 0.95, probe: Any = None
                   ) -> dict[str, Any] | None:
    """Default ``nprobe`` (IVF) / ``ef_search`` (HNSW) of a quantised index holding the rows
    of ``x`` (or measured by a filled ``probe``, a
    :class:`~embedkit.retrieval.tuning.RecallProbe`): the smallest whose rescored recall@10
    against exact float search reaches ``target`` on a seeded sample of its rows (as
    :mod:`embedkit.retrieval.tuning` does for float indexes); None when there is nothing to
    tune."""
    from embedkit.retrieval.tuning import (
        EF_SEARCH_CANDIDATES,
        RecallProbe,
        choose_setting,
        powers_of_two,
    )

    nlist = _nlist(index)
    hnsw = "HNSW" in index.factory
    if (not nlist and not hnsw) or index.ntotal < 2:
        return None
    key = "nprobe" if nlist else "ef_search"
    values = powers_of_two(nlist) if nlist else list(EF_SEARCH_CANDIDATES)
    if probe is None:
        assert x is not None
        probe = RecallProbe.for_matrix(x, index.metric, transform, seed=seed)
        for start in range(0, x.shape[0], 16384):
            probe.observe(x[start:start + 16384], start)
    if probe.queries.shape[0] == 0:
        return None
    truth = probe._without_self(probe._labels)

    def recall(value: int) -> float:
        labels = index.search_with(probe.queries, min(probe.k + 1, index.ntotal),
                                   **{key: value})[1]
        found = probe._without_self(labels)
        return float(np.mean([len(t & f) / len(t) for t, f in zip(truth, found, strict=True)
                              if t] or [1.0]))

    return choose_setting(key, values, recall, target, k=probe.k, queries=len(probe.queries),
                          seed=int(seed), factory=index.factory)


def parse_spec(spec: str) -> tuple[str, str, int] | None:
    """A quantised index as index eval's cost factories and the budget's candidates name it --
    ``BFlat``, ``BHNSW32+rescore4x``, ``BIVF1024+rescore4x``, ``SQ8+rescore4x`` -- as
    ``(float factory, codes, rescore)``; None for a plain FAISS factory (``SQ8`` without a
    rescore suffix is FAISS's own SQ8 index).

    >>> parse_spec("BIVF64+rescore4x"), parse_spec("SQ8+rescore2x"), parse_spec("SQ8")
    (('IVF64,Flat', 'binary', 4), ('Flat', 'int8', 2), None)
    >>> parse_spec("IVF64,PQ16+rescore4x")
    ('IVF64,PQ16', 'factory', 4)
    """
    base, _, suffix = spec.replace(" ", "").partition("+")
    rescore = 0
    if suffix:
        m = re.fullmatch(r"rescore(\d+)x?", suffix)
        if m is None:
            raise ConfigError(f"cannot read {spec!r}: write a rescored index as "
                              "FACTORY+rescore4x (e.g. BHNSW32+rescore4x)", param="factory")
        rescore = int(m.group(1))
    if is_binary_factory(base):
        m = re.fullmatch(r"B(Flat|HNSW\d+|IVF\d+)", base)
        assert m is not None
        inner = m.group(1)
        return (f"{inner},Flat" if inner.startswith("IVF") else inner), "binary", rescore
    if not suffix:
        return None
    if not re.fullmatch(r"SQ8|IVF\d+,SQ8|HNSW\d+_SQ8", base):  # PQ, SQ4...: their own codes
        return base, "factory", rescore
    flat = base.replace("_SQ8", "").replace(",SQ8", ",Flat").replace("SQ8", "Flat")
    return flat, "int8", rescore
