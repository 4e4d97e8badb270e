"""Bootstrap intervals and the paired bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from embedkit.errors import ConfigError
from embedkit.evaluation.bootstrap import bootstrap_interval, paired_bootstrap, resample_indices


def _data(n=1500, seed=0, noise=1.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 6, n).astype(float)
    return y + rng.normal(0, noise, n), y


def test_each_resample_is_scipys_spearman():
    x, y = _data(200)
    idx = resample_indices(200, 5, seed=3)
    from embedkit.evaluation.bootstrap import STATISTICS

    vals = STATISTICS["spearman"](x[idx], y[idx])
    ref = [spearmanr(x[i], y[i])[0] for i in idx]
    assert vals == pytest.approx(ref, abs=1e-12)


def test_interval_seeded():
    x, y = _data(2000)
    a = bootstrap_interval("spearman", x, y, n_resamples=1000, seed=7)
    b = bootstrap_interval("spearman", x, y, n_resamples=1000, seed=7)
    assert a == b and a["low"] < a["value"] < a["high"] and a["n_resamples"] == 1000
    assert a["value"] == pytest.approx(spearmanr(x, y)[0])
    # the interval's width is about 2 x 1.96 standard errors of rho (Fisher z, n = 2000)
    rho = a["value"]
    se = (1 - rho ** 2) / np.sqrt(2000 - 3)
    assert (a["high"] - a["low"]) == pytest.approx(2 * 1.96 * se, rel=0.35)


def test_accuracy_and_ap():
    x, y = _data(500)
    labels = (y >= 3).astype(float)
    acc = bootstrap_interval("accuracy", x, labels, threshold=2.5, n_resamples=300)
    assert acc["value"] == pytest.approx(np.mean((x > 2.5) == (labels == 1)))
    assert acc["low"] < acc["value"] < acc["high"]
    ap = bootstrap_interval("ap", x, labels, n_resamples=300)
    assert ap["low"] < ap["value"] < ap["high"] <= 1
    with pytest.raises(ConfigError, match="threshold"):
        bootstrap_interval("accuracy", x, labels)


def test_paired_bootstrap_tells_noise_from_a_real_difference():
    x, y = _data(1500, noise=1.5)
    rng = np.random.default_rng(1)
    same = x + rng.normal(0, 0.02, len(x))  # a row that differs by noise only
    better = y + rng.normal(0, 1.0, len(x))  # a row that is really better
    noise = paired_bootstrap("spearman", same, x, y, n_resamples=1000)
    real = paired_bootstrap("spearman", better, x, y, n_resamples=1000)
    assert not noise["significant"] and noise["low"] < 0 < noise["high"]
    assert real["significant"] and real["diff"] > 0 and real["p_value"] < 0.01
    assert real["method"].startswith("paired")
