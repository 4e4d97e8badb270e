"""Pair classification against mteb's own implementation and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest

from embedkit.evaluation.classification import (
    average_precision,
    best_accuracy,
    best_f1,
    calibrated_scores,
    classification_scores,
    pair_similarities,
    threshold_scores,
)


def _case(seed=0, n=400, ties=True):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = y * 0.3 + rng.normal(0.5, 0.2, n)
    if ties:
        s = np.round(s, 2)  # many tied scores, as binary-ish cosines give
    return s, y


@pytest.mark.parametrize("high", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_mteb(seed, high):
    pc = pytest.importorskip("mteb.abstasks.pair_classification")
    task = pc.AbsTaskPairClassification.__new__(pc.AbsTaskPairClassification)
    s, y = _case(seed)
    s = s if high else -s
    ref = task._compute_metrics_values(list(s), y, high)
    ours = classification_scores(s, y, high)
    for key in ("accuracy", "f1", "precision", "recall", "ap"):
        assert ours[key] == pytest.approx(ref[key], abs=1e-12)
    assert best_accuracy(s, y, high) == pytest.approx(
        task._find_best_acc_and_threshold(list(s), y, high))
    assert best_f1(s, y, high) == pytest.approx(task._find_best_f1_and_threshold(list(s), y, high))


def test_average_precision_matches_sklearn_rows():
    from sklearn.metrics import average_precision_score

    s, y = _case(2)
    rows_s, rows_y = np.stack([s, s[::-1], np.round(s, 1)]), np.stack([y, y[::-1], y])
    ours = average_precision(rows_s, rows_y)
    ref = [average_precision_score(yy, ss) for ss, yy in zip(rows_s, rows_y, strict=True)]
    assert ours == pytest.approx(ref, abs=1e-12)


def test_calibrated_threshold_is_chosen_on_the_other_split():
    sel, ev = _case(3), _case(4)
    out = calibrated_scores(sel, ev)
    t = best_accuracy(*sel)[1]
    assert out["accuracy_threshold"] == t
    assert out["accuracy"] == threshold_scores(*ev, t)["accuracy"]
    assert out["accuracy"] <= out["oracle"]["accuracy"]  # the oracle picks on test itself
    assert out["ap"] == out["oracle"]["ap"]


def test_similarities():
    a = np.array([[3.0, 4.0], [1.0, 0.0]])
    b = np.array([[3.0, 0.0], [0.0, 2.0]])
    sims = pair_similarities(a, b, ("cosine", "dot", "euclidean"))
    assert sims["cosine"].tolist() == pytest.approx([0.6, 0.0])
    assert sims["dot"].tolist() == [9.0, 0.0] and sims["euclidean"].tolist() == pytest.approx(
        [4.0, 5 ** 0.5])
