import numpy as np
import pytest

from embedkit.errors import ConfigError
from embedkit.retrieval.tasks import RetrievalTask, evaluate_retrieval, pairs_to_retrieval

S1 = ["cat", "cat", "dog", "car", "sun", "same"]
S2 = ["kitten", "feline", "puppy", "auto", "moon", "same"]
LABELS = [5.0, 4.2, 3.0, 4.0, 0.0, 5.0]


def test_merging_and_threshold():
    t = pairs_to_retrieval(S1, S2, LABELS, threshold=4)
    assert t.corpus == [
        "cat",
        "kitten",
        "feline",
        "dog",
        "puppy",
        "car",
        "auto",
        "sun",
        "moon",
        "same",
    ]
    assert t.queries == ["cat", "car", "same"]
    assert t.relevant == [{1, 2}, {6}, {9}]  # identical pair: the query's own text is relevant
    assert t.query_ids == [0, 5, 9]
    low = pairs_to_retrieval(S1, S2, LABELS, threshold=3)
    assert low.queries == ["cat", "dog", "car", "same"] and low.relevant[1] == {4}


def test_both_directions():
    t = pairs_to_retrieval(["a", "b", "a"], ["b", "c", "c"], [1, 1, 0], both_directions=True)
    assert t.corpus == ["a", "b", "c"]
    assert t.queries == ["a", "b", "c"]
    assert t.relevant == [{1}, {0, 2}, {1}]


def test_errors():
    with pytest.raises(ConfigError, match="threshold"):
        pairs_to_retrieval(["a"], ["b"], [0], threshold=1)
    with pytest.raises(ConfigError, match="length"):
        pairs_to_retrieval(["a"], ["b", "c"], [1])


def test_evaluate_retrieval_excludes_self():
    # 2-d toy: partners point the same way, the query itself is excluded from its ranking
    t = pairs_to_retrieval(["a", "c", "e"], ["b", "d", "e"], [1, 1, 1])
    vec = {"a": [1, 0.05], "b": [1, 0], "c": [0, 1], "d": [0.05, 1], "e": [-1, -1]}

    def enc(ts):
        return np.array([vec[s] for s in ts], np.float32)

    r = evaluate_retrieval(t, enc, enc(t.queries), k=2)
    assert (r["n_queries"], r["n_corpus"]) == (3, 5)
    assert r["recall@1"] == 1.0 and r["mrr@2"] == 1.0 and r["ndcg@2"] == 1.0
    # without the exclusion every query finds itself first: only the identical pair scores
    r2 = evaluate_retrieval(t, enc, enc, k=1, exclude_self=False)
    assert r2["recall@1"] == pytest.approx(1 / 3)


def test_task_query_ids_default():
    t = RetrievalTask(["x", "y"], ["y"], [{0}])
    assert t.query_ids == [1]
