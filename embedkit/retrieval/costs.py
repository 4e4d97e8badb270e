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


def _factory_rows(x: np.ndarray, q: np.ndarray, factory: str, amap: AffineMap | None,
                  c: _Costing, exact: np.ndarray | None
                  ) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Build one factory, time each search setting; the rows and the exact labels."""
    index, build_seconds = build_faiss(x, factory, c.metric, amap, seed=c.seed)
    size = serialized_bytes(index)
    rows: list[dict[str, Any]] = []
    for label, setting in _settings(index, c.nprobes, c.ef_searches):
        params = search_parameters(index, factory, nprobe=setting.get("nprobe"),
                                   ef_search=setting.get("ef_search"))
        ids, batch_seconds, single_seconds = _time_searches(index, params, q, c.kk, c.n_single)
        if exact is None:
            exact = ids
        rows.append({
            "factory": factory,
            "param": label,
            f"recall@{c.k}": overlap_recall(ids, exact, c.kk),
            "qps_batch": _qps(q.shape[0], batch_seconds),
            "qps_single": _qps(c.n_single, single_seconds) if c.n_single else None,
            "build_seconds": build_seconds,
            "disk_bytes": size,
            "memory_bytes": size,
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
    size again, used as a proxy for the in-memory size), ``ntotal``, ``n_queries``.
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
