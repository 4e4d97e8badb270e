"""The cost of approximate search: recall against exact search, speed, build time and size.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.standard_normal((300, 8)).astype("float32")
>>> rows = approximation_costs(x, x[:20], ["Flat", "HNSW8"], ef_searches=(16,))
>>> [(r["factory"], r["param"], r["recall@10"]) for r in rows][0]
('Flat', '', 1.0)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from embedkit.errors import ConfigError
from embedkit.postprocess.affine import AffineMap
from embedkit.retrieval.faiss_ops import (
    as_matrix,
    build_faiss,
    check_metric,
    faiss,
    ivf_nlist,
    search_parameters,
    serialized_bytes,
    tunable_parameters,
)
from embedkit.retrieval.index import as_affine_map
from embedkit.retrieval.metrics import overlap_recall

__all__ = ["SINGLE_QUERIES", "approximation_costs"]

#: how many queries are timed one at a time for ``qps_single``
SINGLE_QUERIES = 200


def _qps(n: int, seconds: float) -> float:
    return float(n / seconds) if seconds > 0 else float("inf")


def _factory_order(factories: Sequence[str]) -> list[str]:
    """Flat first (the exact reference), then the others in the order given."""
    rest = [f for f in factories if f != "Flat"]
    return ["Flat", *rest]


def _settings(index: faiss.Index, nprobes: Sequence[int],
              ef_searches: Sequence[int]) -> list[tuple[str, dict[str, int]]]:
    """``(label, search settings)`` to time: each nprobe (clamped to nlist, deduplicated) for
    IVF, each efSearch for HNSW, one untuned row otherwise."""
    names = tunable_parameters(index)
    if "nprobe" in names:
        nlist = ivf_nlist(index) or 1
        probes = dict.fromkeys(min(int(p), nlist) for p in nprobes)
        return [(f"nprobe={p}", {"nprobe": p}) for p in probes]
    if "efSearch" in names:
        return [(f"efSearch={int(e)}", {"ef_search": int(e)}) for e in ef_searches]
    return [("", {})]


def _time_searches(index: faiss.Index, params: Any, q: np.ndarray, k: int,
                   n_single: int) -> tuple[np.ndarray, float, float]:
    """The labels of a batch search, its seconds, and the seconds of ``n_single`` one-query
    searches (after one warm-up search)."""
    index.search(q[:1], k, params=params)  # warm-up
    start = time.perf_counter()
    _, ids = index.search(q, k, params=params)
    batch_seconds = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(n_single):
        index.search(q[i : i + 1], k, params=params)
    return ids, batch_seconds, time.perf_counter() - start


@dataclass(frozen=True)
class _Costing:
    """What every factory of one :func:`approximation_costs` call is built and timed with
    (``kk``: ``k`` capped at the corpus size; ``n_single``: the one-query searches timed)."""

    metric: str
    k: int
    kk: int
    seed: int
    n_single: int
    nprobes: Sequence[int]
    ef_searches: Sequence[int]


def _quantized_settings(index: Any, nprobes: Sequence[int],
                        ef_searches: Sequence[int]) -> list[tuple[str, dict[str, int]]]:
    """:func:`_settings` of a quantised index (its IVF lists, or HNSW)."""
    from embedkit.retrieval.quantized import _nlist

    nlist = _nlist(index)
    if nlist:
        probes = dict.fromkeys(min(int(p), nlist) for p in nprobes)
        return [(f"nprobe={p}", {"nprobe": p}) for p in probes]
    if "HNSW" in index.factory:
        return [(f"efSearch={int(e)}", {"ef_search": int(e)}) for e in ef_searches]
    return [("", {})]


class _Rescored:
    """A quantised index searched as :func:`_time_searches` searches (``params``: a setting)."""

    def __init__(self, index: Any) -> None:
        self.index = index

    def search(self, q: np.ndarray, k: int, params: Any = None) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search_with(q, k, **(params or {}))


def _build(x: np.ndarray, factory: str, amap: AffineMap | None, metric: str, seed: int
           ) -> tuple[Any, float, int, int]:
    """The index of ``factory`` (a FAISS factory, or a quantised spec: ``BHNSW32+rescore4x``),
    its build seconds, RAM bytes and disk bytes (a quantised index's rescoring file too)."""
    from embedkit.retrieval.quantized import parse_spec
    from embedkit.retrieval.shards import build_quantized

    spec = parse_spec(factory)  # hook: quantised indexes (retrieval/quantized.py)
    if spec is None:
        index, seconds = build_faiss(x, factory, metric, amap, seed=seed)
        size = serialized_bytes(index)
        return index, seconds, size, size
    start = time.perf_counter()
    qi = build_quantized(x, spec[0], metric, amap, vectors=spec[1], rescore=spec[2], seed=seed)
    seconds = time.perf_counter() - start
    memory = qi.memory_bytes()
    store = qi.store.rows * qi.store.dim * qi.store.mapped().dtype.itemsize if qi.store else 0
    return qi, seconds, memory, memory + store


def _factory_rows(x: np.ndarray, q: np.ndarray, factory: str, amap: AffineMap | None,
                  c: _Costing, exact: np.ndarray | None
                  ) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Build one factory, time each search setting; the rows and the exact labels."""
    index, build_seconds, size, disk = _build(x, factory, amap, c.metric, c.seed)
    quantized = hasattr(index, "search_with")
    settings = (_quantized_settings(index, c.nprobes, c.ef_searches) if quantized else
                _settings(index, c.nprobes, c.ef_searches))
    rows: list[dict[str, Any]] = []
    for label, setting in settings:
        if quantized:
            searcher: Any = _Rescored(index)
            params: Any = setting
        else:
            searcher = index
            params = search_parameters(index, factory, nprobe=setting.get("nprobe"),
                                       ef_search=setting.get("ef_search"))
        ids, batch_seconds, single_seconds = _time_searches(searcher, params, q, c.kk, c.n_single)
        if exact is None:
            exact = ids
        rows.append({
            "factory": factory,
            "param": label,
            f"recall@{c.k}": overlap_recall(ids, exact, c.kk),
            "qps_batch": _qps(q.shape[0], batch_seconds),
            "qps_single": _qps(c.n_single, single_seconds) if c.n_single else None,
            "build_seconds": build_seconds,
            "disk_bytes": disk,
            "memory_bytes": size,
            "bytes_per_vector": round(size / max(1, int(index.ntotal)), 2),
            "ntotal": int(index.ntotal),
            "n_queries": int(q.shape[0]),
        })
    assert exact is not None
    return rows, exact


def approximation_costs(
    vectors: Any,
    query_vectors: Any,
    factories: Sequence[str],
    *,
    nprobes: Sequence[int] = (1, 8, 32),
    ef_searches: Sequence[int] = (16, 64, 256),
    k: int = 10,
    metric: str = "cosine",
    transform: AffineMap | tuple[Any, Any] | None = None,
    seed: int = 0,
    single_queries: int = SINGLE_QUERIES,
) -> list[dict[str, Any]]:
    """One row per factory and search setting (each nprobe for IVF, each efSearch for HNSW).

    Every index is built from the same raw ``vectors`` with the same ``transform`` (an
    :class:`~embedkit.postprocess.AffineMap` or ``(kernel, bias)``) and metric; ``recall@{k}``
    is the overlap of its top-k with exact search (a "Flat" index with the same metric, i.e.
    exact inner product for cosine/ip), so the Flat row, always first, has recall 1.
    Columns: ``factory``, ``param`` (e.g. "nprobe=8", "" when there is nothing to tune),
    ``recall@{k}``, ``qps_batch`` (all queries in one call), ``qps_single`` (the first
    ``single_queries`` queries one call each), ``build_seconds`` (train + add; the same on every
    row of one factory), ``disk_bytes`` (serialised index) and ``memory_bytes`` (the serialised
    size again, used as a proxy for the in-memory size), ``bytes_per_vector`` (memory bytes
    over ``ntotal``), ``ntotal``, ``n_queries``. A factory may be a quantised spec
    (:func:`~embedkit.retrieval.quantized.parse_spec`: ``BFlat+rescore4x``,
    ``BHNSW32+rescore4x``, ``SQ8+rescore4x``): its memory is the quantised index, its disk
    adds the memory-mapped rescoring vectors.
    nprobe values above nlist are clamped to nlist and deduplicated. FAISS's thread count is
    left as it is.
    """
    metric = check_metric(metric)
    x = as_matrix(vectors)
    q = as_matrix(query_vectors, name="query vectors", dim=x.shape[1])
    if x.shape[0] == 0 or q.shape[0] == 0:
        raise ConfigError("approximation_costs needs at least one vector and one query")
    if int(k) < 1:
        raise ConfigError(f"k must be >= 1, got {k}", param="k")
    amap = as_affine_map(transform, x.shape[1], metric)
    c = _Costing(metric=metric, k=int(k), kk=min(int(k), x.shape[0]), seed=seed,
                 n_single=max(0, min(int(single_queries), q.shape[0])), nprobes=nprobes,
                 ef_searches=ef_searches)
    rows: list[dict[str, Any]] = []
    exact: np.ndarray | None = None
    for factory in _factory_order(factories):
        new, exact = _factory_rows(x, q, factory, amap, c, exact)
        rows += new
    return rows
