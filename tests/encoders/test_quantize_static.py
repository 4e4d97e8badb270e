"""Static int8 (``quantize="int8-static"``): the declared calibration sample, its place in the
export key and the identity, ONNX Runtime and OpenVINO exports close to float32, the exclusion
search recorded in the manifest, and the quality gate that refuses and keeps the export aside."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import onnx
import pytest

from embedkit.encoders import EncoderConfig
from embedkit.encoders import calibration as cm
from embedkit.encoders import quantize_static as qs
from embedkit.encoders.calibration import (
    CALIBRATION_SIZE,
    HELDOUT_SIZE,
    CalibrationSet,
    resolve_calibration,
)
from embedkit.encoders.export import export_key, export_name
from embedkit.encoders.facts import ModelFacts
from embedkit.errors import ConfigError, DataError
from tests.conftest import cli_error, source_sentences

HAVE = {"onnx": importlib.util.find_spec("onnxruntime") is not None,
        "openvino": importlib.util.find_spec("nncf") is not None}
BACKENDS = [pytest.param(b, marks=pytest.mark.skipif(not HAVE[b], reason=f"{b} not installed"))
            for b in ("onnx", "openvino")]
SENTENCES = list(dict.fromkeys(source_sentences()))


@pytest.fixture(scope="module")
def calibration_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("calibration") / "sentences.txt"
    path.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def export_root(tmp_path_factory):
    return tmp_path_factory.mktemp("static-exports")


def _static(model, backend, calibration, root, **kw):
    return EncoderConfig(str(model), backend=backend, quantize="int8-static",
                         calibration=str(calibration), cache_dir=str(root), **kw).build_model()


def _cosines(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_a_file_calibrates_all_but_its_held_out_quarter(calibration_file):
    got = resolve_calibration(str(calibration_file))
    n = len(SENTENCES)
    assert len(got.heldout) == n // 4 and len(got.sentences) == n - n // 4
    assert not set(got.heldout) & set(got.sentences)
    assert set(got.heldout) | set(got.sentences) == set(SENTENCES)
    assert got.source == f"file:{calibration_file.resolve()}"
    assert resolve_calibration(str(calibration_file)) == got  # seeded: the same draw


def test_a_tiny_file_is_refused(tmp_path):
    path = tmp_path / "few.txt"
    path.write_text("猫\n狗\n猫\n", encoding="utf-8")
    with pytest.raises(DataError, match="2 distinct sentence"):
        resolve_calibration(str(path))


def test_task_split_calibration(spec_file):
    got = resolve_calibration(f"{spec_file}:test")
    assert got.source == "task:tiny-sts:test"
    assert len(got.sentences) + len(got.heldout) == len(SENTENCES)
    with pytest.raises(ConfigError, match="calibration .*no valid split"):
        resolve_calibration(f"{spec_file}:valid")


def test_default_sample_draws_from_each_task_never_test(shared_data_dir, monkeypatch):
    monkeypatch.setenv("EMBEDKIT_DATA", str(shared_data_dir))
    got = resolve_calibration(None)
    assert len(got.sentences) == CALIBRATION_SIZE and len(got.heldout) == HELDOUT_SIZE
    assert not set(got.heldout) & set(got.sentences)
    assert got.source.startswith("tasks:") and "test" not in got.source
    assert "STS-B:train" in got.source and "BQ:valid" in got.source


def test_no_data_for_the_default_sample_says_what_to_pass():
    with pytest.raises(ConfigError, match="give calibration a file of sentences"):
        resolve_calibration(None)


def test_the_key_holds_the_calibration():
    a = CalibrationSet(("一", "二"), ("三",), "file:a.txt")
    b = CalibrationSet(("一", "四"), ("三",), "file:a.txt")
    names = {export_name(export_key("sha256:m", "onnx", "int8-static", versions={},
                                    calibration=cm.static_part("int8-static", s)[1]))
             for s in (a, b)}
    assert len(names) == 2 and all(n.startswith("onnx-int8-static-") for n in names)
    assert cm.static_part("int8", a) == (None, None)
    key = export_key("sha256:m", "onnx", "int8-static", versions={},
                     calibration=cm.static_part("int8-static", a)[1])
    assert key["calibration"]["sha256"] == a.sha256 and key["calibration"]["gate_mean"] == cm.GATE_MEAN


def test_the_identity_digest_follows_the_set_and_the_thresholds(monkeypatch):
    a = CalibrationSet(("一", "二"), ("三",), "file:a.txt")
    digest = cm.static_digest(a)
    assert cm.static_digest(CalibrationSet(("一", "二"), ("三",), "file:b.txt")) != digest
    monkeypatch.setattr(cm, "GATE_MEAN", 0.5)  # another gate may choose another graph
    assert cm.static_digest(a) != digest


def test_calibration_without_int8_static_is_refused(tiny_model_dir, calibration_file):
    with pytest.raises(ConfigError, match="only used by quantize int8-static"):
        EncoderConfig(str(tiny_model_dir), backend="onnx", quantize="int8",
                      calibration=str(calibration_file))


def test_the_cli_says_it_in_one_line(capsys, tiny_model_dir, spec_file, calibration_file):
    line = cli_error(capsys, ["bench", "--model", str(tiny_model_dir), "--tasks", str(spec_file),
                              "--backend", "onnx", "--calibration", str(calibration_file)])
    assert line.startswith("--calibration: ") and "int8-static" in line


def test_candidates_and_their_patterns():
    none, ffn_out, ffn = qs.candidates()
    assert not none.patterns
    assert ffn_out.matches("/model/encoder/layer.0/output/dense/MatMul")
    assert not ffn_out.matches("/model/encoder/layer.0/attention/output/dense/MatMul")
    assert not ffn_out.matches("/model/encoder/layer.0/intermediate/dense/MatMul")
    assert ffn.matches("/model/encoder/layer.11/intermediate/dense/MatMul")
    assert ffn.matches("/model/layers.5/mlp/down_proj/MatMul")
    assert not ffn.matches("/model/encoder/layer.1/attention/self/query/MatMul")


@pytest.mark.parametrize("backend", BACKENDS)
def test_static_export_is_close_to_float32_and_recorded(backend, tiny_model_dir,
                                                         calibration_file, export_root):
    enc = _static(tiny_model_dir, backend, calibration_file, export_root)
    ref = EncoderConfig(str(tiny_model_dir)).build_model().encode(SENTENCES[:20], "last-avg")
    got = enc.encode(SENTENCES[:20], "last-avg")
    assert _cosines(got, ref).min() > 0.999
    cal = resolve_calibration(str(calibration_file))
    assert enc.identity.endswith(f"backend={backend};quantize=int8-static;"
                                 f"calibration={cm.static_digest(cal)}")
    d = enc.describe()
    assert d["quantize"] == "int8-static" and d["calibration"]["sha256"] == cal.sha256
    manifest = json.loads((enc.graph.folder / "manifest.json").read_text())
    gate = manifest["gate"]
    assert manifest["key"]["calibration"]["sha256"] == cal.sha256
    assert gate["chosen"] == "none" and gate["passed"] is True
    assert gate["candidates"][0]["exclude"] == "none" and len(gate["candidates"]) == 1
    assert gate["agreement"]["mean"] >= cm.TARGET_MEAN and gate["n_heldout"] == len(cal.heldout)
    assert manifest["calibration"]["n_sentences"] == len(cal.sentences)
    assert "calibration sentences" in manifest["steps"][-1]
    if backend == "onnx":  # activations quantised too: QuantizeLinear on the MatMuls' inputs
        graph = onnx.load(str(enc.graph.graph))
        assert sum(n.op_type == "QuantizeLinear" for n in graph.graph.node) >= 16


def test_another_calibration_is_another_export_and_identity(tiny_model_dir, calibration_file,
                                                           spec_file, tmp_path):
    a = _static(tiny_model_dir, "onnx", calibration_file, tmp_path)
    b = _static(tiny_model_dir, "onnx", f"{spec_file}:test", tmp_path)
    assert a.identity != b.identity and a.graph.folder != b.graph.folder
    assert b.describe()["calibration"]["source"] == "task:tiny-sts:test"
    # the Ray driver plans with ModelFacts: the same identity, nothing exported
    facts = ModelFacts(EncoderConfig(str(tiny_model_dir), backend="onnx", quantize="int8-static",
                                     calibration=str(calibration_file)))
    assert facts.identity == a.identity


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_gate_refuses_and_keeps_the_export_aside(backend, tiny_model_dir,
                                                     calibration_file, tmp_path, monkeypatch):
    monkeypatch.setattr(cm, "GATE_MEAN", 1.5)   # no graph agrees this well
    monkeypatch.setattr(cm, "TARGET_MEAN", 1.5)
    with pytest.raises(qs.QualityGateError) as caught:
        _static(tiny_model_dir, backend, calibration_file, tmp_path)
    msg = str(caught.value)
    assert "below the gate's 1.5 mean" in msg and "quantize int8" in msg
    assert "\n" not in msg
    rejected = [p for p in (tmp_path / "exports" / "rejected").iterdir() if p.is_dir()]
    assert len(rejected) == 1 and str(rejected[0]) in msg
    assert not [p for p in (tmp_path / "exports").iterdir()
                if p.is_dir() and p.name != "rejected"]  # nothing usable was kept
    kept = json.loads((rejected[0] / "manifest.json").read_text())
    # every candidate tried, the feed-forward MatMuls of both layers left in float32 last
    assert [(c["exclude"], c["nodes"]) for c in kept["gate"]["candidates"]] == [
        ("none", 0), ("feed-forward output MatMuls", 2), ("feed-forward MatMuls", 4)]
    assert kept["gate"]["passed"] is False and kept["refused"].startswith("the int8-static")
    graph = "model.onnx" if backend == "onnx" else "model.xml"
    assert (rejected[0] / graph).is_file() and not (rejected[0] / "raw.onnx").exists()
    # the same export again: refused at once from what was kept, nothing quantised
    monkeypatch.setattr(qs, "search", lambda *a, **k: pytest.fail("quantised again"))
    with pytest.raises(qs.QualityGateError, match="refused before; remove .*rejected"):
        _static(tiny_model_dir, backend, calibration_file, tmp_path)


def test_a_refusal_is_one_line_at_the_cli(capsys, tiny_model_dir, spec_file, calibration_file,
                                          monkeypatch):
    monkeypatch.setattr(cm, "GATE_MEAN", 1.5)
    line = cli_error(capsys, ["bench", "--model", str(tiny_model_dir), "--tasks", str(spec_file),
                              "--backend", "onnx", "--quantize", "int8-static",
                              "--calibration", str(calibration_file)], before=None)
    assert line.startswith("--calibration: the int8-static export agrees with float32")
    assert "kept in" in line


def test_bench_runs_int8_static_and_records_the_calibration(capsys, tiny_model_dir, spec_file,
                                                             calibration_file, tmp_path):
    from embedkit.cli.main import main

    out = tmp_path / "bench.json"
    assert main(["bench", "--model", str(tiny_model_dir), "--tasks", str(spec_file),
                 "--backend", "onnx", "--quantize", "int8-static", "--calibration",
                 str(calibration_file), "--pooling", "last-avg", "--output", str(out)]) == 0
    assert "[onnx int8-static]" in capsys.readouterr().out
    record = json.loads(out.read_text())
    cal = resolve_calibration(str(calibration_file))
    assert record["settings"]["quantize"] == "int8-static"
    assert record["settings"]["calibration"]["sha256"] == cal.sha256
    assert record["settings"]["calibration"]["source"] == f"file:{calibration_file.resolve()}"
    assert record["model"]["calibration"]["n_heldout"] == len(cal.heldout)
