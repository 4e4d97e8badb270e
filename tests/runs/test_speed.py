"""The ``speed`` block of bench, sweep and index eval records (issue 23.5): sentences/s of a
real encode, the backend, precision and hardware fingerprint, and no number when every vector
came from the cache. Each run builds its encoder (fresh counters) over the test's cache."""

from __future__ import annotations

import json

import pytest

from embedkit.encoders import EncoderConfig
from embedkit.runs.bench import run_bench, run_bench_models
from embedkit.runs.index_eval import CostOptions, IndexEvalOptions, QualityOptions, run_index_eval
from embedkit.runs.record import speed_block
from embedkit.runs.sweep import SweepOptions, run_sweep


def _check_measured(rec: dict) -> None:
    speed = rec["speed"]
    assert speed["status"] == "measured" and speed["sentences_per_second"] > 0
    assert speed["encoded"] == rec["timings"]["encoded"] > 0
    assert speed["seconds_encoding"] == rec["timings"]["seconds_encoding"]
    assert speed["sentences_per_second"] == rec["timings"]["sentences_per_second"]
    assert (speed["backend"], speed["precision"], speed["device"]) == ("torch", "fp32", "cpu")
    assert speed["threads"] == rec["model"]["threads"] == rec["machine"]["threads"]
    assert speed["hardware"] == rec["machine"]["fingerprint"] and len(speed["hardware"]) == 12
    assert json.loads(json.dumps(rec["speed"])) == rec["speed"]


def _check_cached(rec: dict) -> None:
    speed = rec["speed"]
    assert speed["status"] == "cached" and speed["sentences_per_second"] is None
    assert speed["encoded"] == 0 and speed["cache_hits"] == rec["timings"]["cache_hits"] > 0


def test_bench_speed_measured_then_cached(tiny_model_dir, spec_file):
    first = run_bench(EncoderConfig(str(tiny_model_dir)), ["cls"], [str(spec_file)])
    _check_measured(first)
    again = run_bench(EncoderConfig(str(tiny_model_dir)), ["cls"], [str(spec_file)])  # same cache
    _check_cached(again)
    assert again["speed"]["hardware"] == first["speed"]["hardware"]


def test_bench_models_speed_per_model(tiny_model_dir, spec_file):
    rec = run_bench_models([str(tiny_model_dir)] * 2, ["cls"], [str(spec_file)])
    assert "speed" not in rec  # each model's block has its own
    _check_measured(rec["models"][0])
    _check_cached(rec["models"][1])  # the same model again: every vector from the cache


def test_sweep_speed_measured_then_cached(wt_model_dir, wt_spec_file):
    opts = SweepOptions(beta=[1.0], gamma=[0.5], k=[12])
    _check_measured(run_sweep(EncoderConfig(str(wt_model_dir)), ["last-avg"], [str(wt_spec_file)],
                              opts))
    _check_cached(run_sweep(EncoderConfig(str(wt_model_dir)), ["last-avg"], [str(wt_spec_file)],
                            opts))


def test_index_eval_speed_measured_then_cached(rx_model_dir, rx_spec_file):
    opts = IndexEvalOptions(quality=QualityOptions(tasks=(str(rx_spec_file),)),
                            cost=CostOptions(corpus_tasks=(f"{rx_spec_file}:test",),
                                             factories=("Flat",), n_queries=5,
                                             single_queries=2), faiss_threads=1)
    _check_measured(run_index_eval(EncoderConfig(str(rx_model_dir), pooling="cls"), opts))
    _check_cached(run_index_eval(EncoderConfig(str(rx_model_dir), pooling="cls"), opts))


@pytest.mark.parametrize(("dtype", "quantize", "precision"), [
    ("float32", "none", "fp32"), ("bfloat16", "none", "bf16"), ("float32", "int8", "int8"),
    ("float32", "int8-static", "int8-static"), ("bfloat16", "int8-static", "int8-static")])
def test_precision_from_the_description(dtype, quantize, precision):
    rec = {"model": {"backend": "openvino", "dtype": dtype, "quantize": quantize, "threads": 2,
                     "device": "cpu"}, "machine": {"fingerprint": "abcdefabcdef"}}
    block = speed_block(None, rec)
    assert (block["backend"], block["precision"], block["threads"]) == ("openvino", precision, 2)
    assert block["status"] == "not measured" and block["sentences_per_second"] is None
