"""The speed report: workers, FLOPs, targets, and an end-to-end run on the tiny model."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from bench_speed import Engine, SpeedOptions, Worker, default_engines, main, run_speed
from speed_cost import flops_per_layer_token, flops_per_sentence, gemm_peak
from speed_report import best, render, targets

HAVE_ORT = importlib.util.find_spec("onnxruntime") is not None


def test_flops_count_the_dense_products_and_attention():
    # m3e-small's shape: 4 x (4 d^2 + 2 d ff) multiply-adds = 25.2 MFLOP per token before attention
    per_token = 4 * flops_per_layer_token(512, 2048, tokens=1)
    assert per_token == pytest.approx(2 * 4 * (4 * 512 ** 2 + 2 * 512 * 2048 + 2 * 512))
    assert 25.1e6 < per_token < 25.3e6


def test_flops_per_sentence_on_the_tiny_model(tiny_model_dir):
    # hidden 32, intermediate 64, 2 layers; a 3-token and a 5-token sentence
    expected = (3 * 2 * flops_per_layer_token(32, 64, 3) + 5 * 2 * flops_per_layer_token(32, 64, 5)) / 2
    assert flops_per_sentence(str(tiny_model_dir), [3, 5]) == pytest.approx(expected)


def test_gemm_peak_is_measured():
    runs = gemm_peak(1, n=256, repeats=2)
    assert len(runs) == 2 and all(r > 0.1 for r in runs)


def test_every_engine_is_listed_once():
    names = [e.name for e in default_engines(SpeedOptions())]
    assert len(names) == len(set(names)) == 11
    assert {e.precision for e in default_engines(SpeedOptions())} == {"fp32", "int8"}
    only = default_engines(SpeedOptions(engines=("embedkit torch fp32",)))
    assert [e.name for e in only] == ["embedkit torch fp32"]


def _record(ek_sps: float, st_sps: float, delta: float = 0.0) -> dict:
    def row(engine, precision, sps, d):
        return {"engine": engine, "precision": precision, "sentences_per_second": sps,
                "gflops": sps * 0.4, "peak_mb": 500.0, "load_seconds": 1.0,
                "spearman": {"ATEC": 0.3 + d}, "spearman_delta": {"ATEC": d},
                "max_cosine_gap": 1e-7 if precision == "fp32" else 1e-3}
    return {"engines": {"sentence-transformers torch": row("st", "fp32", st_sps, 0.0),
                        "embedkit torch fp32": row("embedkit", "fp32", ek_sps, 0.0),
                        "embedkit onnx int8": row("embedkit", "int8", 2 * st_sps, delta)},
            "gemm": {"gflops": 200.0, "runs": [200.0], "threads": 2}}


def test_targets_say_met_and_not_met():
    met = targets(_record(ek_sps=460, st_sps=400, delta=0.001))
    assert "1.15x the fastest sentence-transformers fp32" in met[0] and "target 1.15x: met" in met[0]
    assert "92% of the measured GEMM rate, target 80%: met" in met[0]
    assert "2.00x sentence-transformers torch, target 1.8x: met" in met[1]
    assert "target 0.3: met" in met[1]
    missed = targets(_record(ek_sps=400, st_sps=400, delta=-0.005))
    assert "1.00x" in missed[0] and "NOT met" in missed[0]
    assert "largest Spearman change 0.50 points, target 0.3: NOT met" in missed[1]
    assert best(_record(1, 2)["engines"], "embedkit", "int8") == "embedkit onnx int8"


def test_worker_answers_over_its_pipe(tiny_model_dir, tmp_path):
    sentences = tmp_path / "s.json"
    sentences.write_text(json.dumps(["一个人在切洋葱。", "猫"], ensure_ascii=False))
    spec = {"engine": "embedkit", "backend": "torch", "threads": 1, "batch_size": 8,
            "max_length": 32, "model_path": str(tiny_model_dir)}
    import sys

    w = Worker(Engine("t", "embedkit", "torch"), spec, sys.executable, tmp_path / "w.log")
    assert w.started["loaded"] is True and w.started["load_seconds"] > 0
    assert w.ask({"cmd": "run", "sentences": str(sentences)})["n"] == 2
    w.ask({"cmd": "vectors", "sentences": str(sentences), "out": str(tmp_path / "v.npy")})
    assert np.load(tmp_path / "v.npy").shape == (2, 32)
    assert w.close()["peak_mb"] > 10


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_ORT, reason="onnxruntime not installed")
def test_run_speed_end_to_end_on_the_tiny_model(tiny_model_dir, shared_data_dir, tmp_path):
    opts = SpeedOptions(model=str(tiny_model_dir), sentences=40, batch_size=8, max_length=32,
                        threads=1, rounds=2, spearman_pairs=10, data_dir=str(shared_data_dir),
                        engines=("embedkit torch fp32", "embedkit onnx fp32"))
    from startup_probe import startup_profile

    rec = run_speed(opts, command="python benchmarks/bench_speed.py --sentences 40",
                    startup=lambda: startup_profile(opts.model, opts.data_dir, pairs=5))
    eng = rec["engines"]
    assert set(eng) == {"embedkit torch fp32", "embedkit onnx fp32"}
    for e in eng.values():
        assert len(e["seconds"]) == 2 and e["sentences_per_second"] > 0 and e["gflops"] > 0
        assert set(e["spearman"]) == {"ATEC", "BQ", "LCQMC", "PAWSX", "STS-B"}
    onnx = eng["embedkit onnx fp32"]
    assert onnx["max_cosine_gap"] < 1e-4
    assert all(abs(d) < 2e-4 for d in onnx["spearman_delta"].values())
    assert rec["gemm"]["gflops"] > 0 and rec["startup"]["code"] == 0
    assert any(t.startswith("fp32 backends agree") for t in rec["targets"])
    md = render(rec)
    assert md.startswith("# Encoding speed") and "| embedkit onnx fp32 | fp32 |" in md
    assert "## Start-up" in md
    # the script re-renders the same report from the record, measuring nothing
    path, out = tmp_path / "speed.json", tmp_path / "again" / "speed.md"
    path.write_text(json.dumps(rec), encoding="utf-8")
    assert main(["--from-record", str(path), "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == md
    assert json.loads(out.with_suffix(".json").read_text(encoding="utf-8")) == rec
