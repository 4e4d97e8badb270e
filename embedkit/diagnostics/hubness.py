"""Hubness: some vectors are the nearest neighbours of very many others, some of none.

The k-occurrence ``N_k(c)`` of a corpus vector ``c`` counts the queries that have ``c`` among
their ``k`` nearest neighbours by cosine similarity. Without a separate query set the queries are
the corpus itself and every vector's own row is excluded from its neighbours. The neighbour
lists come from an exact FAISS search (``IndexFlatIP`` on L2-normalised float32 vectors), one
block of queries at a time, so memory stays at ``O(n k + block_rows n)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from embedkit.diagnostics._common import BLOCK_ROWS, as_matrix, row_blocks
from embedkit.errors import ConfigError, check_int


def _unit_rows(block: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm as contiguous float32; zero rows stay zero."""
    norms = np.linalg.norm(block, axis=1, keepdims=True)
    unit = np.divide(block, norms, out=np.zeros_like(block), where=norms > 0)
    return np.ascontiguousarray(unit, dtype=np.float32)


def _drop_self(sims: np.ndarray, ids: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
    """Remove each query's own row from its ``k + 1`` neighbours (or the last one when exact
    duplicates pushed it out), leaving ``k`` per row."""
    own = np.arange(start, start + ids.shape[0])[:, None]
    drop = ids == own
    drop[~drop.any(axis=1), -1] = True
    drop &= np.cumsum(drop, axis=1) == 1
    keep = ~drop
    k = ids.shape[1] - 1
    return sims[keep].reshape(-1, k), ids[keep].reshape(-1, k)


def cosine_knn(
    queries: ArrayLike | None, corpus: ArrayLike, k: int, block_rows: int = BLOCK_ROWS
) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``k`` nearest corpus rows of every query by cosine similarity.

    ``cos(q, c) = <q, c> / (||q|| ||c||)`` computed by FAISS ``IndexFlatIP`` on unit float32
    vectors (a zero vector has cosine 0 with everything). With ``queries=None`` the corpus is
    searched against itself and each row's own index is excluded. Returns ``(sims, ids)``, both of
    shape ``(n_queries, k)`` (float64 cosines with float32 precision, int64 rows), best first.

    >>> corpus = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.9]])
    >>> sims, ids = cosine_knn(np.array([[2.0, 0.1]]), corpus, k=2)
    >>> ids.tolist(), sims.round(3).tolist()
    ([[0, 2]], [[0.999, 0.776]])
    >>> cosine_knn(None, corpus, k=1)[1].tolist()
    [[2], [2], [0]]
    """
    import faiss

    base = as_matrix(corpus, "corpus", min_rows=1)
    self_search = queries is None
    qs = base if queries is None else as_matrix(queries, "queries")
    if qs.shape[1] != base.shape[1]:
        raise ConfigError(f"queries have dim {qs.shape[1]} but corpus has dim {base.shape[1]}; "
                          "both must come from the same embedding space")
    limit = base.shape[0] - 1 if self_search else base.shape[0]
    k = check_int(k, "k")
    if k > limit:
        raise ConfigError(f"k must be <= {limit} (the number of candidate neighbours); got {k}")
    index = faiss.IndexFlatIP(base.shape[1])
    for _, block in row_blocks(base, block_rows, "corpus"):
        index.add(_unit_rows(block))
    sims = np.empty((qs.shape[0], k), dtype=np.float64)
    ids = np.empty((qs.shape[0], k), dtype=np.int64)
    extra = 1 if self_search else 0
    for start, block in row_blocks(qs, block_rows, "queries"):
        d, i = index.search(_unit_rows(block), k + extra)
        if self_search:
            d, i = _drop_self(d, i, start)
        sims[start:start + len(block)], ids[start:start + len(block)] = d, i
    return sims, ids


def k_occurrence(
    x: ArrayLike, k: int = 10, queries: ArrayLike | None = None, block_rows: int = BLOCK_ROWS
) -> np.ndarray:
    """``N_k(c)`` for every row ``c`` of ``x``: how many queries have ``c`` among their ``k``
    nearest neighbours by cosine (Radovanovic, Nanopoulos & Ivanovic 2010, "Hubs in space:
    popular nearest neighbors in high-dimensional data", JMLR 11).

    ``N_k(c) = |{q : c in kNN(q)}|``; with ``queries=None`` the queries are the rows of ``x``
    and a row is never its own neighbour, so ``sum_c N_k(c) = n k``.

    >>> x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.9]])
    >>> k_occurrence(x, k=1).tolist()
    [1, 0, 2]
    """
    corpus = as_matrix(x)
    _, ids = cosine_knn(queries, corpus, k, block_rows)
    return np.bincount(ids.ravel(), minlength=corpus.shape[0]).astype(np.int64)


def hubness_from_occurrence(
    occurrence: ArrayLike, k: int, top_fraction: float = 0.01
) -> dict[str, Any]:
    """Hubness indices of a k-occurrence vector ``N_k`` (``n`` corpus points, ``sum N_k`` slots).

    - ``skewness``: ``E[(N_k - mu)^3] / sigma^3``, the standardized third moment
      (Radovanovic et al. 2010, "Hubs in space", JMLR); 0 when ``sigma = 0``.
    - ``robinhood_index``: ``0.5 sum_c |N_k(c) - mean N_k| / sum_c N_k(c)``, the share of
      occurrences to move so every point occurs equally often (Feldbauer, Leodolter, Plant &
      Flexer 2018, "Fast approximate hubness reduction for large high-dimensional data", IEEE
      ICBK; as in scikit-hubness). For a set searched against itself, ``sum |N_k - k| / (2 n k)``.
    - ``antihub_rate``: share of points with ``N_k = 0``.
    - ``hub_occurrence``: share of slots taken by hubs, points with ``N_k >= 2k`` (as in
      scikit-hubness).
    - ``top_share``: share of slots taken by the ``ceil(top_fraction n)`` most frequent points.

    >>> r = hubness_from_occurrence([0, 0, 0, 3], k=1, top_fraction=0.25)
    >>> r["robinhood_index"], r["antihub_rate"], r["top_share"], r["hub_occurrence"]
    (0.75, 0.75, 1.0, 1.0)
    """
    nk = np.asarray(occurrence, dtype=np.float64)
    k = check_int(k, "k")
    if nk.ndim != 1 or nk.size == 0 or (nk < 0).any() or nk.sum() <= 0:
        raise ConfigError("occurrence must be a non-empty 1-D array of counts >= 0, not all 0")
    if not 0.0 < float(top_fraction) <= 1.0:
        raise ConfigError(f"top_fraction must be in (0, 1]; got {top_fraction}")
    total = nk.sum()
    sigma = nk.std()
    skew = float(stats.skew(nk)) if sigma > 1e-12 * max(1.0, nk.mean()) else 0.0
    n_top = max(1, int(np.ceil(float(top_fraction) * nk.size)))
    top = np.sort(nk)[::-1][:n_top]
    return {
        "k": k,
        "n_corpus": int(nk.size),
        "skewness": skew,
        "robinhood_index": float(0.5 * np.abs(nk - nk.mean()).sum() / total),
        "antihub_rate": float(np.mean(nk == 0)),
        "hub_occurrence": float(nk[nk >= 2 * k].sum() / total),
        "top_fraction": float(top_fraction),
        "top_share": float(top.sum() / total),
        "max_occurrence": int(nk.max()),
        "argmax_occurrence": int(np.argmax(nk)),
        "mean_occurrence": float(nk.mean()),
    }


def hubness(
    x: ArrayLike,
    k: int = 10,
    queries: ArrayLike | None = None,
    top_fraction: float = 0.01,
    block_rows: int = BLOCK_ROWS,
) -> dict[str, Any]:
    """Hubness of ``x`` at ``k`` under cosine similarity, as a JSON-ready dict.

    Computes :func:`k_occurrence` (of ``x``'s rows over ``queries``, or over ``x`` itself
    excluding self-matches) and summarises it with :func:`hubness_from_occurrence` (skewness,
    Robin Hood index, antihub rate, hub occurrence, top-1% share), plus ``n_queries`` and
    ``self_search``. Deterministic: exact search, no sampling.

    >>> x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.9]])
    >>> r = hubness(x, k=1)
    >>> r["argmax_occurrence"], r["max_occurrence"], r["antihub_rate"]
    (2, 2, 0.3333333333333333)
    """
    corpus = as_matrix(x)
    n_queries = corpus.shape[0] if queries is None else as_matrix(queries, "queries").shape[0]
    result = hubness_from_occurrence(k_occurrence(corpus, k, queries, block_rows), k,
                                     top_fraction)
    result.update({"n_queries": int(n_queries), "self_search": queries is None})
    return result
