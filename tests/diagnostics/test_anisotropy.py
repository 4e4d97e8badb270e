"""Anisotropy: mean cosine of seeded random pairs and the mean-vector norm ratio."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedkit.diagnostics import anisotropy, mean_vector_norm_ratio, pair_cosines
from embedkit.diagnostics._common import random_pairs
from embedkit.errors import ConfigError


def test_isotropic_gaussian_has_mean_cosine_near_zero():
    x = np.random.default_rng(0).normal(size=(5000, 32))
    r = anisotropy(x)
    assert abs(r["mean_cosine"]) < 0.02
    assert r["mean_vector_norm_ratio"] < 0.05
    assert (r["n_pairs"], r["seed"], r["n_vectors"]) == (10000, 0, 5000)
    json.dumps(r)


def test_common_offset_gives_mean_cosine_near_one():
    rng = np.random.default_rng(1)
    x = 3.0 * rng.normal(size=32) + 0.1 * rng.normal(size=(2000, 32))
    r = anisotropy(x, n_pairs=2000, seed=5)
    assert r["mean_cosine"] > 0.9
    assert r["mean_vector_norm_ratio"] > 0.9
    assert r["seed"] == 5


def test_matches_brute_force_over_the_same_pairs():
    x = np.random.default_rng(2).normal(size=(300, 12)) + 0.3
    r = anisotropy(x, n_pairs=5000, seed=7, block_rows=64)
    i, j = random_pairs(300, 5000, 7)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    full = unit @ unit.T
    expected = full[i, j]
    assert r["mean_cosine"] == pytest.approx(expected.mean(), abs=1e-12)
    assert r["std_cosine"] == pytest.approx(expected.std(), abs=1e-12)
    ratio = np.linalg.norm(x.mean(axis=0)) / np.linalg.norm(x, axis=1).mean()
    assert r["mean_vector_norm_ratio"] == pytest.approx(ratio, rel=1e-12)


def test_pairs_are_distinct_rows_and_cover_all_rows():
    i, j = random_pairs(5, 20000, 0)
    assert (i != j).all()
    assert set(i.tolist()) == set(j.tolist()) == set(range(5))
    # each ordered pair of distinct rows is about equally likely: 20000 / 20 = 1000
    counts = np.bincount(i * 5 + j, minlength=25).reshape(5, 5)
    off_diagonal = counts[~np.eye(5, dtype=bool)]
    assert off_diagonal.min() > 850 and off_diagonal.max() < 1150


def test_seed_determines_the_result():
    x = np.random.default_rng(3).normal(size=(500, 8))
    assert anisotropy(x, n_pairs=300, seed=1) == anisotropy(x, n_pairs=300, seed=1)
    assert anisotropy(x, n_pairs=300, seed=1) != anisotropy(x, n_pairs=300, seed=2)


def test_block_size_does_not_change_results():
    x = np.random.default_rng(4).normal(size=(1000, 8)).astype(np.float32)
    a, b = anisotropy(x, block_rows=4096), anisotropy(x, block_rows=33)
    assert a["mean_cosine"] == pytest.approx(b["mean_cosine"], abs=1e-12)
    assert a["mean_vector_norm_ratio"] == pytest.approx(b["mean_vector_norm_ratio"], rel=1e-10)


def test_zero_vectors_have_cosine_zero_and_ratio_is_bounded():
    x = np.array([[0.0, 0.0], [1.0, 0.0]])
    assert pair_cosines(x, [0], [1]).tolist() == [0.0]
    assert mean_vector_norm_ratio(np.zeros((3, 2))) == 0.0


@pytest.mark.parametrize(
    ("x", "kwargs", "match"),
    [
        (np.ones(5), {}, "2-D"),
        (np.ones((1, 3)), {}, "at least 2 rows"),
        (np.ones((4, 3)), {"n_pairs": 0}, "n_pairs must be an integer >= 1"),
        (np.ones((4, 3)), {"seed": -1}, "seed must be an integer >= 0"),
        (np.array([[1.0, np.nan], [1.0, 2.0]]), {}, "NaN"),
        (np.array([["a", "b"], ["c", "d"]]), {}, "real numbers"),
    ],
)
def test_bad_arguments_raise_config_error(x, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        anisotropy(x, **kwargs)
