"""Per-pair predictions on the tiny model: the files hold what the bench scored."""

from __future__ import annotations

import json

import pytest

from embedkit.errors import ConfigError
from embedkit.evaluation import STSEvaluator
from embedkit.postprocess import parse_post
from embedkit.runs.bench import run_bench
from embedkit.runs.predictions import (
    bench_predictions,
    has_pyarrow,
    read_predictions,
    write_columns,
    write_predictions,
)


def test_write_predictions_matches_the_evaluator(tiny_encoder, spec_file, tmp_path):
    ev = STSEvaluator([str(spec_file)])
    metrics = ev(tiny_encoder, "cls")
    out = write_predictions(tmp_path, ev, tiny_encoder, "cls", fmt="jsonl")
    info = out["tiny-sts"]["test"]
    assert info["n_pairs"] == 40
    assert info["spearman"] == pytest.approx(metrics["tiny-sts/test/spearman"], abs=1e-12)
    cols = read_predictions(info["path"])
    assert info["path"].endswith("cls/tiny-sts/test.jsonl")
    assert cols["i"] == list(range(40))
    split = ev.data["tiny-sts"]["test"]
    assert cols["sentence1"] == split.sentences1 and cols["label"] == split.labels.tolist()
    assert set(cols) == {"i", "sentence1", "sentence2", "label", "cosine", "label_rank",
                         "cosine_rank"}


def test_per_task_transform(tiny_encoder, spec_file, tmp_path):
    ev = STSEvaluator([str(spec_file)])
    sents = ev.sentences("tiny-sts")
    pipe = parse_post("whiten:k=8").fit(tiny_encoder.encode(sents, "cls", max_length=64))
    want = ev(tiny_encoder, "cls", transform=pipe.transform)["tiny-sts/test/spearman"]
    out = write_predictions(tmp_path, ev, tiny_encoder, "cls", fmt="jsonl",
                            transform={"tiny-sts": pipe.transform}, row="cls + w")
    assert out["tiny-sts"]["test"]["spearman"] == pytest.approx(want, abs=1e-12)
    assert "cls+w" in out["tiny-sts"]["test"]["path"]


def test_bench_predictions_every_row(tiny_encoder, spec_file, tmp_path):
    record = run_bench(tiny_encoder, ["cls", "last-avg"], [str(spec_file)],
                       post=["whiten:k=8", "pca:k=4,norm"])
    summary = bench_predictions(tmp_path, tiny_encoder, record, fmt="jsonl")
    assert set(summary["rows"]) == set(record["results"])
    for label, by_task in summary["rows"].items():
        info = by_task["tiny-sts"]["test"]
        assert info["spearman"] == pytest.approx(info["record_spearman"], abs=1e-12), label
    saved = json.loads((tmp_path / "predictions.json").read_text())
    assert set(saved["rows"]) == set(record["results"])


def test_bench_predictions_refuses_other_records(tiny_encoder, tmp_path):
    with pytest.raises(ConfigError) as e:
        bench_predictions(tmp_path, tiny_encoder, {"kind": "sweep"})
    assert e.value.param == "record"


@pytest.mark.skipif(not has_pyarrow(), reason="pyarrow is not installed")
def test_parquet(tmp_path):
    cols = {"i": [0, 1], "sentence1": ["一", "二"], "label": [1.0, 0.0], "cosine": [0.5, 0.25]}
    path = write_columns(cols, tmp_path / "x" / "test")
    assert path.suffix == ".parquet"
    assert read_predictions(path) == cols


def test_unknown_format(tmp_path):
    with pytest.raises(ConfigError) as e:
        write_columns({"i": [0]}, tmp_path / "t", fmt="csv")
    assert e.value.param == "fmt"

