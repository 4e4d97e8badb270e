"""CSLS hubness reduction for query-vs-corpus cosine search."""

from __future__ import annotations

import numpy as np
import pytest

from embedkit.diagnostics import corpus_hub_penalty, cosine_knn, csls_rerank, csls_search
from embedkit.errors import ConfigError

HUB = 500


@pytest.fixture(scope="module")
def hub_set() -> tuple[np.ndarray, np.ndarray]:
    """A corpus around a common direction with its centre planted as row 500, and queries."""
    rng = np.random.default_rng(1)
    d = 32
    u = np.eye(d)[0]
    corpus = np.vstack([u + rng.normal(size=(HUB, d)) / np.sqrt(d), u[None]])
    queries = u + rng.normal(size=(400, d)) / np.sqrt(d)
    return queries, corpus


def unit(z: np.ndarray) -> np.ndarray:
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def penalty_reference(corpus: np.ndarray, k: int) -> np.ndarray:
    sims = unit(corpus) @ unit(corpus).T
    np.fill_diagonal(sims, -np.inf)
    return np.sort(sims, axis=1)[:, ::-1][:, :k].mean(axis=1)


def test_csls_demotes_the_planted_hub(hub_set):
    queries, corpus = hub_set
    _, plain1 = cosine_knn(queries, corpus, k=1)
    _, plain10 = cosine_knn(queries, corpus, k=10)
    assert (plain1 == HUB).sum() > 20  # the hub is the top-1 neighbour of many queries
    assert np.bincount(plain10.ravel()).argmax() == HUB
    _, csls1 = csls_search(queries, corpus, k=1)
    _, csls10 = csls_search(queries, corpus, k=10)
    assert (csls1 == HUB).sum() < (plain1 == HUB).sum() / 10
    assert (csls10 == HUB).sum() < (plain10 == HUB).sum() / 2


def test_penalty_matches_numpy(hub_set):
    _, corpus = hub_set
    got = corpus_hub_penalty(corpus, k=10, block_rows=128)
    np.testing.assert_allclose(got, penalty_reference(corpus, 10), atol=1e-5)
    assert got.shape == (len(corpus),) and got.dtype == np.float64
    assert int(np.argmax(got)) == HUB


def test_search_matches_full_numpy_csls(hub_set):
    queries, corpus = hub_set
    penalty = penalty_reference(corpus, 10)
    full = 2 * unit(queries) @ unit(corpus).T - penalty
    expected = np.argsort(-full, axis=1)[:, :5]
    scores, ids = csls_search(queries, corpus, k=5, candidates=len(corpus), block_rows=64)
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(full, expected, axis=1), atol=1e-5)


def test_k_equal_to_candidates_keeps_the_plain_result_set(hub_set):
    queries, corpus = hub_set
    _, plain = cosine_knn(queries, corpus, k=20)
    _, csls = csls_search(queries, corpus, k=20, candidates=20)
    assert [set(r) for r in plain.tolist()] == [set(r) for r in csls.tolist()]
    assert (plain != csls).any()  # but the order changed


def test_rerank_by_two_cos_minus_penalty():
    penalty = np.array([0.5, 0.0, 0.9, 0.2])
    scores = np.array([[0.9, 0.6, 0.95], [0.3, 0.2, 0.0]])
    ids = np.array([[2, 1, 0], [3, -1, 1]])
    s, i = csls_rerank(scores, ids, penalty)
    assert i.tolist() == [[0, 1, 2], [3, 1, -1]]
    np.testing.assert_allclose(s[0], [1.4, 1.2, 0.9])
    np.testing.assert_allclose(s[1, :2], [0.4, 0.0])
    assert s[1, 2] == -np.inf
    s1, i1 = csls_rerank(scores[0], ids[0], penalty)  # one query as 1-D arrays
    assert i1.tolist() == [0, 1, 2] and s1.shape == (3,)


def test_precomputed_penalty_is_used(hub_set):
    queries, corpus = hub_set
    zero = np.zeros(len(corpus))
    _, plain = cosine_knn(queries, corpus, k=3)
    _, same = csls_search(queries, corpus, k=3, penalty=zero)
    np.testing.assert_array_equal(plain, same)  # no penalty: ranking by 2 cos


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda q, c: csls_search(q, c, k=0), "k must be an integer >= 1"),
        (lambda q, c: csls_search(q, c, penalty=np.zeros(3)), "penalty must have shape"),
        (lambda q, c: csls_rerank(np.zeros((2, 3)), np.zeros((2, 2)), np.zeros(5)), "one shape"),
        (lambda q, c: csls_rerank(np.zeros(2), np.array([0, 9]), np.zeros(5)), r"\[0, 5\)"),
    ],
)
def test_bad_arguments_raise_config_error(hub_set, call, match):
    queries, corpus = hub_set
    with pytest.raises(ConfigError, match=match):
        call(queries, corpus)
