"""Sparsity: l1/l2 ratio and Hoyer's measure of vectors and of the eigenvalue spectrum."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedkit.diagnostics import covariance_eigenvalues, hoyer, l1_l2_ratio, sparsity
from embedkit.errors import ConfigError


def test_one_hot_vectors_are_maximally_sparse():
    d = 16
    x = np.eye(d) * np.arange(1, d + 1)[:, None]
    s = sparsity(x)
    assert s["vectors"]["l1_l2_ratio"]["mean"] == pytest.approx(1 / np.sqrt(d), abs=1e-12)
    assert s["vectors"]["hoyer"]["mean"] == pytest.approx(1.0, abs=1e-12)
    assert s["vectors"]["hoyer"]["std"] == pytest.approx(0.0, abs=1e-12)
    json.dumps(s)


def test_constant_vectors_are_not_sparse():
    x = np.full((5, 9), -2.5)
    s = sparsity(x)
    assert s["vectors"]["hoyer"]["max"] == pytest.approx(0.0, abs=1e-12)
    assert s["vectors"]["l1_l2_ratio"]["min"] == pytest.approx(1.0, abs=1e-12)
    assert s["spectrum"] == {"l1_l2_ratio": None, "hoyer": None}  # zero covariance


def test_values_match_the_formulas():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 20)) * rng.exponential(size=20)
    d = x.shape[1]
    ratio = np.abs(x).sum(1) / (np.sqrt(d) * np.sqrt((x**2).sum(1)))
    hoy = (np.sqrt(d) - np.abs(x).sum(1) / np.sqrt((x**2).sum(1))) / (np.sqrt(d) - 1)
    np.testing.assert_allclose(l1_l2_ratio(x), ratio, rtol=1e-12)
    np.testing.assert_allclose(hoyer(x), hoy, rtol=1e-12)
    s = sparsity(x, block_rows=37)
    v = s["vectors"]
    assert v["hoyer"]["mean"] == pytest.approx(hoy.mean(), rel=1e-12)
    assert v["hoyer"]["std"] == pytest.approx(hoy.std(), rel=1e-9)
    assert v["hoyer"]["p25"] == pytest.approx(np.percentile(hoy, 25), rel=1e-12)
    assert v["l1_l2_ratio"]["median"] == pytest.approx(np.median(ratio), rel=1e-12)
    assert v["l1_l2_ratio"]["p75"] == pytest.approx(np.percentile(ratio, 75), rel=1e-12)
    eig = np.linalg.eigvalsh(np.cov(x, rowvar=False))
    assert s["spectrum"]["l1_l2_ratio"] == pytest.approx(
        eig.sum() / (np.sqrt(d) * np.linalg.norm(eig)), rel=1e-9)
    assert s["spectrum"]["hoyer"] == pytest.approx(
        (np.sqrt(d) - eig.sum() / np.linalg.norm(eig)) / (np.sqrt(d) - 1), rel=1e-9)


def test_spectrum_sparsity_orders_isotropic_below_low_rank():
    rng = np.random.default_rng(1)
    iso = rng.normal(size=(2000, 16))
    low = rng.normal(size=(2000, 2)) @ rng.normal(size=(2, 16)) + 1e-3 * iso
    assert sparsity(iso)["spectrum"]["hoyer"] < 0.05
    assert sparsity(low)["spectrum"]["hoyer"] > 0.6
    assert float(hoyer(covariance_eigenvalues(low))) == sparsity(low)["spectrum"]["hoyer"]


def test_zero_vectors_are_counted_and_left_out():
    x = np.vstack([np.zeros((3, 4)), np.eye(4)])
    s = sparsity(x)
    assert s["vectors"]["n_zero_vectors"] == 3
    assert s["vectors"]["hoyer"]["mean"] == pytest.approx(1.0)
    assert np.isnan(hoyer(np.zeros(4)))
    all_zero = sparsity(np.zeros((2, 4)))["vectors"]
    assert all_zero["hoyer"] is None and all_zero["n_zero_vectors"] == 2


def test_bad_arguments_raise_config_error():
    with pytest.raises(ConfigError, match="dimension >= 2"):
        hoyer([3.0])
    with pytest.raises(ConfigError, match="dimension >= 2"):
        sparsity(np.ones((4, 1)))
    with pytest.raises(ConfigError, match="2-D array of row vectors"):
        l1_l2_ratio(np.ones((2, 2, 2)))
