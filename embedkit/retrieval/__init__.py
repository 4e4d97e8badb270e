"""Retrieval over sentence embeddings: FAISS indexes, index folders, metrics, STS-pairs tasks,
approximation costs.

``import embedkit.retrieval`` imports neither FAISS nor numpy: every public name is loaded on
first use (:class:`EmbeddingIndex`, :class:`Hit`, the index-folder functions and
:func:`approximation_costs` need FAISS; the metrics and task helpers are plain numpy).

>>> from embedkit.retrieval import recall_at_k
>>> recall_at_k([[0, 1]], [{1}], 1)
0.0
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from embedkit import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from embedkit.retrieval.costs import approximation_costs
    from embedkit.retrieval.folder import IndexSearcher, add_to_index, build_index, search
    from embedkit.retrieval.index import EmbeddingIndex, Hit
    from embedkit.retrieval.metrics import (
        mrr_at_k,
        ndcg_at_k,
        overlap_recall,
        recall_at_k,
        retrieval_scores,
    )
    from embedkit.retrieval.tasks import RetrievalTask, evaluate_retrieval, pairs_to_retrieval
    from embedkit.store.recipe import Recipe, RecipeConflict, RecipeConflictError

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
    "mrr_at_k": "embedkit.retrieval.metrics",
    "ndcg_at_k": "embedkit.retrieval.metrics",
    "overlap_recall": "embedkit.retrieval.metrics",
    "recall_at_k": "embedkit.retrieval.metrics",
    "retrieval_scores": "embedkit.retrieval.metrics",
    "Recipe": "embedkit.store.recipe",
    "RecipeConflict": "embedkit.store.recipe",
    "RecipeConflictError": "embedkit.store.recipe",
    "RetrievalTask": "embedkit.retrieval.tasks",
    "evaluate_retrieval": "embedkit.retrieval.tasks",
    "pairs_to_retrieval": "embedkit.retrieval.tasks",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
