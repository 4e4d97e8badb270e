"""Pair classification with a threshold, as mteb's pair classification scores it.

For binary-labelled pairs (ATEC, BQ, LCQMC, PAWSX, AFQMC): the best accuracy over thresholds
and that threshold, the best F1 with its precision, recall and threshold, and the average
precision (scikit-learn's), for a similarity where higher means more alike (cosine, dot) or a
distance where lower does (euclidean). Like mteb 2, a threshold never splits tied scores; the
threshold is the midpoint between two neighbouring scores; a pair is predicted positive when
its similarity is above the threshold (its distance below).

:func:`calibrated_scores` is the honest version: the thresholds are chosen on one split
(``valid``) and applied to another (``test``).

>>> s = classification_scores([0.9, 0.8, 0.3, 0.2], [1, 1, 0, 0])
>>> s["accuracy"], round(s["accuracy_threshold"], 2), s["f1"], s["ap"]
(1.0, 0.55, 1.0, 1.0)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from embedkit.errors import ConfigError
from embedkit.evaluation.metrics import similarity_scores

__all__ = ["SIMILARITIES", "average_precision", "best_accuracy", "best_f1",
           "calibrated_scores", "classification_scores", "pair_similarities", "threshold_scores"]

#: similarity -> whether a higher value means more alike
SIMILARITIES = {"cosine": True, "dot": True, "euclidean": False}


def _sorted(scores: Any, labels: Any, high: bool) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if s.shape != y.shape or s.ndim != 1:
        raise ConfigError(f"scores and labels must be two lists of one length, got {s.shape} "
                          f"and {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ConfigError("pair classification needs 0/1 labels")
    order = np.argsort(-s if high else s, kind="stable")
    return s[order], y[order]


def best_accuracy(scores: Any, labels: Any, high: bool = True) -> tuple[float, float]:
    """``(accuracy, threshold)``: the best accuracy of a threshold between two distinct
    neighbouring scores (mteb's ``_find_best_acc_and_threshold``)."""
    s, y = _sorted(scores, labels, high)
    n = len(y)
    if n < 2:
        return 0.0, -1.0
    pos = np.cumsum(y)[:-1]
    neg_left = (n - y.sum()) - np.cumsum(1 - y)[:-1]
    acc = (pos + neg_left) / n
    valid = s[:-1] != s[1:]
    if not valid.any():
        return 0.0, -1.0
    i = int(np.argmax(np.where(valid, acc, -1.0)))
    return float(acc[i]), float((s[i] + s[i + 1]) / 2)


def best_f1(scores: Any, labels: Any, high: bool = True) -> tuple[float, float, float, float]:
    """``(f1, precision, recall, threshold)`` of the best-F1 threshold (mteb's
    ``_find_best_f1_and_threshold``)."""
    s, y = _sorted(scores, labels, high)
    n, n_pos = len(y), float(y.sum())
    if n < 2 or n_pos == 0:
        return 0.0, 0.0, 0.0, 0.0
    tp = np.cumsum(y)[:-1]
    precision = tp / np.arange(1, n)
    recall = tp / n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(tp > 0, 2 * precision * recall / (precision + recall), 0.0)
    f1 = np.where(s[:-1] != s[1:], f1, 0.0)
    i = int(np.argmax(f1))
    if f1[i] <= 0:
        return 0.0, 0.0, 0.0, 0.0
    return float(f1[i]), float(precision[i]), float(recall[i]), float((s[i] + s[i + 1]) / 2)


def average_precision(scores: Any, labels: Any, high: bool = True) -> np.ndarray | float:
    """Average precision as scikit-learn computes it (tied scores one step); ``scores`` and
    ``labels`` may be (B, n) matrices (one value per row, vectorised for the bootstrap).

    >>> average_precision([0.9, 0.5, 0.5, 0.1], [1, 0, 1, 0])
    0.8333333333333333
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    one = s.ndim == 1
    s, y = np.atleast_2d(s), np.atleast_2d(y)
    key = -s if high else s
    order = np.argsort(key, axis=1, kind="stable")
    s_sorted = np.take_along_axis(key, order, axis=1)
    y_sorted = np.take_along_axis(y, order, axis=1)
    tp = np.cumsum(y_sorted, axis=1)
    n_pos = tp[:, -1:]
    last = np.ones_like(s_sorted, dtype=bool)
    last[:, :-1] = s_sorted[:, :-1] != s_sorted[:, 1:]  # the end of a group of tied scores
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(last, tp / n_pos, 0.0)
        precision = tp / np.arange(1, s.shape[1] + 1)
    prev = np.maximum.accumulate(recall, axis=1)
    prev = np.concatenate([np.zeros((s.shape[0], 1)), prev[:, :-1]], axis=1)
    ap = np.sum(np.where(last, (recall - prev) * precision, 0.0), axis=1)
    ap = np.where(n_pos[:, 0] > 0, ap, np.nan)
    return float(ap[0]) if one else ap


def threshold_scores(scores: Any, labels: Any, threshold: float, high: bool = True
                     ) -> dict[str, float]:
    """Accuracy, precision, recall and F1 of one fixed threshold."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64) == 1
    pred = s > threshold if high else s < threshold
    tp = float(np.sum(pred & y))
    precision = tp / pred.sum() if pred.sum() else 0.0
    recall = tp / y.sum() if y.sum() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return {"accuracy": float(np.mean(pred == y)), "precision": float(precision),
            "recall": float(recall), "f1": float(f1)}


def classification_scores(scores: Any, labels: Any, high: bool = True) -> dict[str, float]:
    """mteb's pair-classification metrics of one similarity on one split (thresholds chosen
    on the same split: an optimistic, oracle choice)."""
    acc, acc_t = best_accuracy(scores, labels, high)
    f1, p, r, f1_t = best_f1(scores, labels, high)
    return {"accuracy": acc, "accuracy_threshold": acc_t, "f1": f1, "precision": p,
            "recall": r, "f1_threshold": f1_t, "ap": float(average_precision(scores, labels,
                                                                              high))}


def calibrated_scores(select: tuple[Any, Any], evaluate: tuple[Any, Any], high: bool = True
                      ) -> dict[str, Any]:
    """Thresholds chosen on ``select`` = (scores, labels), reported on ``evaluate``:
    ``accuracy`` at the best-accuracy threshold of ``select``, ``f1`` / ``precision`` /
    ``recall`` at its best-F1 threshold, ``ap`` (threshold-free), and ``oracle``: mteb's
    numbers with the thresholds chosen on ``evaluate`` itself."""
    acc_t = best_accuracy(*select, high)[1]
    f1_t = best_f1(*select, high)[3]
    at_acc = threshold_scores(*evaluate, acc_t, high)
    at_f1 = threshold_scores(*evaluate, f1_t, high)
    return {"accuracy": at_acc["accuracy"], "accuracy_threshold": acc_t,
            "f1": at_f1["f1"], "precision": at_f1["precision"], "recall": at_f1["recall"],
            "f1_threshold": f1_t, "ap": float(average_precision(*evaluate, high)),
            "oracle": classification_scores(*evaluate, high)}


def pair_similarities(emb1: np.ndarray, emb2: np.ndarray,
                      names: tuple[str, ...] = ("cosine",)) -> dict[str, np.ndarray]:
    """Per pair: ``cosine`` (as STS ranks it), ``dot`` and ``euclidean`` (a distance), as
    :func:`~embedkit.evaluation.metrics.similarity_scores` computes them."""
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name not in SIMILARITIES:
            raise ConfigError(f"unknown similarity {name!r}; one of {', '.join(SIMILARITIES)}",
                              param="similarities")
        sim = similarity_scores(emb1, emb2, name)
        out[name] = sim if SIMILARITIES[name] else -sim  # euclidean: the distance itself
    return out
