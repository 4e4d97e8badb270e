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

from collections.abc import Collection, Iterable, Sequence

import numpy as np

from embedkit.errors import ConfigError

__all__ = ["recall_at_k", "mrr_at_k", "ndcg_at_k", "retrieval_scores", "overlap_recall"]


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
