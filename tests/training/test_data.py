"""Training data: hard negatives from labelled pairs, the forms of a pairs item."""

from __future__ import annotations

import json

import pytest

from embedkit.errors import ConfigError
from embedkit.training.data import Pairs, infonce_examples, load_pairs


def test_infonce_examples_pick_hard_negatives():
    p = Pairs(["a", "a", "b", "c"], ["a2", "x", "b2", "c2"], [1.0, 0.0, 1.0, 4.0])
    ex, info = infonce_examples(p, 1.0, hard_negatives=True, negative_max=0.0, seed=0)
    assert ex == [("a", "a2", "x"), ("b", "b2", None), ("c", "c2", None)]
    assert info == {"positives": 3, "with_hard_negative": 1}
    ex4, _ = infonce_examples(p, 4.0, hard_negatives=False, negative_max=0.0, seed=0)
    assert ex4 == [("c", "c2", None)]


def test_pairs_argument_forms(tmp_path, simcse_pairs):
    split, what, max_len = load_pairs(str(simcse_pairs))
    assert split.n_pairs == 40 and what.startswith("file:") and max_len == 64
    (tmp_path / "d.tsv").write_text("一\t二\t3\n", encoding="utf-8")
    spec = tmp_path / "t.json"
    spec.write_text(json.dumps({"name": "t", "files": {"train": "d.tsv", "valid": "d.tsv"},
                                "max_length": 50}), encoding="utf-8")
    split, what, max_len = load_pairs(f"{spec}:dev")
    assert what == "task:t:valid" and split.labels.tolist() == [3.0] and max_len == 50
    with pytest.raises(ConfigError, match="no test split"):
        load_pairs(f"{spec}:test")
    with pytest.raises(ConfigError, match="no such file"):
        load_pairs("missing/pairs.tsv")
