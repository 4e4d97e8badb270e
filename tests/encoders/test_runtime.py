"""The ONNX Runtime and OpenVINO backends against torch on the tiny model: every pooling, masking,
int8, thread settings, identity and the cache namespace."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from embedkit.encoders import EncoderConfig
from embedkit.errors import ConfigError

HAVE = {"onnx": importlib.util.find_spec("onnxruntime") is not None,
        "openvino": importlib.util.find_spec("openvino") is not None}
BACKENDS = [pytest.param(b, marks=pytest.mark.skipif(not HAVE[b], reason=f"{b} not installed"))
            for b in ("onnx", "openvino")]
POOLINGS = ["cls", "pooler", "pooler-tanh", "last-avg", "first-last-avg", "layers-avg:0,2",
            "layers-avg:1"]
SENTENCES = ["一个人在切洋葱。", "男人切洋葱。", "一只熊猫宝宝滑下滑梯。", "猫", "今天天气很好，我们去公园散步吧"]


@pytest.fixture(scope="module")
def export_root(tmp_path_factory):
    return tmp_path_factory.mktemp("exports")


@pytest.fixture(scope="module")
def torch_vectors(tiny_model_dir):
    return EncoderConfig(str(tiny_model_dir)).build_model().encode_multi(SENTENCES, POOLINGS)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_pooling_matches_torch(backend, tiny_model_dir, export_root, torch_vectors):
    enc = EncoderConfig(str(tiny_model_dir), backend=backend, cache_dir=str(export_root)).build_model()
    got = enc.encode_multi(SENTENCES, POOLINGS)
    assert set(got) == set(torch_vectors)
    for name, ref in torch_vectors.items():
        assert got[name].dtype == np.float32 and got[name].shape == ref.shape
        assert _cosines(got[name], ref).min() >= 0.9999, name
        assert np.abs(got[name] - ref).max() < 1e-4, name


@pytest.mark.parametrize("backend", BACKENDS)
def test_padding_does_not_change_a_vector(backend, tiny_model_dir, export_root):
    enc = EncoderConfig(str(tiny_model_dir), backend=backend, cache_dir=str(export_root)).build_model()
    alone = enc.encode_multi(["猫"], ["last-avg", "first-last-avg", "cls"])
    batched = enc.encode_multi(["猫", SENTENCES[-1], SENTENCES[2]],
                               ["last-avg", "first-last-avg", "cls"], batch_size=3)
    for name in alone:
        np.testing.assert_allclose(batched[name][0], alone[name][0], atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_int8_runs_close_and_is_named(backend, tiny_model_dir, export_root, torch_vectors):
    enc = EncoderConfig(str(tiny_model_dir), backend=backend, quantize="int8",
                      cache_dir=str(export_root)).build_model()
    got = enc.encode(SENTENCES, "last-avg")
    assert _cosines(got, torch_vectors["last-avg"]).min() > 0.9
    assert enc.identity.endswith(f"backend={backend};quantize=int8")
    d = enc.describe()
    assert d["backend"] == backend and d["quantize"] == "int8" and d["dtype"] == "float32"
    assert any("int8" in step.lower() or "INT8" in step for step in d["export_steps"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_identity_and_cache_namespace_differ_by_backend(backend, tiny_model_dir, tmp_path):
    cache = str(tmp_path / "cache")
    encoders = {
        (b, q): EncoderConfig(str(tiny_model_dir), backend=b, quantize=q, cache_dir=cache,
                              progress=False).build()
        for b, q in [("torch", "none"), (backend, "none"), (backend, "int8")]}
    ids = {k: e.identity for k, e in encoders.items()}
    assert len(set(ids.values())) == 3
    assert ids[("torch", "none")] == ids[(backend, "none")].split(";backend=")[0]
    spaces = {k: e.namespace("last-avg", 32)
              for k, e in encoders.items()}
    assert len(set(spaces.values())) == 3
    for e in encoders.values():  # each fills its own namespace
        e.encode(SENTENCES[:2], "last-avg", max_length=32)
    assert len(encoders[(backend, "int8")].cache.namespaces()) == 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_token_budget_and_threads(backend, tiny_model_dir, export_root, torch_vectors):
    enc = EncoderConfig(str(tiny_model_dir), backend=backend, cache_dir=str(export_root),
                      token_budget=12, threads=1).build_model()
    got = enc.encode(SENTENCES, "last-avg")  # many small batches, returned in input order
    np.testing.assert_allclose(got, torch_vectors["last-avg"], atol=1e-4)
    assert enc.describe()["threads"] == 1 and enc.describe()["token_budget"] == 12


def test_torch_token_budget_keeps_order(tiny_model_dir, torch_vectors):
    enc = EncoderConfig(str(tiny_model_dir), token_budget=10).build_model()
    np.testing.assert_allclose(enc.encode(SENTENCES, "cls"), torch_vectors["cls"], atol=1e-6)


def test_pooler_refused_without_pooler_weights(tiny_model_no_pooler_dir, export_root):
    if not HAVE["onnx"]:
        pytest.skip("onnxruntime not installed")
    enc = EncoderConfig(str(tiny_model_no_pooler_dir), backend="onnx", cache_dir=str(export_root)).build_model()
    assert enc.encode(["猫"], "cls").shape == (1, 32)
    with pytest.raises(ConfigError, match="pooler"):
        enc.encode(["猫"], "pooler")


@pytest.mark.parametrize("kwargs, match", [
    ({"backend": "torch", "quantize": "int8"}, "onnx or openvino"),
    ({"backend": "tensorrt"}, "unknown backend"),
    ({"backend": "onnx", "quantize": "int4"}, "unknown quantisation"),
    ({"threads": 0}, "threads"),
])
def test_config_refuses_impossible_settings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        EncoderConfig("m3e-small", **kwargs)


def test_onnx_refuses_bfloat16_and_another_device(tiny_model_dir, export_root, monkeypatch):
    from embedkit import provenance

    monkeypatch.setattr(provenance, "native_bf16_flags", lambda: ["avx512_bf16"])
    with pytest.raises(ConfigError, match="no bfloat16 kernels on x86; use the openvino backend"):
        EncoderConfig(str(tiny_model_dir), backend="onnx", dtype="bfloat16")
    with pytest.raises(ConfigError, match="float16 on backend openvino is refused"):
        EncoderConfig(str(tiny_model_dir), backend="openvino", dtype="float16")
    with pytest.raises(ConfigError, match="another device needs the torch backend"):
        EncoderConfig(str(tiny_model_dir), backend="onnx", device="cuda",
                      cache_dir=str(export_root)).build_model()


def test_bfloat16_refused_on_a_cpu_without_it(tiny_model_dir, monkeypatch):
    from embedkit import provenance

    monkeypatch.setattr(provenance, "native_bf16_flags", lambda: [])
    with pytest.raises(ConfigError, match="bfloat16 on this cpu is refused"):
        EncoderConfig(str(tiny_model_dir), backend="openvino", dtype="bfloat16")


@pytest.mark.skipif(not HAVE["openvino"], reason="openvino not installed")
def test_openvino_runs_bfloat16_where_the_cpu_has_it(tiny_model_dir, export_root, torch_vectors):
    from embedkit import provenance

    if not provenance.native_bf16_flags():
        pytest.skip("this cpu has no native bfloat16")
    fp32 = EncoderConfig(str(tiny_model_dir), backend="openvino",
                         cache_dir=str(export_root)).build_model()
    enc = EncoderConfig(str(tiny_model_dir), backend="openvino", dtype="bf16",
                        cache_dir=str(export_root)).build_model()
    d = enc.describe()
    assert d["dtype"] == "bfloat16" and d["inference_precision"] == "bf16"
    assert fp32.describe()["inference_precision"] == "f32"
    assert enc.identity == fp32.identity + ";dtype=bfloat16"
    assert d["export"] == fp32.describe()["export"]  # one export, another runtime precision
    got = enc.encode(SENTENCES, "last-avg")
    assert got.dtype == np.float32
    cos = _cosines(got, torch_vectors["last-avg"])
    assert cos.min() > 0.99 and np.abs(got - torch_vectors["last-avg"]).max() > 1e-6
