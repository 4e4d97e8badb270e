"""RunningMoments: chunked updates and merges equal one pass; covariance about any centre."""

from __future__ import annotations

import numpy as np
import pytest

from embedkit.errors import ConfigError
from embedkit.postprocess import RunningMoments, Whitening


def test_chunks_and_merges_equal_one_pass():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 6)) * 3 + 100  # far from the origin: the naive formula loses digits
    one = RunningMoments.of(X)
    chunks = RunningMoments()
    for part in np.array_split(X, 7):
        chunks.update(part)
    merged = RunningMoments.of(X[:123]).merge(RunningMoments.of(X[123:]))
    for m in (chunks, merged):
        assert m.n == 500
        np.testing.assert_allclose(m.mean, X.mean(0), rtol=1e-12)
        np.testing.assert_allclose(m.m2, one.m2, rtol=1e-9)
    np.testing.assert_allclose(one.covariance(), np.cov(X.T, bias=True), rtol=1e-9)
    np.testing.assert_allclose(one.covariance(about=np.zeros(6)), X.T @ X / 500, rtol=1e-9)
    assert RunningMoments().merge(one).n == 500 and one.merge(RunningMoments()).n == 500


def test_float32_input_is_accumulated_in_float64():
    X = np.random.default_rng(1).normal(size=(50, 3)).astype(np.float32)
    m = RunningMoments.of(X)
    assert m.mean.dtype == m.m2.dtype == np.float64 and m.d == 3


def test_errors():
    with pytest.raises(ConfigError, match="no data"):
        RunningMoments().covariance()
    with pytest.raises(ConfigError, match="2-D"):
        RunningMoments().update(np.ones(3))
    with pytest.raises(ConfigError, match="3 columns"):
        RunningMoments.of(np.ones((2, 3))).update(np.ones((2, 4)))


def test_whitening_keeps_its_moments():
    X = np.random.default_rng(2).normal(size=(40, 4))
    w = Whitening().partial_fit(X[:10]).partial_fit(X[10:])
    assert isinstance(w.moments_, RunningMoments) and w.n_samples_seen_ == 40
    np.testing.assert_allclose(w.moments_.m2, RunningMoments.of(X).m2, rtol=1e-10)
    np.testing.assert_array_equal(w.mean_, w.moments_.mean)
