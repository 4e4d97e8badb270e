"""Retrieval over sentence embeddings: FAISS indexes, metrics, STS-pairs tasks, approximation costs.

``import embedkit.retrieval`` does not import FAISS: :class:`EmbeddingIndex`, :class:`Hit` and
:func:`approximation_costs` are loaded on first use; the metrics and task helpers are plain numpy.

>>> from embedkit.retrieval import recall_at_k
>>> recall_at_k([[0, 1]], [{1}], 1)
0.0
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from embedkit.retrieval.metrics import (
    mrr_at_k,
    ndcg_at_k,
    overlap_recall,
    recall_at_k,
    retrieval_scores,
)
from embedkit.retrieval.tasks import RetrievalTask, evaluate_retrieval, pairs_to_retrieval

if TYPE_CHECKING:  # pragma: no cover
    from embedkit.retrieval.costs import approximation_costs
    from embedkit.retrieval.index import EmbeddingIndex, Hit

__all__ = [
    "EmbeddingIndex",
    "Hit",
    "RetrievalTask",
    "approximation_costs",
    "evaluate_retrieval",
    "mrr_at_k",
    "ndcg_at_k",
    "overlap_recall",
    "pairs_to_retrieval",
    "recall_at_k",
    "retrieval_scores",
]

_LAZY = {
    "EmbeddingIndex": "embedkit.retrieval.index",
    "Hit": "embedkit.retrieval.index",
    "approximation_costs": "embedkit.retrieval.costs",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'embedkit.retrieval' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
