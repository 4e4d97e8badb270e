"""Hubness reduction for query-vs-corpus cosine search: CSLS with a corpus-side penalty.

Conneau, Lample, Ranzato, Denoyer & Jegou 2018, "Word translation without parallel data" (ICLR),
Section 2.3: ``CSLS(q, c) = 2 cos(q, c) - r_C(q) - r_Q(c)``, where ``r_Q(c)`` is the mean cosine
of ``c`` to its ``k`` nearest queries and ``r_C(q)`` that of ``q`` to its ``k`` nearest corpus
points. In
retrieval the queries are unknown when the corpus is indexed, so ``r_Q(c)`` is replaced by
``r(c)``, the mean cosine of ``c`` to its ``k`` nearest *corpus* neighbours (itself excluded);
``r_C(q)`` is the same for every candidate of one query and does not change its ranking, so
candidates are ranked by ``2 cos(q, c) - r(c)``: hubs, close to many points, are pushed down.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from embedkit.diagnostics._common import BLOCK_ROWS, as_matrix
from embedkit.diagnostics.hubness import cosine_knn
from embedkit.errors import ConfigError, check_int


def corpus_hub_penalty(corpus: ArrayLike, k: int = 10, block_rows: int = BLOCK_ROWS) -> np.ndarray:
    """``r(c) = (1/k) sum_{c' in kNN(c)} cos(c, c')`` for every corpus row, itself excluded.

    The corpus-side CSLS term (Conneau et al. 2018, Section 2.3, with the corpus standing in for
    the unknown queries), from an exact blocked cosine kNN search (:func:`cosine_knn`). Returns
    float64 of shape ``(n_corpus,)``.

    >>> corpus = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> corpus_hub_penalty(corpus, k=2).round(3).tolist()
    [0.354, 0.354, 0.707]
    """
    sims, _ = cosine_knn(None, corpus, k, block_rows)
    return sims.astype(np.float64).mean(axis=1)


def csls_rerank(
    scores: ArrayLike, ids: ArrayLike, penalty: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """Rerank candidate lists by ``2 cos(q, c) - r(c)`` (CSLS, Conneau et al. 2018, Section 2.3).

    ``scores`` are the cosines of the candidates ``ids`` (both ``(n_queries, n_candidates)``, or
    1-D for one query, e.g. a FAISS top-100), ``penalty`` is ``r(c)`` for every corpus row
    (:func:`corpus_hub_penalty`). Returns ``(csls_scores, ids)`` sorted best first (stable, so
    ties keep the input order); ids of -1 (FAISS padding) get score ``-inf`` and go last.

    >>> penalty = np.array([0.9, 0.1, 0.2])
    >>> s, i = csls_rerank(np.array([[0.8, 0.7, 0.1]]), np.array([[0, 1, 2]]), penalty)
    >>> i.tolist(), s.round(2).tolist()
    ([[1, 0, 2]], [[1.3, 0.7, 0.0]])
    """
    sc = np.asarray(scores, dtype=np.float64)
    ix = np.asarray(ids, dtype=np.int64)
    pen = np.asarray(penalty, dtype=np.float64)
    if sc.shape != ix.shape or sc.ndim not in (1, 2):
        raise ConfigError(f"scores and ids must have one shape, 1-D or 2-D; got {sc.shape} "
                          f"and {ix.shape}")
    if pen.ndim != 1:
        raise ConfigError(f"penalty must be 1-D (one value per corpus row); got {pen.shape}")
    if ix.size and (ix.max() >= pen.size or ix.min() < -1):
        raise ConfigError(f"ids must be corpus rows in [0, {pen.size}) or -1 for padding; "
                          "pass the penalty computed on the searched corpus")
    one = sc.ndim == 1
    sc2, ix2 = np.atleast_2d(sc), np.atleast_2d(ix)
    valid = ix2 >= 0
    csls = np.where(valid, 2.0 * sc2 - pen[np.where(valid, ix2, 0)], -np.inf)
    order = np.argsort(-csls, axis=1, kind="stable")
    out_s = np.take_along_axis(csls, order, axis=1)
    out_i = np.take_along_axis(ix2, order, axis=1)
    return (out_s[0], out_i[0]) if one else (out_s, out_i)


def csls_search(
    queries: ArrayLike,
    corpus: ArrayLike,
    k: int = 10,
    candidates: int = 100,
    penalty: ArrayLike | None = None,
    k_penalty: int = 10,
    block_rows: int = BLOCK_ROWS,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` corpus rows per query by CSLS: exact cosine top-``candidates``, then
    :func:`csls_rerank` with ``penalty`` (default :func:`corpus_hub_penalty` at ``k_penalty``).

    ``candidates`` is raised to ``k`` and capped at the corpus size; with ``candidates`` equal to
    the corpus size the result is exact CSLS over the whole corpus. Returns ``(csls_scores, ids)``
    of shape ``(n_queries, k)``.

    >>> corpus = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> query = np.array([[1.0, 0.5]])
    >>> cosine_knn(query, corpus, k=1)[1].tolist()  # plain cosine: the hub [1, 1]
    [[2]]
    >>> csls_search(query, corpus, k=1, k_penalty=2)[1].tolist()
    [[0]]
    """
    base = as_matrix(corpus, "corpus", min_rows=2)
    k = check_int(k, "k")
    n_cand = min(max(check_int(candidates, "candidates"), k), base.shape[0])
    if k > base.shape[0]:
        raise ConfigError(f"k must be <= {base.shape[0]} (the corpus size); got {k}")
    pen = (corpus_hub_penalty(base, k_penalty, block_rows) if penalty is None
           else np.asarray(penalty, dtype=np.float64))
    if pen.shape != (base.shape[0],):
        raise ConfigError(f"penalty must have shape ({base.shape[0]},), one value per corpus "
                          f"row; got {pen.shape}")
    sims, ids = cosine_knn(queries, base, n_cand, block_rows)
    scores, ranked = csls_rerank(sims, ids, pen)
    return scores[:, :k], ranked[:, :k]
