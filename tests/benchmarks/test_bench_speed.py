"""The speed report through the commands users run: the engines and their flags, processes
timed from outside, the targets and the Markdown on synthetic records, and a smoke run of the
driver on the tiny model."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import speed_worker
import startup_probe
from bench_speed import Bench, SpeedOptions, main, run_engine, sample_pairs, warm_up
from speed_cost import flops_per_layer_token, flops_per_sentence, gemm_peak
from speed_engines import (
    REFERENCE,
    ST_OV_DEFAULT,
    ST_TORCH,
    Engine,
    Shape,
    all_engines,
    embedkit_command,
    encode_argv,
    run_process,
    select_engines,
    shown_command,
)
from speed_profile import op_shares
from speed_report import render, targets

from embedkit.errors import ConfigError

# --------------------------------------------------------------------------------------------
# engines and their command lines


def test_every_engine_is_listed_once_with_its_flags():
    engines = all_engines()
    names = [e.name for e in engines]
    assert len(names) == len(set(names)) == 17
    assert sum(e.engine == "st" for e in engines) == 6
    flags = {e.name: e.flags() for e in engines if e.engine == "embedkit"}
    assert flags == {
        "embedkit torch fp32": ["--backend", "torch"],
        "embedkit torch fp32, batches of 64": ["--backend", "torch", "--token-budget", "0"],
        "embedkit torch bf16": ["--backend", "torch", "--dtype", "bfloat16"],
        "embedkit onnx fp32": ["--backend", "onnx"],
        "embedkit openvino fp32": ["--backend", "openvino"],
        "embedkit openvino bf16": ["--backend", "openvino", "--dtype", "bfloat16"],
        "embedkit onnx int8 (dynamic)": ["--backend", "onnx", "--quantize", "int8"],
        "embedkit openvino int8 (weights)": ["--backend", "openvino", "--quantize", "int8"],
        "embedkit onnx int8-static": ["--backend", "onnx", "--quantize", "int8-static"],
        "embedkit openvino int8-static": ["--backend", "openvino", "--quantize", "int8-static"],
        "embedkit openvino int8-static, bf16 rest": ["--backend", "openvino", "--dtype",
                                                     "bfloat16", "--quantize", "int8-static"],
    }
    st = {e.name: (e.backend, e.precision, e.quantize, e.ov_hint) for e in engines
          if e.engine == "st"}
    assert st[ST_OV_DEFAULT] == ("openvino", "default", "none", None)  # its own default, read back
    assert st["sentence-transformers openvino f32"] == ("openvino", "fp32", "none", "f32")
    assert {e.precision for e in engines} == {"fp32", "bf16", "int8", "default"}


def test_engines_are_chosen_by_name():
    assert [e.name for e in select_engines(("embedkit onnx fp32", REFERENCE))] == [
        REFERENCE, "embedkit onnx fp32"]  # the report's order
    assert [e.token_budget for e in select_engines(()) if e.token_budget is not None] == [0]
    with pytest.raises(ConfigError, match="unknown engine 'embedkit tpu'; the engines: "
                                          "sentence-transformers torch; "):
        select_engines(("embedkit tpu",))


def test_an_embedkit_engine_is_the_encode_command(tmp_path):
    e = Engine("embedkit openvino bf16", "embedkit", "openvino", "bf16", dtype="bfloat16")
    argv = encode_argv(e, Shape("m3e-small", 2, 64, 64), tmp_path / "s.jsonl", tmp_path / "o",
                       tmp_path / "cache")
    assert argv[:3] == embedkit_command() == [sys.executable, "-m", "embedkit"]
    shown = shown_command(argv).replace(str(tmp_path), "WORK")
    assert shown == ("embedkit encode --model m3e-small --backend openvino --dtype bfloat16 "
                     "--threads 2 --batch-size 64 --max-length 64 --pooling last-avg --no-cache "
                     "--cache-dir WORK/cache --corpus WORK/s.jsonl --out WORK/o --overwrite")


def test_a_process_is_timed_from_outside(tmp_path):
    """Wall time, and the peak memory of that child alone (os.wait4); the last error line."""
    code = ("import sys, time; b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); "
            "time.sleep(0.2); sys.stderr.write('noise\\nembedkit: error: it broke\\n'); "
            "sys.exit(2)")
    done = run_process([sys.executable, "-c", code], tmp_path / "p.log")
    assert done.code == 2 and done.wall_s >= 0.2
    assert 300 < done.peak_mb < 600
    assert done.reason() == "embedkit: error: it broke"
    small = run_process([sys.executable, "-c", "print('hi')"], tmp_path / "q.log")
    assert small.code == 0 and small.stdout == "hi\n" and small.peak_mb < 100
    assert small.reason() == "exit status 0"


def test_a_process_past_its_timeout_is_killed(tmp_path):
    done = run_process([sys.executable, "-c", "import time; time.sleep(30)"],
                       tmp_path / "t.log", timeout=0.5)
    assert done.code != 0 and done.wall_s < 10


def test_an_engine_the_installed_embedkit_refuses_is_skipped(tiny_model_dir, tmp_path):
    """A flag value this embedkit does not know (as int8-static before it lands): skipped with
    the command's one error line, no crash."""
    bogus = Engine("embedkit onnx int8-bogus", "embedkit", "onnx", "int8", quantize="int8-bogus")
    (tmp_path / "logs").mkdir()
    corpus = tmp_path / "s.jsonl"
    corpus.write_text('{"text": "一个人在切洋葱。"}\n', encoding="utf-8")
    b = Bench(SpeedOptions(model=str(tiny_model_dir)), tmp_path, corpus, corpus,
              tmp_path / "cache", sys.executable)
    ran, first, skipped = warm_up(b, [bogus])
    assert ran == [] and first == {}
    assert list(skipped) == [bogus.name]
    assert skipped[bogus.name].startswith(
        "embedkit: error: argument --quantize: invalid choice: 'int8-bogus' (choose from ")


def test_the_st_worker_reads_the_precision_openvino_ran_at():
    """sentence-transformers' OpenVINO engine left to its default is labelled with the
    compiled model's INFERENCE_PRECISION_HINT, not with what was asked."""
    def model(name):
        hint = SimpleNamespace(get_type_name=lambda: name)
        req = SimpleNamespace(get_property=lambda key: hint if key == "INFERENCE_PRECISION_HINT"
                              else None)
        return [SimpleNamespace(auto_model=SimpleNamespace(request=req))]
    spec = {"backend": "openvino", "quantize": "none"}
    assert speed_worker.ran_at(model("bf16"), spec) == "bf16"
    assert speed_worker.ran_at(model("f32"), spec) == "fp32"
    assert speed_worker.ran_at([SimpleNamespace()], spec) == "unknown (AttributeError)"
    assert speed_worker.ran_at(None, {"backend": "onnx", "quantize": "int8"}) == "int8"
    assert speed_worker.ran_at(None, {"backend": "torch"}) == "fp32"


def test_the_sentences_are_the_pairs_union(shared_data_dir):
    pairs, sentences = sample_pairs(SpeedOptions(pairs=20, sentences=100,
                                                 data_dir=str(shared_data_dir)))
    assert set(pairs) == {"ATEC", "BQ", "LCQMC", "PAWSX", "STS-B"}
    assert 90 <= len(sentences) <= 100 and sentences == sorted(set(sentences))
    for s in pairs.values():
        assert {*s.sentences1, *s.sentences2} <= set(sentences)
        assert s.n_pairs == len(s.sentences1) == len(s.labels) <= 20
    full, every = sample_pairs(SpeedOptions(pairs=20, data_dir=str(shared_data_dir)))
    assert all(s.n_pairs == 20 for s in full.values()) and len(every) > len(sentences)


# --------------------------------------------------------------------------------------------
# costs


def test_flops_count_the_dense_products_and_attention():
    # m3e-small's shape: 4 x (4 d^2 + 2 d ff) multiply-adds = 25.2 MFLOP per token before attention
    per_token = 4 * flops_per_layer_token(512, 2048, tokens=1)
    assert per_token == pytest.approx(2 * 4 * (4 * 512 ** 2 + 2 * 512 * 2048 + 2 * 512))
    assert 25.1e6 < per_token < 25.3e6


def test_flops_per_sentence_on_the_tiny_model(tiny_model_dir):
    expected = (3 * 2 * flops_per_layer_token(32, 64, 3) + 5 * 2 * flops_per_layer_token(32, 64, 5)) / 2
    assert flops_per_sentence(str(tiny_model_dir), [3, 5]) == pytest.approx(expected)


def test_gemm_peak_is_measured_in_both_precisions():
    assert all(r > 0.1 for r in gemm_peak(1, n=256, repeats=2))
    assert len(gemm_peak(1, n=128, repeats=2, dtype="bfloat16")) == 2


def test_op_shares_rank_types_and_count_the_matrix_products():
    s = op_shares({"MatMul": 2.0, "FullyConnected": 5.0, "Add": 2.0, "Softmax": 1.0}, top=2)
    assert s["top"] == [["FullyConnected", 5.0, 0.5], ["MatMul", 2.0, 0.2]]
    assert s["gemm_share"] == pytest.approx(0.7) and s["seconds"] == 10.0


# --------------------------------------------------------------------------------------------
# targets and the Markdown on a synthetic record


def _row(engine, precision, sps, delta=0.0, **kw):
    d = {"ATEC": delta, "BQ": delta / 2}
    return {"name": "", "engine": engine, "backend": "openvino", "asked": precision,
            "precision": precision, "ran_at": precision, "dtype": "float32", "quantize": "none",
            "token_budget": None, "ov_hint": None, "sentences_per_second": sps,
            "rates": [sps], "wall_s": 50.0, "walls": [50.0], "first_start_s": 12.0,
            "peak_mb": 800.0, "gflops": sps * 0.4, "command": None,
            "spearman": {"ATEC": 0.4 + delta, "BQ": 0.5 + delta / 2},
            "spearman_delta": d, "max_cosine_gap": 1e-7 if precision == "fp32" else 1e-3,
            **kw}


def synthetic(ek32=500.0, ek16=700.0, int8_fast_delta=-0.005) -> dict:
    eng = {
        ST_TORCH: _row("st", "fp32", 320.0),
        "sentence-transformers openvino f32": _row("st", "fp32", 400.0),
        ST_OV_DEFAULT: _row("st", "bf16", 520.0, -0.0003, asked="default", ran_at="bf16"),
        "sentence-transformers onnx int8 (avx512_vnni)": _row("st", "int8", 850.0, -0.006),
        "sentence-transformers openvino int8 (weights)": _row("st", "int8", 750.0, -0.001,
                                                              ran_at="fp32"),
        REFERENCE: _row("embedkit", "fp32", 330.0),
        "embedkit openvino fp32": _row("embedkit", "fp32", ek32, 0.0001),
        "embedkit openvino bf16": _row("embedkit", "bf16", ek16, -0.0004),
        "embedkit onnx int8 (dynamic)": _row("embedkit", "int8", 1500.0, int8_fast_delta),
        "embedkit openvino int8-static": _row("embedkit", "int8", 1300.0, -0.002),
    }
    eng[REFERENCE]["spearman_delta"] = {"ATEC": 0.0, "BQ": 0.0}
    rec = {"kind": "speed", "schema": 2, "command": "python benchmarks/bench_speed.py --out x.md",
           "machine": {"cpu": "AMD EPYC", "cores": 2, "os": "Linux"}, "versions": {},
           "settings": {"model": "m3e-small", "max_length": 64, "batch_size": 64, "threads": 2,
                        "sentences": 17000, "max_sentences": 0, "pairs": 2000, "seed": 0,
                        "rounds": 3},
           "pairs": {"ATEC": 2000, "BQ": 2000}, "engines": eng,
           "skipped": {"embedkit onnx int8-static": "embedkit: error: argument --quantize: "
                                                    "invalid choice: 'int8-static'"},
           "gemm": {"gflops": 160.0, "runs": [160.0], "threads": 2, "bf16_gflops": 320.0},
           "flops": {"per_sentence": 389e6, "mean_tokens": 15.4}, "int8_config": "avx512_vnni",
           "runtimes": {"embedkit": {"openvino": "2026.4.1"},
                        "st": {"sentence-transformers": "5.7.0", "optimum-intel": "1.27.0"}},
           "startup": {"pairs": 30, "wall_s": 3.4, "first_wall_s": 20.0, "import_s": 0.02,
                       "run_s": 3.0, "code": 0, "imported": ["pandas"],
                       "command": "embedkit bench --model m3e-small --tasks <30-pair file> "
                                  "--backend openvino --no-cache (export cached)",
                       "version": {"command": "embedkit --version", "wall_s": 0.3,
                                   "walls": [0.3, 0.3, 0.31], "code": 0}},
           "cold_bench": {"command": "embedkit bench ...", "cache": "empty", "wall_s": 150.0,
                          "code": 0, "peak_mb": 1500.0},
           "profile": {"embedkit openvino fp32": {
               "sentences": 2000, "wall_s": 4.0, "streams": 2,
               "parts": {"tokenise": 0.4, "pad": 0.1, "runtime": 7.0, "pooling": 0.5},
               "ops": {"runtime": "OpenVINO", "top": [["FullyConnected", 4.0, 0.6]],
                       "gemm_share": 0.72, "seconds": 6.6}},
               "embedkit openvino bf16": {"reason": "embedkit: error: no bf16 here"}}}
    rec["targets"] = targets(rec)
    return rec


def test_targets_met():
    t = synthetic(ek32=500.0, ek16=700.0)["targets"]
    assert t[0] == ("fp32: fastest embedkit fp32 within 0.02 points on every set: embedkit "
                    "openvino fp32, largest change 0.010 points; met (1.25x, target 1.25x) x "
                    "the fastest sentence-transformers fp32 (sentence-transformers openvino f32)")
    assert t[1].startswith("bf16: fastest embedkit bf16 within 0.05 points on every set: "
                           "embedkit openvino bf16, largest change 0.040 points; met (2.19x, "
                           "target 2.00x) x sentence-transformers torch fp32")
    # the fastest int8 (0.5 points on ATEC) is over budget: the best within it is measured
    assert t[2].startswith("int8: fastest embedkit int8 within 0.3 points on every set: "
                           "embedkit openvino int8-static, largest change 0.200 points; "
                           "met (1.53x, target 1.50x) x the fastest sentence-transformers int8 "
                           "(sentence-transformers onnx int8 (avx512_vnni)); met (4.06x, target "
                           "4.00x) x sentence-transformers torch")
    assert t[4] == "start: `embedkit --version`: met (0.3 s, target 0.5 s)"
    assert t[5] == "cold `make bench` (empty cache): met (150.0 s, target 180.0 s)"
    assert t[6] == ("fp32 backends agree with fp32 torch: largest 1 - cosine 1.0e-07, target "
                    "1e-04: met")


def test_targets_missed_say_by_how_much():
    t = synthetic(ek32=456.0, ek16=600.0, int8_fast_delta=-0.005)["targets"]
    assert "NOT met (1.14x, target 1.25x: short by 0.11x, 9.6% more sentences/s needed)" in t[0]
    assert t[0].endswith("[profile of embedkit openvino fp32: runtime call 88% of the encoder's "
                         "time, matrix products 72% of its op time; tokenising 5%, padding 1%, "
                         "pooling 6%]")
    assert "[profile" not in t[1]  # the bf16 engine was not profiled: nothing claimed
    assert "NOT met (1.88x, target 2.00x: short by 0.12x, 6.7% more sentences/s needed)" in t[1]
    assert t[3] == ("start: 30-pair bench with a cached export: NOT met (3.4 s, target 3.0 s: "
                    "over by 0.4 s, 13%)")
    rec = synthetic()
    for e in rec["engines"].values():
        if e["engine"] == "embedkit" and e["precision"] == "int8":
            e["spearman_delta"]["BQ"] = -0.004
    assert targets(rec)[2] == (
        "int8: NOT met: no embedkit int8 engine stays within 0.3 points on every set (the "
        "fastest, embedkit onnx int8 (dynamic): 0.50 points on ATEC, over by 0.20)")
    del rec["engines"][REFERENCE]
    for e in rec["engines"].values():
        e["spearman_delta"] = {"ATEC": None, "BQ": None}
    assert "no reference to compare with" in targets(rec)[0]


def test_the_report_renders_a_synthetic_record():
    md = render(synthetic())
    assert md.startswith("# Encoding speed through the commands users run")
    assert "sentences: those of 2000 seeded pairs per test split (seed 0; ATEC 2000, BQ 2000 " \
           "pairs)" in md
    assert ("| embedkit openvino fp32 | fp32 | 500.0 | 50.0 | 12.0 | 1.56x | 1.25x | 200 | 125% "
            "| 800 | 40.01 (+0.01) | 50.01 (+0.01) | - | - | - | 1.0e-07 |") in md
    assert (f"| {ST_OV_DEFAULT}: ran at bf16 | bf16 | 520.0 | 50.0 | 12.0 | 1.62x | 1.00x | 208 "
            "| 65% |") in md  # % of the bf16 GEMM rate
    assert "| sentence-transformers openvino int8 (weights) | int8 (activations fp32) |" in md
    assert ("- embedkit onnx int8-static: embedkit: error: argument --quantize: invalid choice: "
            "'int8-static'") in md
    assert ("- Runtimes: openvino 2026.4.1; sentence-transformers' environment: "
            "sentence-transformers 5.7.0, optimum-intel 1.27.0") in md
    assert "## Targets" in md and "- `embedkit --version`: 0.30 s (median of 3 processes)" in md
    assert "## Cold `make bench`" in md and "150.0 s, exit status 0" in md
    assert ("| embedkit openvino fp32 | 4.00 | 2 | 0.40 s (5%) | 0.10 s (1%) | 7.00 s (88%) | "
            "0.50 s (6%) | 72% of op time |") in md
    assert "- embedkit openvino fp32, OpenVINO op types by time: FullyConnected 60%" in md
    assert "- embedkit openvino bf16: not profiled (embedkit: error: no bf16 here)" in md


def test_an_old_record_is_refused_in_one_line(tmp_path, capsys):
    rec = synthetic()
    del rec["schema"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(rec), encoding="utf-8")
    assert main(["--from-record", str(path), "--out", str(tmp_path / "s.md")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a speed record of the first layout" in err[0]
    assert not (tmp_path / "s.md").exists()


def test_a_synthetic_record_comes_back_from_itself(tmp_path, capsys):
    rec = synthetic()
    path = tmp_path / "speed.json"
    path.write_text(json.dumps(rec), encoding="utf-8")
    out = tmp_path / "again.md"
    assert main(["--from-record", str(path), "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == render(rec)


def test_cold_bench_runs_with_an_empty_cache(tmp_path, monkeypatch):
    """The make-bench command in an empty folder with EMBEDKIT_CACHE empty (here a stand-in
    command that prints where its cache is)."""
    monkeypatch.setattr(startup_probe, "MAKE_BENCH", ["--version"])
    got = startup_probe.cold_bench(str(tmp_path / "data"), tmp_path / "cold")
    assert got["code"] == 0 and got["wall_s"] > 0 and got["command"] == "embedkit --version"
    assert (tmp_path / "cold" / "empty-cache").is_dir()
    assert not any((tmp_path / "cold" / "empty-cache").iterdir())


# --------------------------------------------------------------------------------------------
# the driver, end to end, on the tiny model


@pytest.mark.slow
def test_the_driver_smoke_run_on_the_tiny_model(tiny_model_dir, shared_data_dir, tmp_path,
                                                capsys, monkeypatch):
    monkeypatch.setenv("EMBEDKIT_DATA", str(shared_data_dir))
    out = tmp_path / "speed.md"
    argv = ["--model", str(tiny_model_dir), "--sentences", "60", "--rounds", "1", "--engines",
            "embedkit torch fp32;embedkit onnx fp32", "--no-cold-bench", "--out", str(out)]
    assert main(argv) == 0
    rec = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert rec["schema"] == 2 and rec["settings"]["sentences"] <= 60
    eng = rec["engines"]
    assert set(eng) == {REFERENCE, "embedkit onnx fp32"}
    for e in eng.values():
        assert e["sentences_per_second"] > 0 and e["wall_s"] > 0 and e["peak_mb"] > 50
        assert e["first_start_s"] > 0 and set(e["spearman"]) == set(rec["pairs"])
        assert e["command"].startswith("embedkit encode --model ")
    onnx = eng["embedkit onnx fp32"]
    assert onnx["max_cosine_gap"] < 1e-4 and "--backend onnx" in onnx["command"]
    assert all(d is None or d != d or abs(d) < 2e-4 for d in onnx["spearman_delta"].values())
    assert rec["cold_bench"] is None and rec["startup"]["version"]["code"] == 0
    prof = rec["profile"][max(eng, key=lambda n: eng[n]["sentences_per_second"])]
    assert set(prof["parts"]) == {"tokenise", "pad", "runtime", "pooling"}
    md = out.read_text(encoding="utf-8")
    assert "| embedkit onnx fp32 | fp32 |" in md and "## Start-up" in md
    again = tmp_path / "again" / "speed.md"
    assert main(["--from-record", str(out.with_suffix(".json")), "--out", str(again)]) == 0
    assert again.read_text(encoding="utf-8") == md
    assert Path(str(again.with_suffix(".json"))).is_file()


ST_PYTHON = Path(os.environ.get("EMBEDKIT_ST_PYTHON")
                 or Path(__file__).resolve().parents[2] / ".venv-st" / "bin" / "python")


@pytest.mark.slow
@pytest.mark.skipif(not ST_PYTHON.is_file(), reason="no sentence-transformers environment "
                    "(make .venv-st/.stamp, or EMBEDKIT_ST_PYTHON=PYTHON)")
def test_the_st_worker_runs_its_engines_in_fresh_processes(tiny_model_dir, tmp_path):
    """Prepared once (its export saved in its own folder), then a timed fresh process: its
    rate, wall, peak, the vectors, and the precision OpenVINO really ran at."""
    import shutil

    import numpy as np

    engines = [e for e in all_engines() if e.name in (ST_OV_DEFAULT, ST_TORCH)]
    (tmp_path / "logs").mkdir()
    (tmp_path / "out").mkdir()
    corpus = tmp_path / "s.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n"
                              for t in ["一个人在切洋葱。", "猫", "今天天气很好"]), encoding="utf-8")
    b = Bench(SpeedOptions(model=str(tiny_model_dir), threads=1), tmp_path, corpus, corpus,
              tmp_path / "cache", str(ST_PYTHON))
    for e in engines:
        shutil.copytree(tiny_model_dir, b.st_folder(e))
    ran, first, skipped = warm_up(b, engines)
    assert skipped == {} and len(ran) == 2
    assert first[ST_OV_DEFAULT]["ran_at"] in ("bf16", "fp32")
    assert any((b.st_folder(engines[1]) / "openvino").glob("*.xml"))  # the export was saved
    for e in engines:
        res = run_engine(b, e, warm=False)
        assert res["ok"] and res["sentences_per_second"] > 0 and res["peak_mb"] > 50
        assert np.load(res["vectors"]).shape == (3, 32)
