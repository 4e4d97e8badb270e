"""Hubness: k-occurrence from a blocked exact FAISS search, and its summary indices."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from embedkit.diagnostics import cosine_knn, hubness, hubness_from_occurrence, k_occurrence
from embedkit.errors import ConfigError


def brute_force_occurrence(
    corpus: np.ndarray, k: int, queries: np.ndarray | None = None
) -> np.ndarray:
    """N_k from the full cosine matrix, self-matches masked when queries is None."""
    c = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    q = c if queries is None else queries / np.linalg.norm(queries, axis=1, keepdims=True)
    sims = q @ c.T
    if queries is None:
        np.fill_diagonal(sims, -np.inf)
    top = np.argsort(-sims, axis=1)[:, :k]
    return np.bincount(top.ravel(), minlength=len(corpus))


@pytest.fixture(scope="module")
def planted_hub() -> np.ndarray:
    rng = np.random.default_rng(0)
    cloud = rng.normal(size=(1000, 32)) + 2.0
    return np.vstack([cloud, cloud.mean(axis=0, keepdims=True)])


def test_planted_hub_has_the_largest_occurrence(planted_hub):
    nk = k_occurrence(planted_hub, k=10)
    assert int(np.argmax(nk)) == 1000
    assert nk[1000] > 20 * 10
    assert nk.sum() == len(planted_hub) * 10
    r = hubness(planted_hub, k=10)
    assert r["argmax_occurrence"] == 1000 and r["max_occurrence"] == nk[1000]
    assert r["skewness"] > 0
    assert r["self_search"] is True and r["n_queries"] == r["n_corpus"] == 1001
    json.dumps(r)


@pytest.mark.parametrize("k", [1, 5, 10])
def test_occurrence_equals_brute_force(k):
    x = np.random.default_rng(1).normal(size=(300, 16))
    np.testing.assert_array_equal(k_occurrence(x, k=k, block_rows=64),
                                  brute_force_occurrence(x, k))


def test_query_vs_corpus_occurrence_equals_brute_force():
    rng = np.random.default_rng(2)
    corpus, queries = rng.normal(size=(250, 16)), rng.normal(size=(180, 16))
    nk = k_occurrence(corpus, k=7, queries=queries, block_rows=50)
    np.testing.assert_array_equal(nk, brute_force_occurrence(corpus, 7, queries))
    assert nk.sum() == 180 * 7
    r = hubness(corpus, k=7, queries=queries)
    assert (r["n_queries"], r["n_corpus"], r["self_search"]) == (180, 250, False)
    assert r["mean_occurrence"] == pytest.approx(180 * 7 / 250)


def test_indices_match_their_definitions():
    x = np.random.default_rng(3).normal(size=(400, 24))
    k = 10
    nk = brute_force_occurrence(x, k)
    r = hubness(x, k=k)
    n = len(x)
    assert r["skewness"] == pytest.approx(stats.skew(nk), rel=1e-9)
    m3 = np.mean((nk - nk.mean()) ** 3) / np.std(nk) ** 3
    assert r["skewness"] == pytest.approx(m3, rel=1e-9)
    # Robin Hood index of a self search: sum |N_k - k| / (2 n k)
    assert r["robinhood_index"] == pytest.approx(np.abs(nk - k).sum() / (2 * n * k), rel=1e-12)
    assert r["antihub_rate"] == pytest.approx(np.mean(nk == 0))
    assert r["hub_occurrence"] == pytest.approx(nk[nk >= 2 * k].sum() / (n * k))
    assert r["top_share"] == pytest.approx(np.sort(nk)[-4:].sum() / (n * k))  # ceil(1% of 400)


def test_uniform_occurrence_has_no_hubness():
    r = hubness_from_occurrence(np.full(50, 3), k=3)
    assert (r["skewness"], r["robinhood_index"], r["antihub_rate"], r["hub_occurrence"]) == (
        0.0, 0.0, 0.0, 0.0)
    assert r["top_share"] == pytest.approx(1 / 50)


def test_self_is_excluded_even_with_duplicate_rows():
    base = np.random.default_rng(4).normal(size=(20, 6))
    x = np.vstack([base, base, base])  # every row has two exact copies
    _, ids = cosine_knn(None, x, k=3)
    assert not (ids == np.arange(len(x))[:, None]).any()
    assert k_occurrence(x, k=3).sum() == len(x) * 3


def test_zero_vectors_do_not_break_the_search():
    x = np.vstack([np.zeros((2, 4)), np.random.default_rng(5).normal(size=(10, 4))])
    nk = k_occurrence(x, k=2)
    assert nk.sum() == 24 and nk.shape == (12,)


def test_cosine_knn_scores_are_sorted_cosines():
    rng = np.random.default_rng(6)
    corpus, queries = rng.normal(size=(100, 8)), rng.normal(size=(30, 8))
    sims, ids = cosine_knn(queries, corpus, k=5, block_rows=7)
    unit_c = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    unit_q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    expected = np.take_along_axis(unit_q @ unit_c.T, ids, axis=1)
    np.testing.assert_allclose(sims, expected, atol=1e-5)
    assert (np.diff(sims, axis=1) <= 1e-7).all()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda x: k_occurrence(x, k=0), "k must be an integer >= 1"),
        (lambda x: k_occurrence(x, k=10), "k must be <= 9"),
        (lambda x: k_occurrence(x, k=2, queries=np.ones((3, 5))), "dim 5"),
        (lambda x: hubness(x, k=2, top_fraction=0.0), "top_fraction"),
        (lambda x: hubness_from_occurrence([0, 0], k=1), "not all 0"),
    ],
)
def test_bad_arguments_raise_config_error(call, match):
    x = np.random.default_rng(7).normal(size=(10, 4))
    with pytest.raises(ConfigError, match=match):
        call(x)
