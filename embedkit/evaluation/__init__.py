"""STS evaluation: cosine similarity, Spearman/Pearson, protocols and the evaluator.

>>> from embedkit.evaluation import spearman
>>> round(spearman([1, 2, 3, 4], [1, 3, 2, 4]), 4)
0.8
"""

from embedkit.evaluation.evaluator import (
    PRIMARY_METRIC,
    STSEvaluator,
    UndefinedScoreWarning,
    aggregate,
    lookup,
    score_splits,
    undefined_message,
    undefined_scores,
)
from embedkit.evaluation.metrics import (
    cosine_scores,
    l2_normalize,
    pair_scores,
    pearson,
    quantize_cosines,
    spearman,
)
from embedkit.evaluation.protocols import EvalProtocol, get_protocol

__all__ = ["PRIMARY_METRIC", "EvalProtocol", "STSEvaluator",
           "UndefinedScoreWarning", "aggregate", "cosine_scores", "get_protocol", "l2_normalize",
           "lookup", "pair_scores", "pearson", "quantize_cosines", "score_splits", "spearman",
           "undefined_message", "undefined_scores"]
