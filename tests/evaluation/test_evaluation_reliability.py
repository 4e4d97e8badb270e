"""Reliability of STS scoring (issue 9, item 7): an undefined Spearman (constant labels or
constant cosines) is said, and every average that includes it is NaN, never a mean of the rest."""

from __future__ import annotations

import math

import numpy as np
import pytest

from embedkit.data import PairSplit
from embedkit.evaluation import UndefinedScoreWarning, aggregate, pair_scores, score_splits
from embedkit.reports.bench import format_table

R = pytest.mark.reliability


def _split(task, split, labels):
    n = len(labels)
    return PairSplit(task, split, "-", "", [f"a{i}" for i in range(n)],
                     [f"b{i}" for i in range(n)], np.asarray(labels, dtype=np.float64))


def _embed(sents):
    """A vector per sentence: varied cosines between a_i and b_i."""
    return np.array([[1.0, int(s[1:]) * (0.7 if s[0] == "a" else 0.2)] for s in sents])


@pytest.mark.reliability("9.7", "constant labels: the across-task avg is NaN and a warning "
                                "names the task and split")
def test_constant_labels_make_the_average_nan():
    data = {"GOOD": {"test": _split("GOOD", "test", [0, 1, 2, 3, 4])},
            "FLAT": {"test": _split("FLAT", "test", [1, 1, 1, 1, 1])}}
    with pytest.warns(UndefinedScoreWarning, match=r"FLAT/test: Spearman is undefined "
                                                  r"\(constant labels\)"):
        m = score_splits(data, _embed)
    assert not math.isnan(m["GOOD/test/spearman"]) and not math.isnan(m["GOOD/avg/spearman"])
    assert math.isnan(m["FLAT/test/spearman"]) and math.isnan(m["FLAT/avg/spearman"])
    assert math.isnan(m["avg/spearman"]) and math.isnan(m["avg/pearson"])


@pytest.mark.reliability("9.7", "one undefined split makes the task's avg over splits NaN")
def test_undefined_split_makes_the_task_average_nan():
    per = {"T": {"valid": {"spearman": 0.5, "pearson": 0.5, "n_pairs": 10},
                 "test": {"spearman": float("nan"), "pearson": float("nan"), "n_pairs": 10,
                          "undefined": "constant cosine similarities"}}}
    with pytest.warns(UndefinedScoreWarning, match="T/test: Spearman is undefined "
                                                   r"\(constant cosine similarities\)"):
        m = aggregate(per)
    assert m["T/valid/spearman"] == 0.5
    assert math.isnan(m["T/avg/spearman"]) and math.isnan(m["T/w-avg/spearman"])
    assert math.isnan(m["avg/spearman"])


@pytest.mark.reliability("9.7", "constant cosines are reported as the reason")
def test_constant_cosines_reason():
    same = np.ones((4, 3))
    r = pair_scores(same, same, [0, 1, 2, 3])
    assert math.isnan(r["spearman"]) and r["undefined"] == "constant cosine similarities"
    r = pair_scores(np.eye(3), np.ones((3, 3)), [2, 2, 2])
    assert r["undefined"] == "constant labels"
    assert "undefined" not in pair_scores(np.eye(3), np.ones((3, 3)) + np.diag([0, 1, 3]),
                                          [0, 1, 2])


@pytest.mark.reliability("9.7", "the bench table shows '-' for undefined scores and says why "
                                "in its footer")
def test_table_footer_says_why():
    nan = float("nan")
    rec = {"settings": {"tasks": ["A", "B"], "splits": {"A": ["test"], "B": ["test"]}},
           "results": {"cls": {"A": {"test": {"spearman": 0.5}},
                               "B": {"test": {"spearman": nan, "undefined": "constant labels"}},
                               "avg": {"spearman": nan}}},
           "undefined": [{"row": "cls", "task": "B", "split": "test",
                          "reason": "constant labels"}]}
    lines = format_table(rec).splitlines()
    assert lines[1].split() == ["cls", "50.00", "-", "-"]
    assert lines[2:] == ["", "-: undefined. B/test: Spearman is undefined (constant labels); "
                             "the averages that include it are undefined too (rows: cls)"]
    md = format_table(rec, markdown=True).splitlines()
    assert md[2] == "| cls | 50.00 | - | - |"
    assert md[-1].startswith("- B/test: Spearman is undefined (constant labels)")
