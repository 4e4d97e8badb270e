"""Johnson-Lindenstrauss: measured distortion of seeded Gaussian random projections."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.random_projection import GaussianRandomProjection, johnson_lindenstrauss_min_dim

from embedkit.diagnostics import jl_distortion, practical_min_dim
from embedkit.diagnostics._common import random_pairs
from embedkit.errors import ConfigError


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(1000, 64))


def test_distortion_shrinks_as_the_dimension_grows(x):
    r = jl_distortion(x, dims=[8, 32, 128, 512], n_pairs=4000)
    for key in ("distance_p99", "distance_max", "cosine_p99", "cosine_max"):
        values = [p[key] for p in r["projections"]]
        assert values == sorted(values, reverse=True), key
    json.dumps(r)


def test_the_jl_bound_keeps_distortion_within_eps(x):
    bound = int(johnson_lindenstrauss_min_dim(len(x), eps=0.5))
    r = jl_distortion(x, dims=[bound], n_pairs=4000, eps=(0.5,))
    assert r["jl_min_dim"] == [{"eps": 0.5, "min_dim": bound}]
    assert r["projections"][0]["distance_p99"] < 0.5


def test_practical_estimate():
    assert 8.33 * math.log(100_000) == pytest.approx(95.9, abs=0.01)
    assert practical_min_dim(100_000) == 96
    assert practical_min_dim(5_000_000) == 129  # 8.33 ln(5e6) = 128.5, Su's "about 128"


def test_matches_a_direct_projection_of_the_same_pairs(x):
    r = jl_distortion(x, dims=[24], n_pairs=3000, seed=3, block_rows=500)
    y = GaussianRandomProjection(n_components=24, random_state=3).fit(x).transform(x)
    i, j = random_pairs(len(x), 3000, 3)
    ratio = ((y[i] - y[j]) ** 2).sum(1) / ((x[i] - x[j]) ** 2).sum(1)

    def cos(z: np.ndarray) -> np.ndarray:
        return (z[i] * z[j]).sum(1) / (np.linalg.norm(z[i], axis=1) * np.linalg.norm(z[j], axis=1))

    dist, cosd = np.abs(ratio - 1), np.abs(cos(y) - cos(x))
    p = r["projections"][0]
    assert p["distance_max"] == pytest.approx(dist.max(), rel=1e-9)
    assert p["distance_p99"] == pytest.approx(np.percentile(dist, 99), rel=1e-9)
    assert p["cosine_p99"] == pytest.approx(np.percentile(cosd, 99), rel=1e-9)
    assert p["cosine_mean"] == pytest.approx(cosd.mean(), rel=1e-9)
    assert (r["seed"], r["n_pairs"], r["practical_min_dim"]) == (3, 3000, 58)


def test_seed_determines_the_result(x):
    a = jl_distortion(x, dims=[16], n_pairs=500, seed=1)
    assert a == jl_distortion(x, dims=[16], n_pairs=500, seed=1)
    assert a != jl_distortion(x, dims=[16], n_pairs=500, seed=2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dims": []}, "at least one"),
        ({"dims": [0]}, "dims must be an integer >= 1"),
        ({"dims": [4], "eps": (1.5,)}, r"\(0, 1\)"),
        ({"dims": [4], "n_pairs": 0}, "n_pairs"),
    ],
)
def test_bad_arguments_raise_config_error(x, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        jl_distortion(x, **kwargs)
    with pytest.raises(ConfigError, match="n_vectors must be an integer >= 2"):
        practical_min_dim(1)
