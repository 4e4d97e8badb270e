"""Whitening: equivalence with BERT-whitening, streaming statistics, rank deficiency, sklearn."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from embedkit.errors import ConfigError
from embedkit.postprocess import Normalize, PostprocessError, RankDeficientWarning, Whitening


def _data(n=300, d=8, seed=0, mean=2.0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) * np.linspace(0.2, 3.0, d)
    return rng.normal(size=(n, d)) @ mix + mean * rng.normal(size=d)


def _pair_cos(Y):
    a, b = Y[0::2], Y[1::2]
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _reference_bert_whitening(X, k):
    """The published BERT-whitening code (np.cov with N-1)."""
    mu = X.mean(axis=0, keepdims=True)
    cov = np.cov(X.T)
    u, s, vh = np.linalg.svd(cov)
    W = np.dot(u, np.diag(1 / np.sqrt(s)))
    return (X + (-mu)) @ W[:, :k]


@pytest.mark.parametrize("k", [8, 5, 2])
def test_matches_reference_bert_whitening_cosines(k):
    X = _data()
    ours = Whitening(beta=1, gamma=1, n_components=k).fit(X).transform(X)
    ref = _reference_bert_whitening(X, k)
    np.testing.assert_allclose(_pair_cos(ours), _pair_cos(ref), atol=1e-6)
    # same directions up to sign and the N vs N-1 scale sqrt(N/(N-1))
    ratio = np.abs(ours) / np.maximum(np.abs(ref), 1e-300)
    np.testing.assert_allclose(np.median(ratio, axis=0), np.sqrt(300 / 299), rtol=1e-8)


def test_whitened_training_data_has_zero_mean_identity_covariance():
    X = _data()
    Y = Whitening().fit_transform(X)
    np.testing.assert_allclose(Y.mean(0), 0, atol=1e-10)
    np.testing.assert_allclose(Y.T @ Y / len(Y), np.eye(8), atol=1e-9)


def test_beta_gamma_zero_is_rotation_keeping_cosines():
    X = _data()
    w = Whitening(beta=0, gamma=0).fit(X)
    Y = w.transform(X)
    np.testing.assert_allclose(_pair_cos(Y), _pair_cos(X), atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(Y, axis=1), np.linalg.norm(X, axis=1), rtol=1e-12)
    np.testing.assert_allclose(w.bias_, 0)
    # eigenvalues are those of the uncentred second moment (1/N) X^T X
    np.testing.assert_allclose(w.eigenvalues_, np.linalg.eigvalsh(X.T @ X / len(X))[::-1])


def test_learned_attributes_and_affine_form():
    X = _data()
    w = Whitening(beta=0.5, gamma=0.7, n_components=3).fit(X)
    assert w.kernel_.shape == (8, 3) and w.components_.shape == (3, 8)
    assert w.n_components_ == 3 and w.n_samples_seen_ == 300 and w.n_features_in_ == 8
    np.testing.assert_allclose(w.mean_, X.mean(0))
    np.testing.assert_allclose(w.bias_, -0.5 * X.mean(0))
    np.testing.assert_allclose(w.transform(X), (X + w.bias_) @ w.kernel_, atol=1e-12)
    C = X - 0.5 * X.mean(0)
    sigma = C.T @ C / len(X)
    np.testing.assert_allclose(w.eigenvalues_, np.linalg.eigvalsh(sigma)[::-1], rtol=1e-10)
    assert np.all(np.diff(w.eigenvalues_) <= 0)
    np.testing.assert_allclose(w.kernel_, w.components_.T * w.eigenvalues_[:3] ** -0.35)
    # deterministic signs: the largest-|.| entry of each direction is positive
    rows = w.components_
    assert np.all(rows[np.arange(3), np.abs(rows).argmax(1)] > 0)
    np.testing.assert_allclose(rows @ rows.T, np.eye(3), atol=1e-12)


def test_partial_fit_uneven_chunks_equals_fit():
    X = _data(n=523)
    full = Whitening(n_components=5).fit(X)
    part = Whitening(n_components=5)
    for a, b in [(0, 1), (1, 8), (8, 200), (200, 201), (201, 523)]:
        part.partial_fit(X[a:b])
    assert part.n_samples_seen_ == 523
    np.testing.assert_allclose(part.mean_, full.mean_, atol=1e-12)
    np.testing.assert_allclose(part.kernel_, full.kernel_, atol=1e-10)
    np.testing.assert_allclose(part.eigenvalues_, full.eigenvalues_, rtol=1e-10)


def test_large_mean_stays_accurate():
    rng = np.random.default_rng(3)
    Z = rng.normal(size=(2000, 6)) * np.array([1.0, 0.5, 2.0, 1.0, 0.1, 1.5])
    shifted = Z + 1e3
    w0 = Whitening().fit(Z)
    w1 = Whitening()
    for chunk in np.array_split(shifted, 7):
        w1.partial_fit(chunk)
    # whitening (beta=1) is shift-invariant: the kernel must not see the 1e3 offset
    np.testing.assert_allclose(w1.kernel_, w0.kernel_, rtol=1e-8, atol=1e-8)
    Y = w1.transform(shifted)
    np.testing.assert_allclose(Y.T @ Y / len(Y), np.eye(6), atol=1e-7)
    np.testing.assert_allclose(Y.mean(0), 0, atol=1e-8)


def test_dtype_is_preserved():
    X = _data()
    w = Whitening(n_components=4).fit(X.astype(np.float32))
    out32 = w.transform(X.astype(np.float32))
    assert out32.dtype == np.float32
    assert w.transform(X).dtype == np.float64
    np.testing.assert_allclose(out32, w.transform(X), rtol=1e-4, atol=1e-4)


def _low_rank(n: int, rank: int, d: int, seed: int = 0) -> np.ndarray:
    """``n`` distinct vectors in a ``rank``-dimensional subspace of R^d."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, rank)) @ rng.normal(size=(rank, d))


@pytest.mark.parametrize(
    "X, n",
    [
        (_low_rank(20, 5, 12), 20),  # rank < d
        (np.c_[np.random.default_rng(2).normal(size=(40, 5)), np.full(40, 7.0)], 40),  # constant
        (np.random.default_rng(4).normal(size=(6, 6)), 6),  # N = d: centring loses one
    ],
)
def test_rank_deficient_is_finite_and_warns(X, n):
    d = X.shape[1]
    with pytest.warns(RankDeficientWarning, match=rf"N={n} samples, d={d} features"):
        w = Whitening().fit(X)
    new = np.random.default_rng(9).normal(size=(4, d))
    for Y in (w.transform(X), w.transform(new), w.transform(X.astype(np.float32))):
        assert np.all(np.isfinite(Y))
    assert np.all(np.isfinite(w.kernel_))


@pytest.mark.parametrize(
    "X, match",
    [
        (np.random.default_rng(0).normal(size=(5, 12)), "only 5 distinct vectors"),  # N < d
        (np.repeat(np.random.default_rng(1).normal(size=(3, 6)), 4, axis=0),
         "only 3 distinct vectors among its 12 rows"),  # duplicates
        (np.random.default_rng(4).normal(size=(1, 6)), "one distinct vector in 1 sample"),
    ],
)
def test_fewer_distinct_vectors_than_k_is_refused(X, match):
    with pytest.raises(PostprocessError, match=match) as e:
        Whitening().fit(X)
    assert e.value.param == "n_components"
    Whitening(n_components=1, beta=0).fit(X)  # uncentred, one direction: allowed


def test_clamp_count_in_warning_and_no_warning_when_full_rank():
    X = _low_rank(20, 4, 12)
    with pytest.warns(RankDeficientWarning, match=r"8 of the 12 kept directions"):
        Whitening().fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Whitening(n_components=4).fit(X)  # the kept directions all have variance
        Whitening(gamma=0).fit(X)  # no scaling, nothing to clamp
        Whitening().fit(_data())


def test_input_validation_errors():
    X = _data()
    w = Whitening().fit(X)
    with pytest.raises(ConfigError, match="8 features"):
        w.transform(X[:, :5])
    with pytest.raises(ValueError):
        w.transform(X[:, :5])
    with pytest.raises(PostprocessError, match=r"n_components=9 .* d=8"):
        Whitening(n_components=9).fit(X)
    with pytest.raises(ConfigError, match="'n_components' parameter of Whitening must be"):
        Whitening(n_components="half").fit(X)
    with pytest.raises(ConfigError, match="eps"):
        Whitening(eps=0).fit(X)
    with pytest.raises(ConfigError):
        w.partial_fit(X[:, :3])
    with pytest.raises(ConfigError):
        Whitening().fit(np.array([[1.0, np.nan]]))
    assert not hasattr(Whitening(), "kernel_")


def test_set_params_after_fit_rederives():
    X = _data()
    w = Whitening().fit(X)
    w.set_params(gamma=0.0, n_components="all")
    np.testing.assert_allclose(w.kernel_, w.components_.T)


def test_clone_params_pickle():
    w = Whitening(beta=0.3, gamma=0.9, n_components=4, eps=1e-5)
    assert w.get_params() == {"beta": 0.3, "gamma": 0.9, "n_components": 4, "eps": 1e-5}
    c = clone(w)
    assert c is not w and c.get_params() == w.get_params()
    X = _data()
    w.fit(X)
    assert not hasattr(clone(w), "mean_")
    w2 = pickle.loads(pickle.dumps(w))
    np.testing.assert_array_equal(w2.transform(X), w.transform(X))
    assert w.set_params(beta=1.0) is w and w.beta == 1.0


def test_pipeline_with_normalize():
    X = _data()
    p = Pipeline([("w", Whitening(n_components=4)), ("n", Normalize())]).fit(X)
    Y = p.transform(X)
    np.testing.assert_allclose(np.linalg.norm(Y, axis=1), 1.0)
    w = p.named_steps["w"]
    Z = (X + w.bias_) @ w.kernel_
    np.testing.assert_allclose(Y, Z / np.linalg.norm(Z, axis=1, keepdims=True))
    assert list(p.get_feature_names_out()) == [f"whitening{i}" for i in range(4)]


def test_grid_search_over_beta_gamma():
    X = _data(n=400, mean=5.0)

    def isotropy(estimator, X_test, y=None):
        Y = estimator.transform(X_test)
        return -np.linalg.norm(np.cov(Y.T, bias=True) - np.eye(Y.shape[1]))

    grid = GridSearchCV(
        Whitening(), {"beta": [0.0, 1.0], "gamma": [0.0, 1.0]}, scoring=isotropy, cv=3
    ).fit(X)
    assert grid.best_params_ == {"beta": 1.0, "gamma": 1.0}
    scores = dict(
        zip(map(str, grid.cv_results_["params"]), grid.cv_results_["mean_test_score"], strict=True)
    )
    assert scores[str({"beta": 1.0, "gamma": 0.0})] < -50  # no scaling: far from isotropic
    assert -2 < scores[str({"beta": 0.0, "gamma": 1.0})] < grid.best_score_
    assert grid.best_score_ > -1.2
    assert grid.best_estimator_.n_samples_seen_ == 400
