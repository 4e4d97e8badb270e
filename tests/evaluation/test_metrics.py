"""Cosine, Spearman and Pearson, checked against scipy and by hand."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from embedkit.evaluation import cosine_scores, l2_normalize, pair_scores, pearson, spearman


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spearman_with_heavy_ties_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 4, size=200).astype(float)      # heavy ties in the scores
    y = rng.integers(0, 2, size=200).astype(float)      # binary labels
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)


def test_spearman_uses_average_ranks_for_ties():
    # ranks of [1, 2, 2, 3] are [1, 2.5, 2.5, 4]; binary labels [0, 0, 1, 1] -> [1.5, 1.5, 3.5, 3.5]
    rx, ry = np.array([1, 2.5, 2.5, 4]), np.array([1.5, 1.5, 3.5, 3.5])
    expected = np.corrcoef(rx, ry)[0, 1]
    assert spearman([1, 2, 2, 3], [0, 0, 1, 1]) == pytest.approx(expected, abs=1e-12)
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8, abs=1e-12)


def test_pearson_by_hand():
    x, y = np.array([1.0, 2.0, 4.0]), np.array([1.0, 3.0, 2.0])
    xc, yc = x - x.mean(), y - y.mean()
    assert pearson(x, y) == pytest.approx(xc @ yc / math.sqrt((xc @ xc) * (yc @ yc)), abs=1e-12)


def test_constant_or_short_input_is_nan_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(spearman([1, 1, 1], [0, 1, 2]))
        assert math.isnan(pearson([0, 1, 2], [3, 3, 3]))
        assert math.isnan(spearman([1], [1]))


def test_cosine():
    a = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    b = np.array([[1.0, 1.0], [0.0, 1.0], [-3.0, -4.0]])
    np.testing.assert_allclose(cosine_scores(a, b), [1 / math.sqrt(2), 1.0, -1.0], atol=1e-12)
    # float32 input is computed in float64
    assert cosine_scores(a.astype(np.float32), b.astype(np.float32)).dtype == np.float64


def test_cosine_with_zero_vectors_is_zero_not_nan():
    a = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    b = np.array([[1.0, 2.0], [0.0, 0.0], [0.0, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = cosine_scores(a, b)
        normed = l2_normalize(a)
    assert out.tolist() == [0.0, 0.0, 0.0]
    assert normed.tolist() == [[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]


def test_cosine_shape_mismatch():
    with pytest.raises(ValueError, match="shapes differ"):
        cosine_scores(np.zeros((2, 3)), np.zeros((3, 3)))


def test_pair_scores():
    rng = np.random.default_rng(0)
    e1, e2 = rng.normal(size=(30, 8)), rng.normal(size=(30, 8))
    labels = rng.integers(0, 6, size=30)
    r = pair_scores(e1, e2, labels)
    cos = (e1 * e2).sum(1) / np.linalg.norm(e1, axis=1) / np.linalg.norm(e2, axis=1)
    assert r["n_pairs"] == 30
    assert r["spearman"] == pytest.approx(stats.spearmanr(cos, labels)[0], abs=1e-12)
    assert r["pearson"] == pytest.approx(stats.pearsonr(cos, labels)[0], abs=1e-12)


def test_identical_pairs_tie_exactly_whatever_the_order_of_operations():
    # Identical vectors must score exactly 1.0 so that scipy's average-rank rule ties them;
    # float noise in the last bits would otherwise order them arbitrarily.
    from embedkit.evaluation.metrics import cosine_scores, spearman

    rng = np.random.default_rng(3)
    a = rng.normal(size=(200, 64)).astype(np.float32)
    b = a + rng.normal(scale=0.3, size=a.shape).astype(np.float32)
    b[:40] = a[:40]  # 40 identical pairs
    labels = rng.integers(0, 2, size=200).astype(float)
    cos = cosine_scores(a, b)
    assert set(cos[:40].tolist()) == {1.0}
    q, _ = np.linalg.qr(rng.normal(size=(64, 64)))  # a rotation: cosines equal in exact math
    ra, rb = a.astype(np.float64) @ q, b.astype(np.float64) @ q
    assert spearman(cosine_scores(ra, rb), labels) == spearman(cos, labels)


def test_similarity_scores_as_sentence_transformers():
    """dot, negated euclidean and manhattan (issue 20 item 5), on the pairs' rows."""
    import torch
    from sentence_transformers import SimilarityFunction
    from sentence_transformers.util import (
        pairwise_dot_score,
        pairwise_euclidean_sim,
        pairwise_manhattan_sim,
    )

    from embedkit.evaluation.metrics import pair_scores, similarity_scores

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(30, 8)), rng.normal(size=(30, 8))
    ta, tb = torch.tensor(a), torch.tensor(b)
    for name, fn in (("dot", pairwise_dot_score), ("euclidean", pairwise_euclidean_sim),
                     ("manhattan", pairwise_manhattan_sim)):
        np.testing.assert_allclose(similarity_scores(a, b, name), fn(ta, tb).numpy(), atol=1e-9)
    assert SimilarityFunction("dot").value == "dot"
    labels = rng.integers(0, 5, size=30)
    assert pair_scores(a, b, labels, "dot")["spearman"] != pair_scores(a, b, labels)["spearman"]


@pytest.mark.parametrize("seed", [3, 4])
def test_continuous_scores_and_nan_match_scipy(seed):
    """Spearman and Pearson are computed in numpy as scipy computes them (no scipy.stats
    import on a run's path): continuous scores against graded labels, and NaN propagated."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=500)
    y = np.round(x + rng.normal(size=500), 0)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-13)
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-13)
    x[3] = np.nan
    assert math.isnan(spearman(x, y)) and math.isnan(pearson(x, y))


def test_metrics_import_no_scipy():
    import subprocess
    import sys

    code = "import sys, embedkit.evaluation.metrics; print('scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60, env=_env())
    assert out.stdout.strip() == "False"


def _env() -> dict:
    """This checkout first on the path (the installed package may be another checkout)."""
    import os
    from pathlib import Path

    import embedkit

    root = str(Path(embedkit.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
