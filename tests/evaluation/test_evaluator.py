"""Aggregation, protocols and the STS evaluator on the tiny model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from embedkit.data import get_task, load_task
from embedkit.errors import ConfigError
from embedkit.evaluation import (
    PRIMARY_METRIC,
    STSEvaluator,
    aggregate,
    get_protocol,
    pair_scores,
    score_splits,
)


def test_aggregate_by_hand():
    per = {
        "A": {"valid": {"spearman": 0.2, "pearson": 0.1, "n_pairs": 100},
              "test": {"spearman": 0.6, "pearson": 0.5, "n_pairs": 300}},
        "B": {"test": {"spearman": 0.9, "pearson": 0.8, "n_pairs": 10}},
    }
    m = aggregate(per)
    assert m["A/valid/spearman"] == 0.2 and m["A/test/n_pairs"] == 300
    assert m["A/avg/spearman"] == pytest.approx(0.4)
    assert m["A/w-avg/spearman"] == pytest.approx((0.2 * 100 + 0.6 * 300) / 400)  # 0.5
    assert m["A/w-avg/pearson"] == pytest.approx((0.1 * 100 + 0.5 * 300) / 400)
    assert m["B/avg/spearman"] == m["B/w-avg/spearman"] == 0.9
    assert m["avg/spearman"] == pytest.approx((0.4 + 0.9) / 2)
    assert m["avg/pearson"] == pytest.approx((0.3 + 0.8) / 2)
    assert PRIMARY_METRIC == "avg/spearman"


def test_aggregate_nan_makes_the_means_nan():
    """An undefined score is never dropped from a mean (issue 9, item 7): the mean is NaN."""
    per = {"A": {"test": {"spearman": float("nan"), "pearson": float("nan"), "n_pairs": 5}},
           "B": {"test": {"spearman": 0.5, "pearson": 0.4, "n_pairs": 5}}}
    with pytest.warns(UserWarning, match=r"A/test: Spearman is undefined \(NaN\)"):
        m = aggregate(per)
    assert math.isnan(m["A/avg/spearman"]) and m["B/avg/spearman"] == 0.5
    assert math.isnan(m["avg/spearman"])


def test_protocols():
    pawsx, afqmc, stsb = get_task("PAWSX"), get_task("AFQMC"), get_task("STS-B")
    w, c = get_protocol("whitening"), get_protocol("C-MTEB")
    assert (w.max_length(pawsx, 512), w.max_length(stsb, 512)) == (128, 64)
    assert (c.max_length(pawsx, 512), c.max_length(stsb, 256)) == (512, 256)
    assert w.max_length(stsb, 512, override=32) == 32
    assert w.splits(afqmc) == c.splits(afqmc) == ("valid",)
    assert w.splits(stsb) == ("test",) and w.splits(stsb, ("valid",)) == ("valid",)
    with pytest.raises(ConfigError, match="unknown protocol 'mteb'; valid: whitening, cmteb"):
        get_protocol("mteb")


def test_score_splits_with_a_hand_embedding(spec_file):
    data = load_task(str(spec_file))
    rng = np.random.default_rng(0)
    table = {}

    def embed(sents):
        return np.array([table.setdefault(s, rng.normal(size=4)) for s in sents])

    m = score_splits({"tiny-sts": data}, embed)
    s = data["test"]
    ref = pair_scores(embed(s.sentences1), embed(s.sentences2), s.labels)
    assert m["tiny-sts/test/spearman"] == ref["spearman"] == m["avg/spearman"]
    assert m["tiny-sts/test/n_pairs"] == 40


def test_sts_evaluator_on_the_tiny_model(tiny_encoder, spec_file):
    ev = STSEvaluator([str(spec_file)])
    assert ev.primary_metric == "avg/spearman"
    m = ev(tiny_encoder, pooling="last-avg")
    assert set(m) == {f"tiny-sts/{s}/{k}" for s in ("test", "avg", "w-avg")
                      for k in ("spearman", "pearson")} | {"tiny-sts/test/n_pairs",
                                                           "avg/spearman", "avg/pearson"}
    s = ev.data["tiny-sts"]["test"]
    e1 = tiny_encoder.encode(s.sentences1, "last-avg", max_length=64)
    e2 = tiny_encoder.encode(s.sentences2, "last-avg", max_length=64)
    ref = pair_scores(e1, e2, s.labels)
    assert m["tiny-sts/test/spearman"] == pytest.approx(ref["spearman"], abs=1e-12)
    assert m["avg/spearman"] == m["tiny-sts/avg/spearman"] == m["tiny-sts/test/spearman"]
    assert m["tiny-sts/test/n_pairs"] == 40
    # a transform is applied to the vectors before scoring
    flipped = ev(tiny_encoder, pooling="last-avg", transform=lambda v: -v)
    assert flipped["avg/spearman"] == pytest.approx(m["avg/spearman"], abs=1e-12)
    named = STSEvaluator([str(spec_file)], name="dev")
    assert named.primary_metric == "dev/avg/spearman"
    assert named.primary_metric in named(tiny_encoder, pooling="cls")
