import math

import pytest

from embedkit.errors import ConfigError
from embedkit.retrieval.metrics import (
    mrr_at_k,
    ndcg_at_k,
    overlap_recall,
    recall_at_k,
    retrieval_scores,
)

# query 0: relevant {2, 7}; ranking 5, 2, 9, 7  -> hits at ranks 2 and 4
# query 1: relevant {1};    ranking 1, 3, 4, 8  -> hit at rank 1
# query 2: relevant {6};    ranking 0, 3, 4, 5  -> no hit
RANKED = [[5, 2, 9, 7], [1, 3, 4, 8], [0, 3, 4, 5]]
RELEVANT = [{2, 7}, {1}, {6}]


def test_recall_by_hand():
    assert recall_at_k(RANKED, RELEVANT, 1) == pytest.approx((0 + 1 + 0) / 3)
    assert recall_at_k(RANKED, RELEVANT, 2) == pytest.approx((0.5 + 1 + 0) / 3)
    assert recall_at_k(RANKED, RELEVANT, 4) == pytest.approx((1 + 1 + 0) / 3)
    assert recall_at_k(RANKED, RELEVANT, 10) == recall_at_k(RANKED, RELEVANT, 4)


def test_mrr_by_hand():
    assert mrr_at_k(RANKED, RELEVANT, 10) == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert mrr_at_k(RANKED, RELEVANT, 1) == pytest.approx(1 / 3)


def test_ndcg_by_hand():
    q0 = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(RANKED, RELEVANT, 10) == pytest.approx((q0 + 1 + 0) / 3)
    # k=2: q0 has one hit at rank 2, ideal over min(2, 2) = 2 positions
    q0_k2 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(RANKED, RELEVANT, 2) == pytest.approx((q0_k2 + 1) / 3)
    # ideal DCG over min(|relevant|, k): with k=1 a hit at rank 1 is perfect
    assert ndcg_at_k([[1, 2, 3]], [{1, 2, 3}], 1) == 1.0


def test_retrieval_scores_keys():
    scores = retrieval_scores(RANKED, RELEVANT)
    assert list(scores) == ["recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10"]
    assert scores["mrr@10"] == pytest.approx(0.5)


def test_duplicates_padding_and_empty_relevant():
    # a repeated id counts once; -1 is FAISS padding; queries without relevant ids are skipped
    assert recall_at_k([[3, 3, -1, 4], [1]], [{3, 4}, set()], 3) == 1.0
    with pytest.raises(ConfigError, match="no query has a relevant"):
        recall_at_k([[1]], [set()], 1)
    with pytest.raises(ConfigError, match="queries"):
        recall_at_k([[1]], [{1}, {2}], 1)


def test_overlap_recall():
    assert overlap_recall([[1, 2, 3], [4, 5, 6]], [[3, 2, 1], [4, 9, 8]], 3) == pytest.approx(
        (1 + 1 / 3) / 2
    )
    assert overlap_recall([[1, -1]], [[1]], 10) == 1.0  # exact list shorter than k
