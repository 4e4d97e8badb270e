"""Spectrum: covariance eigenvalues, explained variance, effective rank and IsoScore."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.decomposition import PCA

from embedkit.diagnostics import (
    covariance_eigenvalues,
    dims_for_variance,
    effective_rank,
    isoscore,
    isoscore_from_eigenvalues,
    spectrum,
)
from embedkit.errors import ConfigError


def isoscore_reference(x: np.ndarray) -> float:
    """Rudman et al. 2022, Algorithm 1, step by step with PCA and the covariance diagonal."""
    points = PCA(n_components=x.shape[1]).fit_transform(x)
    variances = np.diag(np.cov(points, rowvar=False))
    d = variances.size
    normalised = variances * np.sqrt(d) / np.linalg.norm(variances)
    defect = np.linalg.norm(normalised - np.ones(d)) / np.sqrt(2 * (d - np.sqrt(d)))
    phi = (d - defect**2 * (d - np.sqrt(d))) ** 2 / d**2
    return float((d * phi - 1) / (d - 1))


def effective_rank_reference(x: np.ndarray) -> float:
    s = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


@pytest.fixture(scope="module")
def gaussian() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(5000, 32))


def test_isotropic_gaussian(gaussian):
    s = spectrum(gaussian)
    assert s["isoscore"] > 0.9
    assert s["effective_rank"] > 0.9 * 32
    assert s["dims_for_variance"]["0.99"] >= 31
    json.dumps(s)


@pytest.mark.parametrize("noise", [0.0, 1e-6])
def test_rank_one_set(noise):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, 1)) * rng.normal(size=32) + noise * rng.normal(size=(2000, 32))
    assert isoscore(x) < 0.05
    assert effective_rank(x) == pytest.approx(1.0, abs=0.01)
    assert dims_for_variance(covariance_eigenvalues(x), 0.99) == 1


def test_eigenvalues_match_numpy_cov():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(700, 20)) @ rng.normal(size=(20, 20)) + 50.0
    expected = np.linalg.eigvalsh(np.cov(x, rowvar=False))[::-1]
    got = covariance_eigenvalues(x, block_rows=128)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9 * expected[0])
    assert (np.diff(got) <= 0).all()


def test_derived_numbers_match_direct_implementations():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(600, 16)) * np.linspace(0.1, 3.0, 16)
    s = spectrum(x, levels=(0.5, 0.9, 0.95, 0.99), block_rows=100)
    eig = np.linalg.eigvalsh(np.cov(x, rowvar=False))[::-1]
    cumulative = np.cumsum(eig) / eig.sum()
    np.testing.assert_allclose(s["explained_variance_ratio"], eig / eig.sum(), rtol=1e-9)
    np.testing.assert_allclose(s["cumulative_explained_variance"], cumulative, rtol=1e-9)
    for level in (0.5, 0.9, 0.95, 0.99):
        assert s["dims_for_variance"][f"{level:g}"] == int(np.argmax(cumulative >= level)) + 1
    assert s["effective_rank"] == pytest.approx(effective_rank_reference(x), rel=1e-9)
    assert s["isoscore"] == pytest.approx(isoscore_reference(x), abs=1e-9)
    assert s["total_variance"] == pytest.approx(np.trace(np.cov(x, rowvar=False)), rel=1e-9)


def test_isoscore_reference_agrees_on_anisotropic_data():
    x = np.random.default_rng(4).normal(size=(400, 10)) * [5, 1, 1, 1, 1, 1, 1, 0.1, 0.1, 0.1]
    value = isoscore(x)
    assert 0.05 < value < 0.9
    assert value == pytest.approx(isoscore_reference(x), abs=1e-9)


def test_isoscore_limits_and_monotonicity():
    d = 10
    assert isoscore_from_eigenvalues(np.ones(d)) == 1.0
    assert isoscore_from_eigenvalues(np.eye(d)[0]) == 0.0
    # the variance spread over 1, 2, ..., d equal directions scores higher each time
    spectra = [np.r_[np.ones(m), np.zeros(d - m)] for m in range(1, d + 1)]
    scores = [isoscore_from_eigenvalues(e) for e in spectra]
    assert scores == sorted(scores) and len(set(scores)) == d


def test_fewer_vectors_than_dimensions():
    # fewer vectors than dimensions: a rank-(n-1) covariance, padded eigenvalues are 0
    x = np.random.default_rng(5).normal(size=(5, 12))
    eig = covariance_eigenvalues(x)
    assert eig.shape == (12,) and np.count_nonzero(eig > 1e-9) == 4
    assert effective_rank(x) <= 4.0 + 1e-9


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: spectrum(np.ones((10, 4))), "identical"),
        (lambda: spectrum(np.ones((1, 4))), "at least 2 rows"),
        (lambda: isoscore_from_eigenvalues([1.0]), "at least 2 dimensions"),
        (lambda: isoscore_from_eigenvalues([1.0, -1.0]), ">= 0"),
        (lambda: dims_for_variance([1.0, 2.0], 1.5), r"\(0, 1\]"),
        (lambda: spectrum(np.eye(3), block_rows=0), "block_rows must be an integer >= 1"),
    ],
)
def test_bad_arguments_raise_config_error(call, match):
    with pytest.raises(ConfigError, match=match):
        call()
