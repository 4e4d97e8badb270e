"""Retrieval metrics with binary relevance (numpy only, no FAISS).

``ranked`` is one ranked list of corpus ids per query (best first); ``relevant`` one collection
of relevant corpus ids per query. Each metric is averaged over the queries that have at least one
relevant id (queries with none are left out, as trec_eval does); a repeated id in a ranked list
counts once, at its first rank.

>>> ranked = [[3, 1, 2], [5, 6, 7]]
>>> relevant = [{1}, {9}]
>>> recall_at_k(ranked, relevant, 2), mrr_at_k(ranked, relevant, 10)
(0.5, 0.25)
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

import numpy as np

from embedkit.errors import ConfigError

__all__ = ["DEFAULT_KS", "graded_retrieval_scores", "mrr_at_k",
           "ndcg_at_k", "overlap_recall", "recall_at_k", "retrieval_scores", "trec_ranking"]

#: the cut-offs of graded retrieval metrics (as mteb reports them)
DEFAULT_KS = (1, 5, 10, 100)


def _check(ranked: Sequence[Iterable[int]], relevant: Sequence[Collection[int]], k: int) -> None:
    if int(k) < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    if len(ranked) != len(relevant):
        raise ConfigError(
            f"got ranked lists for {len(ranked)} queries but relevant ids for {len(relevant)}"
        )


def _top_k(row: Iterable[int], k: int) -> list[int]:
    """First ``k`` distinct ids of a ranked row (FAISS's -1 padding dropped)."""
    out: list[int] = []
    seen: set[int] = set()
    for i in row:
        i = int(i)
        if i < 0 or i in seen:
            continue
        seen.add(i)
        out.append(i)
        if len(out) == k:
            break
    return out


def _per_query(ranked, relevant, k, fn) -> float:
    _check(ranked, relevant, k)
    values = []
    for row, rel in zip(ranked, relevant, strict=True):
        rel = {int(r) for r in rel}
        if not rel:
            continue
        values.append(fn(_top_k(row, int(k)), rel, int(k)))
    if not values:
        raise ConfigError("no query has a relevant id; cannot compute retrieval metrics")
    return float(np.mean(values))


def recall_at_k(
    ranked: Sequence[Iterable[int]], relevant: Sequence[Collection[int]], k: int
) -> float:
    """Mean of |relevant ∩ top-k| / |relevant|.

    >>> recall_at_k([[1, 2, 3]], [{2, 3, 4, 5}], 2)
    0.25
    """
    return _per_query(
        ranked, relevant, k, lambda top, rel, _k: len(rel.intersection(top)) / len(rel)
    )


def _rr(top: list[int], rel: set[int], _k: int) -> float:
    for rank, i in enumerate(top, 1):
        if i in rel:
            return 1.0 / rank
    return 0.0


def mrr_at_k(ranked: Sequence[Iterable[int]], relevant: Sequence[Collection[int]], k: int) -> float:
    """Mean reciprocal rank of the first relevant id within the top ``k`` (0 if none).

    >>> mrr_at_k([[1, 2, 3], [4, 5, 6]], [{3}, {4}], 10)
    0.6666666666666666
    """
    return _per_query(ranked, relevant, k, _rr)


def _ndcg(top: list[int], rel: set[int], k: int) -> float:
    dcg = sum(1.0 / np.log2(rank + 1) for rank, i in enumerate(top, 1) if i in rel)
    ideal = sum(1.0 / np.log2(rank + 1) for rank in range(1, min(len(rel), k) + 1))
    return float(dcg / ideal)


def ndcg_at_k(
    ranked: Sequence[Iterable[int]], relevant: Sequence[Collection[int]], k: int
) -> float:
    """Mean nDCG@k, binary gains, discount 1/log2(rank + 1), ideal DCG over min(|relevant|, k).

    >>> round(ndcg_at_k([[1, 2]], [{2}], 10), 4)  # 1/log2(3)
    0.6309
    """
    return _per_query(ranked, relevant, k, _ndcg)


def retrieval_scores(
    ranked: Sequence[Iterable[int]],
    relevant: Sequence[Collection[int]],
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """``recall@k`` for each k in ``ks`` plus ``mrr@K`` and ``ndcg@K`` for K = max(ks).

    >>> retrieval_scores([[1, 2]], [{1}], ks=(1, 10))
    {'recall@1': 1.0, 'recall@10': 1.0, 'mrr@10': 1.0, 'ndcg@10': 1.0}
    """
    ks = sorted({int(k) for k in ks})
    if not ks:
        raise ConfigError("ks must name at least one cut-off")
    out = {f"recall@{k}": recall_at_k(ranked, relevant, k) for k in ks}
    top = ks[-1]
    out[f"mrr@{top}"] = mrr_at_k(ranked, relevant, top)
    out[f"ndcg@{top}"] = ndcg_at_k(ranked, relevant, top)
    return out


def overlap_recall(
    approx_ids: Sequence[Iterable[int]] | np.ndarray,
    exact_ids: Sequence[Iterable[int]] | np.ndarray,
    k: int,
) -> float:
    """Recall@k of an approximate search against exact search: |approx ∩ exact top-k| / k.

    When the exact list is shorter than ``k`` (tiny corpus) its length is the denominator;
    -1 padding is ignored.

    >>> overlap_recall([[1, 2, 9]], [[1, 2, 3]], 3)
    0.6666666666666666
    """
    if int(k) < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    if len(approx_ids) != len(exact_ids):
        raise ConfigError(
            f"got {len(approx_ids)} approximate result lists but {len(exact_ids)} exact ones"
        )
    values = []
    for a, e in zip(approx_ids, exact_ids, strict=True):
        exact = set(_top_k(e, int(k)))
        if not exact:
            continue
        values.append(len(exact.intersection(_top_k(a, int(k)))) / len(exact))
    return float(np.mean(values)) if values else 1.0


# --------------------------------------------------------------------------------------------
# graded relevance with string ids, as pytrec_eval (trec_eval) and mteb compute it


def trec_ranking(doc_scores: Mapping[str, float]) -> list[str]:
    """Document ids best first, as trec_eval ranks a run: by score, ties by id, both
    descending (mteb's MRR breaks ties the same way).

    >>> trec_ranking({"a": 0.5, "b": 0.9, "c": 0.5})
    ['b', 'c', 'a']
    """
    return [d for d, _ in sorted(doc_scores.items(), key=lambda kv: (kv[1], kv[0]),
                                 reverse=True)]


def _graded_query_scores(ranked: Sequence[str], judged: Mapping[str, int],
                        ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """One query's ``ndcg@k``, ``recall@k``, ``mrr@k`` and ``map@k`` for each k.

    ``judged`` maps corpus ids to relevance scores (> 0 relevant). nDCG: gain = the score,
    discount ``1 / log2(rank + 1)``, ideal DCG from the query's judged scores (trec_eval's
    ``ndcg_cut``); recall: relevant in the top k / all relevant; MAP@k: the sum of precision at
    each relevant rank within k over all relevant (``map_cut``); MRR@k: 1 / the first relevant
    rank within k (mteb's). A query with no relevant id scores 0.

    >>> s = _graded_query_scores(["x", "a", "b"], {"a": 2, "b": 1, "c": 1}, ks=(2,))
    >>> round(s["ndcg@2"], 4), round(s["recall@2"], 4), s["mrr@2"], s["map@2"]
    (0.4796, 0.3333, 0.5, 0.16666666666666666)
    """
    rel = {d: g for d, g in judged.items() if g > 0}
    ideal_gains = sorted(rel.values(), reverse=True)
    out: dict[str, float] = {}
    for k in sorted({int(c) for c in ks}):
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        top = list(ranked[:k])
        hits = [i for i, d in enumerate(top, 1) if d in rel]
        dcg = sum(rel[top[i - 1]] / np.log2(i + 1) for i in hits)
        idcg = sum(g / np.log2(i + 1) for i, g in enumerate(ideal_gains[:k], 1))
        n = len(rel)
        out[f"ndcg@{k}"] = float(dcg / idcg) if idcg > 0 else 0.0
        out[f"recall@{k}"] = len(hits) / n if n else 0.0
        out[f"mrr@{k}"] = 1.0 / hits[0] if hits else 0.0
        out[f"map@{k}"] = (sum(j / i for j, i in enumerate(hits, 1)) / n) if n else 0.0
    return out


def graded_retrieval_scores(run: Mapping[str, Mapping[str, float]],
                            qrels: Mapping[str, Mapping[str, int]],
                            ks: Sequence[int] = DEFAULT_KS
                            ) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """``(means, per_query)`` over the queries of ``qrels``: ``run[q]`` maps retrieved corpus
    ids to scores (ranked by :func:`trec_ranking`); a query missing from the run scores 0.

    >>> means, per = graded_retrieval_scores({"q": {"a": 0.9, "b": 0.1}}, {"q": {"b": 1}}, (1, 2))
    >>> means["recall@1"], means["recall@2"], per["q"]["mrr@2"]
    (0.0, 1.0, 0.5)
    """
    if not qrels:
        raise ConfigError("no query is judged; cannot compute retrieval metrics")
    per = {q: _graded_query_scores(trec_ranking(run.get(q, {})), judged, ks)
           for q, judged in qrels.items()}
    keys = next(iter(per.values())).keys()
    means = {key: float(np.mean([p[key] for p in per.values()])) for key in keys}
    return means, per
