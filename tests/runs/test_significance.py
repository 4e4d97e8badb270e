"""compare --paired: a paired bootstrap over the predictions files bench writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedkit.cli.main import main
from embedkit.errors import ConfigError
from embedkit.evaluation.bootstrap import paired_bootstrap
from embedkit.runs.predictions import read_predictions
from embedkit.runs.significance import compare_predictions


def test_paired_cli_on_bench_predictions(tiny_model_dir, spec_file, tmp_path, capsys):
    pred = tmp_path / "pred"
    assert main(["bench", "--model", str(tiny_model_dir), "--tasks", str(spec_file),
                 "--pooling", "cls,mean", "--no-cache", "--predictions", str(pred),
                 "--predictions-format", "jsonl", "--ci", "200", "--output",
                 str(tmp_path / "r.json")]) == 0
    rec = json.loads((tmp_path / "r.json").read_text())
    assert rec["results"]["cls"]["tiny-sts"]["test"]["ci"]["spearman"]["n_resamples"] == 200
    capsys.readouterr()
    assert main(["compare", "--paired", str(pred / "cls"), str(pred / "last-avg"),
                 "--resamples", "300"]) == 0
    out = capsys.readouterr().out
    assert "tiny-sts/test" in out and ("yes" in out or "no (noise)" in out)
    rows = compare_predictions(pred / "cls", pred / "last-avg", n_resamples=300)
    a = read_predictions(next((pred / "cls" / "tiny-sts").iterdir()))
    b = read_predictions(next((pred / "last-avg" / "tiny-sts").iterdir()))
    ref = paired_bootstrap("spearman", a["cosine"], b["cosine"], a["label"], n_resamples=300)
    assert rows[0]["diff"] == pytest.approx(ref["diff"]) and rows[0]["low"] == ref["low"]
    assert rows[0]["significant"] == ref["significant"] and rows[0]["n_pairs"] == 40
    assert rows[0]["value_a"] - rows[0]["value_b"] == pytest.approx(rows[0]["diff"])


def test_other_data_is_refused(tmp_path):
    for name, labels in (("a", [0, 1, 2]), ("b", [0, 1, 1])):
        f = tmp_path / name / "T" / "test.jsonl"
        f.parent.mkdir(parents=True)
        f.write_text("".join(json.dumps({"i": i, "label": y, "cosine": float(np.sin(i))}) + "\n"
                             for i, y in enumerate(labels)))
    with pytest.raises(ConfigError, match="do not hold the same pairs"):
        compare_predictions(tmp_path / "a", tmp_path / "b")
    with pytest.raises(ConfigError, match="no such predictions"):
        compare_predictions(tmp_path / "a", tmp_path / "c")
