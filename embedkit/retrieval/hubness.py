"""Hubness reduction for query-vs-corpus search: CSLS re-ranking of a cosine index's candidates.

In high dimensions a few corpus vectors (hubs) are among the nearest neighbours of very many
queries and crowd the right answers out of the top ``k``. CSLS (Conneau, Lample, Ranzato, Denoyer
& Jegou 2018, "Word translation without parallel data", ICLR, Section 2.3) ranks candidates by
``2 cos(q, c) - r(c)``, where ``r(c)`` is the mean cosine of ``c`` to its ``k_penalty`` nearest
corpus neighbours (:func:`~embedkit.diagnostics.corpus_hub_penalty`; the corpus stands in for
the queries, unknown when the corpus is indexed). The penalty is computed once per corpus, in the
space the index searches (after its affine map); a search takes the index's top ``candidates``
and re-ranks them (:func:`~embedkit.diagnostics.csls_rerank`), so it works on any cosine index
(Flat, IVF, HNSW).

>>> import numpy as np
>>> from embedkit.retrieval.index import EmbeddingIndex
>>> corpus = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype="float32")
>>> index = EmbeddingIndex.build(corpus, ["x", "y", "hub"])
>>> query = np.array([[1.0, 0.5]], dtype="float32")
>>> [h.text for h in index.search(query, k=1)[0]]
['hub']
>>> csls = CSLSReranker.fit(corpus, k_penalty=2)
>>> [h.text for h in csls.search(index, query, k=1)[0]]
['x']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from embedkit.diagnostics import corpus_hub_penalty, csls_rerank, hubness_from_occurrence
from embedkit.errors import ConfigError, check_int
from embedkit.retrieval.metrics import retrieval_scores
from embedkit.retrieval.tasks import RetrievalTask

if TYPE_CHECKING:  # pragma: no cover
    from embedkit.postprocess.affine import AffineMap
    from embedkit.retrieval.index import EmbeddingIndex, Hit

__all__ = ["CSLSReranker", "evaluate_csls", "occurrence_hubness"]

#: candidates re-ranked per query by default (the index's top 100)
DEFAULT_CANDIDATES = 100


class CSLSReranker:
    """The corpus penalty ``r(c)`` of CSLS, and the re-ranking of cosine search results by
    ``2 cos(q, c) - r(c)``.

    Build it with :meth:`fit` from the corpus vectors the index was built from (raw pooled
    vectors and the index's affine map, or vectors already in the searched space), or with
    :meth:`for_index`. ``candidates`` is how many of the index's hits are re-ranked per query.
    """

    def __init__(self, penalty: Any, *, k_penalty: int = 10,
                 candidates: int = DEFAULT_CANDIDATES) -> None:
        pen = np.asarray(penalty, dtype=np.float64)
        if pen.ndim != 1 or pen.size == 0 or not np.isfinite(pen).all():
            raise ConfigError("penalty must be a non-empty 1-D array of finite values, one per "
                              "corpus row")
        self.penalty = pen
        self.k_penalty = check_int(k_penalty, "k_penalty")
        self.candidates = check_int(candidates, "candidates")

    @classmethod
    def fit(cls, corpus_vectors: Any, *, transform: AffineMap | None = None,
            k_penalty: int = 10, candidates: int = DEFAULT_CANDIDATES) -> CSLSReranker:
        """The penalty of every corpus row, in the space ``transform`` maps to (cosine is
        invariant to the final normalisation, so a map with ``normalize`` gives the same)."""
        x = np.asarray(corpus_vectors)
        if transform is not None:
            x = transform.apply(x)
        k = check_int(k_penalty, "k_penalty")
        if x.ndim != 2 or x.shape[0] <= k:
            raise ConfigError(f"k_penalty must be < the corpus size ({x.shape[0]} vectors); "
                              f"got {k}", param="k_penalty")
        return cls(corpus_hub_penalty(x, k), k_penalty=k, candidates=candidates)

    @classmethod
    def for_index(cls, index: EmbeddingIndex, corpus_vectors: Any, *, k_penalty: int = 10,
                  candidates: int = DEFAULT_CANDIDATES) -> CSLSReranker:
        """:meth:`fit` on the raw vectors ``index`` was built from (in its insertion order),
        through the affine map baked into the index."""
        _check_cosine(index)
        x = np.asarray(corpus_vectors)
        if x.ndim != 2 or x.shape[0] != index.ntotal:
            raise ConfigError(f"corpus_vectors must hold the {index.ntotal} vectors of the "
                              f"index, in its order; got shape {x.shape}")
        return cls.fit(x, transform=index.affine_map(), k_penalty=k_penalty,
                       candidates=candidates)

    def rerank(self, scores: Any, ids: Any) -> tuple[np.ndarray, np.ndarray]:
        """Cosine candidate lists (``(n_queries, n)`` scores and corpus ids, -1 for padding)
        re-ranked by CSLS, best first (:func:`~embedkit.diagnostics.csls_rerank`)."""
        return csls_rerank(scores, ids, self.penalty)

    def rerank_hits(self, hits: Sequence[Sequence[Hit]]) -> list[list[Hit]]:
        """Each query's hits re-ranked by CSLS; a hit's ``score`` becomes its CSLS score."""
        from embedkit.retrieval.index import Hit

        out: list[list[Hit]] = []
        for row in hits:
            if not row:
                out.append([])
                continue
            by_id = {h.id: h for h in row}
            s, i = self.rerank(np.array([h.score for h in row]), np.array([h.id for h in row]))
            out.append([Hit(int(c), by_id[int(c)].text, float(v), by_id[int(c)].user_id)
                        for v, c in zip(s, i, strict=True) if c >= 0])
        return out

    def search(self, index: EmbeddingIndex, query_vectors: Any, k: int = 10, *,
               nprobe: int | None = None, ef_search: int | None = None) -> list[list[Hit]]:
        """The ``k`` best hits per raw query vector by CSLS among the index's top
        ``max(k, candidates)`` by cosine."""
        _check_cosine(index)
        if index.ntotal != self.penalty.size:
            raise ConfigError(f"this CSLS penalty covers {self.penalty.size} corpus rows but the "
                              f"index holds {index.ntotal}; fit it on the index's corpus")
        k = check_int(k, "k")
        hits = index.search(query_vectors, max(k, self.candidates), nprobe=nprobe,
                            ef_search=ef_search)
        return [row[:k] for row in self.rerank_hits(hits)]


def _check_cosine(index: EmbeddingIndex) -> None:
    if index.metric != "cosine":
        raise ConfigError(f"CSLS re-ranks cosine similarities; this index uses metric "
                          f"{index.metric!r}", param="metric")


def occurrence_hubness(ranked: Sequence[Sequence[int]], n_corpus: int, k: int) -> dict[str, Any]:
    """Hubness of search results: ``N_k(c)``, how many queries' top ``k`` hold corpus row ``c``,
    summarised by :func:`~embedkit.diagnostics.hubness_from_occurrence` (skewness, Robin Hood
    index, antihub rate, top-1% share ...).

    >>> r = occurrence_hubness([[0, 1], [0, 2], [0, 1]], n_corpus=4, k=2)
    >>> r["max_occurrence"], r["argmax_occurrence"], r["antihub_rate"]
    (3, 0, 0.25)
    """
    ids = np.asarray([i for row in ranked for i in list(row)[:k] if i >= 0], dtype=np.int64)
    if ids.size == 0:
        raise ConfigError("no search results to measure")
    return hubness_from_occurrence(np.bincount(ids, minlength=int(n_corpus)), k)


def _ranked(task: RetrievalTask, ids: np.ndarray, k: int, exclude_self: bool) -> list[list[int]]:
    """Top ``k`` ids per query, a query's own entry dropped unless it is relevant."""
    out: list[list[int]] = []
    for q, row in enumerate(ids):
        own = task.query_ids[q] if q < len(task.query_ids) else -1
        keep = [int(i) for i in row if i >= 0]
        if exclude_self and own >= 0 and own not in task.relevant[q]:
            keep = [i for i in keep if i != own]
        out.append(keep[:k])
    return out


def _scores(task: RetrievalTask, ranked: list[list[int]], k: int) -> dict[str, Any]:
    ks = tuple(c for c in (1, 5, 10) if c < k) + (k,)
    scores: dict[str, Any] = dict(retrieval_scores(ranked, task.relevant, ks=ks))
    hub = occurrence_hubness(ranked, len(task.corpus), k)
    scores.update({"n_queries": len(task.queries), "n_corpus": len(task.corpus),
                   "result_skewness": hub["skewness"], "result_top_share": hub["top_share"],
                   "result_max_occurrence": hub["max_occurrence"]})
    return scores


def evaluate_csls(task: RetrievalTask, corpus_vectors: Any, query_vectors: Any, *,
                  transform: AffineMap | None = None, k: int = 10, k_penalty: int = 10,
                  candidates: int = DEFAULT_CANDIDATES, factory: str = "Flat",
                  exclude_self: bool = True) -> dict[str, dict[str, Any]]:
    """Retrieval scores of plain cosine search and of CSLS re-ranking on one index.

    The corpus (raw vectors aligned with ``task.corpus``, ``transform`` baked into the index as
    :func:`~embedkit.retrieval.evaluate_retrieval` does) is indexed once and searched once for
    the top ``max(k, candidates) + 1``; ``raw`` ranks by cosine (the same numbers as
    ``evaluate_retrieval``), ``csls`` re-ranks the same candidates by CSLS. Each holds
    ``recall@1/5/k``, ``mrr@k``, ``ndcg@k``, the counts, and the hubness of the results
    (``result_skewness``, ``result_top_share``, ``result_max_occurrence`` of N_k over the
    queries' top ``k``, :func:`occurrence_hubness`); ``csls`` also ``k_penalty`` and
    ``candidates``.
    """
    from embedkit.retrieval.index import EmbeddingIndex

    k = check_int(k, "k")
    corpus_x = np.asarray(corpus_vectors, dtype=np.float32)
    query_x = np.asarray(query_vectors, dtype=np.float32)
    if corpus_x.ndim != 2 or corpus_x.shape[0] != len(task.corpus):
        raise ConfigError(f"corpus vectors: expected {len(task.corpus)} rows, got {corpus_x.shape}")
    if query_x.ndim != 2 or query_x.shape[0] != len(task.queries):
        raise ConfigError(f"query vectors: expected {len(task.queries)} rows, got {query_x.shape}")
    index = EmbeddingIndex.build(corpus_x, task.corpus, factory=factory, transform=transform)
    if index.ntotal != len(task.corpus):
        raise ConfigError("the task's corpus has duplicate sentences; build it with "
                          "pairs_to_retrieval")
    reranker = CSLSReranker.fit(corpus_x, transform=transform, k_penalty=k_penalty,
                                candidates=candidates)
    n = min(max(k, reranker.candidates) + (1 if exclude_self else 0), index.ntotal)
    scores, ids = index.faiss_index.search(np.ascontiguousarray(query_x), n)
    _, csls_ids = reranker.rerank(scores, ids)
    return {
        "raw": _scores(task, _ranked(task, ids, k, exclude_self), k),
        "csls": {**_scores(task, _ranked(task, csls_ids, k, exclude_self), k),
                 "k_penalty": reranker.k_penalty, "candidates": reranker.candidates},
    }
