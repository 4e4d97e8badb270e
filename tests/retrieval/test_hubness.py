"""CSLS re-ranking on top of an EmbeddingIndex, and retrieval evaluation with it."""

from __future__ import annotations

import numpy as np
import pytest

from embedkit.diagnostics import corpus_hub_penalty, csls_search
from embedkit.errors import ConfigError
from embedkit.postprocess.affine import AffineMap
from embedkit.retrieval import EmbeddingIndex, evaluate_retrieval, pairs_to_retrieval
from embedkit.retrieval.hubness import CSLSReranker, evaluate_csls, occurrence_hubness

HUB = 300


@pytest.fixture(scope="module")
def hub_set() -> tuple[np.ndarray, np.ndarray]:
    """A corpus around a common direction with its centre planted as the last row; queries
    drawn around the same direction."""
    rng = np.random.default_rng(3)
    d = 24
    u = np.eye(d)[0]
    corpus = np.vstack([u + rng.normal(size=(HUB, d)) / np.sqrt(d), u[None]]).astype("float32")
    queries = (u + rng.normal(size=(200, d)) / np.sqrt(d)).astype("float32")
    return queries, corpus


def occurrences(hits, n: int) -> np.ndarray:
    return np.bincount([h.id for row in hits for h in row], minlength=n)


def test_csls_search_demotes_the_planted_hub(hub_set):
    queries, corpus = hub_set
    index = EmbeddingIndex.build(corpus, [f"t{i}" for i in range(len(corpus))])
    plain = index.search(queries, k=10)
    csls = CSLSReranker.fit(corpus, k_penalty=10).search(index, queries, k=10)
    before, after = occurrences(plain, len(corpus)), occurrences(csls, len(corpus))
    assert before.argmax() == HUB and before[HUB] > len(queries) // 2  # in most top 10s
    assert after[HUB] < before[HUB] // 2
    # the same lists as the diagnostics' exact CSLS search
    _, ids = csls_search(queries, corpus, k=10, candidates=100, k_penalty=10)
    assert [[h.id for h in row] for row in csls] == ids.tolist()
    # hits carry CSLS scores, best first, and their texts
    row = csls[0]
    assert [h.score for h in row] == sorted((h.score for h in row), reverse=True)
    assert all(h.text == f"t{h.id}" for h in row)
    # the result-list hubness falls
    assert (occurrence_hubness([[h.id for h in r] for r in csls], len(corpus), 10)["skewness"]
            < occurrence_hubness([[h.id for h in r] for r in plain], len(corpus), 10)["skewness"])


def test_penalty_lives_in_the_index_space(hub_set):
    """With an affine map baked into the index, the penalty is computed after the map."""
    queries, corpus = hub_set
    rng = np.random.default_rng(0)
    amap = AffineMap(rng.normal(size=(corpus.shape[1], 12)), -corpus.mean(axis=0))
    index = EmbeddingIndex.build(corpus, [str(i) for i in range(len(corpus))], transform=amap)
    rr = CSLSReranker.for_index(index, corpus, k_penalty=5)
    expected = corpus_hub_penalty(amap.apply(corpus), 5)
    np.testing.assert_allclose(rr.penalty, expected, atol=1e-5)
    hits = rr.search(index, queries[:3], k=4)
    assert [len(h) for h in hits] == [4, 4, 4]


def test_reranker_refuses_what_it_cannot_do(hub_set):
    queries, corpus = hub_set
    texts = [str(i) for i in range(len(corpus))]
    l2 = EmbeddingIndex.build(corpus, texts, metric="l2")
    with pytest.raises(ConfigError, match="cosine") as e:
        CSLSReranker.for_index(l2, corpus)
    assert e.value.param == "metric"
    index = EmbeddingIndex.build(corpus, texts)
    with pytest.raises(ConfigError, match="penalty covers 5"):
        CSLSReranker(np.zeros(5)).search(index, queries, k=3)
    with pytest.raises(ConfigError, match="in its order"):
        CSLSReranker.for_index(index, corpus[:10])
    with pytest.raises(ConfigError) as e:
        CSLSReranker.fit(corpus[:4], k_penalty=4)
    assert e.value.param == "k_penalty"
    with pytest.raises(ConfigError) as e:
        CSLSReranker(np.zeros(3), candidates=0)
    assert e.value.param == "candidates"


def test_evaluate_csls_raw_matches_evaluate_retrieval():
    rng = np.random.default_rng(5)
    s1 = [f"q{i}" for i in range(30)]
    s2 = [f"d{i}" for i in range(30)]
    labels = [1] * 20 + [0] * 10
    task = pairs_to_retrieval(s1, s2, labels)
    base = rng.normal(size=(30, 16))
    vec = {**{f"q{i}": base[i] + 0.3 * rng.normal(size=16) for i in range(30)},
           **{f"d{i}": base[i] for i in range(30)}}
    corpus_x = np.array([vec[t] for t in task.corpus], dtype="float32")
    query_x = corpus_x[task.query_ids]
    ref = evaluate_retrieval(task, corpus_x, query_x, k=10)
    res = evaluate_csls(task, corpus_x, query_x, k=10, k_penalty=5, candidates=20)
    for key in ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10", "n_queries",
                "n_corpus"):
        assert res["raw"][key] == pytest.approx(ref[key]), key
    assert set(res["csls"]) >= {"recall@10", "mrr@10", "result_skewness", "k_penalty"}
    assert (res["csls"]["k_penalty"], res["csls"]["candidates"]) == (5, 20)
    # a transform is applied on both sides, as evaluate_retrieval applies it
    amap = AffineMap(rng.normal(size=(16, 8)), np.zeros(16))
    ref_t = evaluate_retrieval(task, corpus_x, query_x, k=10, transform=amap)
    res_t = evaluate_csls(task, corpus_x, query_x, k=10, transform=amap, k_penalty=5)
    assert res_t["raw"]["recall@10"] == pytest.approx(ref_t["recall@10"])
    with pytest.raises(ConfigError, match="expected 60 rows"):
        evaluate_csls(task, corpus_x[:5], query_x)


def test_occurrence_hubness_counts_result_slots():
    r = occurrence_hubness([[0, 1, 2], [0, 1], [0, -1]], n_corpus=5, k=2)
    assert r["max_occurrence"] == 3 and r["antihub_rate"] == pytest.approx(3 / 5)
    with pytest.raises(ConfigError):
        occurrence_hubness([[-1]], n_corpus=2, k=1)
