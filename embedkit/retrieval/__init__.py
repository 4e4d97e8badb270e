"""Retrieval over sentence embeddings: FAISS indexes, index folders, metrics, STS-pairs tasks,
approximation costs.

``import embedkit.retrieval`` does not import FAISS: :class:`EmbeddingIndex`, :class:`Hit`,
the index-folder functions and :func:`approximation_costs` are loaded on first use; the
metrics and task helpers are plain numpy.

>>> from embedkit.retrieval import recall_at_k
>>> recall_at_k([[0, 1]], [{1}], 1)
0.0
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from embedkit.retrieval.metrics import (
    mrr_at_k,
    ndcg_at_k,
    overlap_recall,
    recall_at_k,
    retrieval_scores,
)
from embedkit.retrieval.recipe import Recipe, RecipeConflict, RecipeConflictError
from embedkit.retrieval.tasks import RetrievalTask, evaluate_retrieval, pairs_to_retrieval

if TYPE_CHECKING:  # pragma: no cover
    from embedkit.retrieval.costs import approximation_costs
    from embedkit.retrieval.folder import IndexSearcher, add_to_index, build_index, search
    from embedkit.retrieval.index import EmbeddingIndex, Hit

__all__ = [
    "EmbeddingIndex",
    "Hit",
    "IndexSearcher",
    "Recipe",
    "RecipeConflict",
    "RecipeConflictError",
    "RetrievalTask",
    "add_to_index",
    "approximation_costs",
    "build_index",
    "evaluate_retrieval",
    "mrr_at_k",
    "ndcg_at_k",
    "overlap_recall",
    "pairs_to_retrieval",
    "recall_at_k",
    "retrieval_scores",
    "search",
]

_LAZY = {
    "EmbeddingIndex": "embedkit.retrieval.index",
    "Hit": "embedkit.retrieval.index",
    "IndexSearcher": "embedkit.retrieval.folder",
    "add_to_index": "embedkit.retrieval.folder",
    "build_index": "embedkit.retrieval.folder",
    "search": "embedkit.retrieval.folder",
    "approximation_costs": "embedkit.retrieval.costs",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'embedkit.retrieval' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
