"""The export cache: made once and reused, rebuilt when damaged or stale, never trusted blindly."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from embedkit.encoders.config import EncoderConfig
from embedkit.encoders.export import check_export, export_key, export_name

pytestmark = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None,
                                reason="onnxruntime not installed")


def _only_export(root):
    folders = [p for p in (root / "exports").iterdir() if p.is_dir()]
    assert len(folders) == 1
    return folders[0]


def _graph_stamp(root):
    graph = _only_export(root) / "model.onnx"
    st = graph.stat()
    return st.st_ino, st.st_mtime_ns


def test_export_is_reused(tiny_model_dir, tmp_path):
    first = EncoderConfig(str(tiny_model_dir), backend="onnx", cache_dir=str(tmp_path)).build_model()
    folder = _only_export(tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["key"]["backend"] == "onnx" and manifest["num_hidden"] == 3
    assert set(manifest["files"]) == {"model.onnx"} and manifest["has_pooler"] is True
    stamp = _graph_stamp(tmp_path)
    second = EncoderConfig(str(tiny_model_dir), backend="onnx", cache_dir=str(tmp_path)).build_model()
    assert _graph_stamp(tmp_path) == stamp  # the same file: not exported again
    np.testing.assert_array_equal(first.encode(["猫"]), second.encode(["猫"]))


def _key(root):
    return json.loads((_only_export(root) / "manifest.json").read_text())["key"]


def test_corrupted_export_is_rebuilt(tiny_model_dir, tmp_path):
    ref = EncoderConfig(str(tiny_model_dir), backend="onnx", cache_dir=str(tmp_path)).build_model().encode(["猫"])
    graph = _only_export(tmp_path) / "model.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF   # one flipped byte in the weights
    graph.write_bytes(bytes(data))
    assert check_export(_only_export(tmp_path), _key(tmp_path)) == (
        "model.onnx does not match its checksum")
    again = EncoderConfig(str(tiny_model_dir), backend="onnx", cache_dir=str(tmp_path)).build_model()
    assert check_export(_only_export(tmp_path), _key(tmp_path)) is None  # rebuilt whole
    np.testing.assert_allclose(again.encode(["猫"]), ref, atol=1e-6)


def test_truncated_export_is_rebuilt(tiny_model_dir, tmp_path):
    EncoderConfig(str(tiny_model_dir), backend="onnx", cache_dir=str(tmp_path)).build_model()
    graph = _only_export(tmp_path) / "model.onnx"
    graph.write_bytes(graph.read_bytes()[:1000])
    enc = EncoderConfig(str(tiny_model_dir), backend="onnx", cache_dir=str(tmp_path)).build_model()
    assert enc.encode(["猫"]).shape == (1, 32)
    assert check_export(_only_export(tmp_path), _key(tmp_path)) is None


def test_missing_manifest_is_rebuilt(tiny_model_dir, tmp_path):
    EncoderConfig(str(tiny_model_dir), backend="onnx", cache_dir=str(tmp_path)).build_model()
    (_only_export(tmp_path) / "manifest.json").unlink()
    assert check_export(_only_export(tmp_path), {}) == "no manifest"
    EncoderConfig(str(tiny_model_dir), backend="onnx", cache_dir=str(tmp_path)).build_model()
    assert (_only_export(tmp_path) / "manifest.json").is_file()


def test_stale_export_is_not_used(tiny_model_dir, tmp_path):
    EncoderConfig(str(tiny_model_dir), backend="onnx", cache_dir=str(tmp_path)).build_model()
    folder = _only_export(tmp_path)
    key = json.loads((folder / "manifest.json").read_text())["key"]
    assert check_export(folder, key) is None
    newer = {**key, "versions": {**key["versions"], "onnxruntime": "99.0"}}
    assert check_export(folder, newer) == "made for another model, backend or library version"
    assert export_name(newer) != folder.name  # another version exports into another folder


def test_export_key_names_what_makes_the_graph():
    a = export_key("sha256:a", "onnx", "none", versions={"onnxruntime": "1"})
    names = {export_name(export_key(m, b, q, versions={"onnxruntime": "1"}))
             for m in ("sha256:a", "sha256:b") for b in ("onnx", "openvino")
             for q in ("none", "int8")}
    assert len(names) == 8 and export_name(a).startswith("onnx-none-")
