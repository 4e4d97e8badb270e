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
from typing import Any

import numpy as np

from embedkit.errors import ConfigError
from embedkit.retrieval.index import (
    _as_matrix,
    _build_faiss,
    _check_metric,
    _check_transform,
    _find_hnsw,
    _find_ivf,
    _search_params,
)
from embedkit.retrieval.metrics import overlap_recall

__all__ = ["approximation_costs"]

#: how many queries are timed one at a time for ``qps_single``
SINGLE_QUERIES = 200


def _qps(n: int, seconds: float) -> float:
    return float(n / seconds) if seconds > 0 else float("inf")


def approximation_costs(
    vectors: Any,
    query_vectors: Any,
    factories: Sequence[str],
    *,
    nprobes: Sequence[int] = (1, 8, 32),
    ef_searches: Sequence[int] = (16, 64, 256),
    k: int = 10,
    metric: str = "cosine",
    transform: tuple[np.ndarray, np.ndarray] | None = None,
    seed: int = 0,
    single_queries: int = SINGLE_QUERIES,
) -> list[dict[str, Any]]:
    """One row per factory and search setting (each nprobe for IVF, each efSearch for HNSW).

    Every index is built from the same raw ``vectors`` with the same ``transform`` and metric;
    ``recall@{k}`` is the overlap of its top-k with exact search (a "Flat" index with the same
    metric, i.e. exact inner product for cosine/ip), so the Flat row, always first, has recall 1.
    Columns: ``factory``, ``param`` (e.g. "nprobe=8", "" when there is nothing to tune),
    ``recall@{k}``, ``qps_batch`` (all queries in one call), ``qps_single`` (the first
    ``single_queries`` queries one call each), ``build_seconds`` (train + add; the same on every
    row of one factory), ``disk_bytes`` (serialised index) and ``memory_bytes`` (the serialised
    size again, used as a proxy for the in-memory size), ``ntotal``, ``n_queries``.
    nprobe values above nlist are clamped to nlist and deduplicated. FAISS's thread count is
    left as it is.
    """
    metric = _check_metric(metric)
    x = _as_matrix(vectors)
    q = _as_matrix(query_vectors, name="query vectors", dim=x.shape[1])
    if x.shape[0] == 0 or q.shape[0] == 0:
        raise ConfigError("approximation_costs needs at least one vector and one query")
    if int(k) < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    tf = _check_transform(transform, x.shape[1])
    kk = min(int(k), x.shape[0])
    factories = list(factories)
    if "Flat" in factories:
        factories.remove("Flat")
    factories.insert(0, "Flat")
    n_single = max(0, min(int(single_queries), q.shape[0]))
    import faiss

    rows: list[dict[str, Any]] = []
    exact: np.ndarray | None = None
    for factory in factories:
        index, build_seconds = _build_faiss(x, factory, metric, tf, seed=seed)
        size = int(faiss.serialize_index(index).nbytes)
        ivf = _find_ivf(index)
        hnsw = _find_hnsw(index) if ivf is None else None
        settings: list[tuple[str, dict[str, int]]]
        if ivf is not None:
            seen: set[int] = set()
            settings = []
            for p in nprobes:
                p = min(int(p), int(ivf.nlist))
                if p not in seen:
                    seen.add(p)
                    settings.append((f"nprobe={p}", {"nprobe": p}))
        elif hnsw is not None:
            settings = [(f"efSearch={int(e)}", {"ef_search": int(e)}) for e in ef_searches]
        else:
            settings = [("", {})]
        for label, params in settings:
            with _search_params(index, factory, params.get("nprobe"), params.get("ef_search")):
                index.search(q[:1], kk)  # warm-up
                start = time.perf_counter()
                _, ids = index.search(q, kk)
                batch_seconds = time.perf_counter() - start
                start = time.perf_counter()
                for i in range(n_single):
                    index.search(q[i : i + 1], kk)
                single_seconds = time.perf_counter() - start
            if exact is None:
                exact = ids
            rows.append(
                {
                    "factory": factory,
                    "param": label,
                    f"recall@{k}": overlap_recall(ids, exact, kk),
                    "qps_batch": _qps(q.shape[0], batch_seconds),
                    "qps_single": _qps(n_single, single_seconds) if n_single else None,
                    "build_seconds": build_seconds,
                    "disk_bytes": size,
                    "memory_bytes": size,
                    "ntotal": int(index.ntotal),
                    "n_queries": int(q.shape[0]),
                }
            )
    return rows
