"""Pooling inside the exported graph: the pooled outputs against torch's poolings on both
runtimes and both padding sides, the graph pruned to them, other poolings through the hidden
states, and a run of the exported backends that imports no torch."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embedkit.encoders import EncoderConfig
from embedkit.encoders.export import GRAPH_POOLINGS, pooled_name
from embedkit.encoders.tokenizer_file import FileTokenizer

HAVE = {"onnx": importlib.util.find_spec("onnxruntime") is not None,
        "openvino": importlib.util.find_spec("openvino") is not None}
BACKENDS = [pytest.param(b, marks=pytest.mark.skipif(not HAVE[b], reason=f"{b} not installed"))
            for b in ("onnx", "openvino")]
POOLED = list(GRAPH_POOLINGS)
SENTENCES = ["一个人在切洋葱。", "男人切洋葱。", "一只熊猫宝宝滑下滑梯。", "猫", "今天天气很好，我们去公园散步吧",
             "A man is playing the guitar."]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def export_root(tmp_path_factory):
    return tmp_path_factory.mktemp("graph-exports")


def _model(kind: str, tiny_model_dir, make_tiny_decoder) -> Path:
    """``bert`` pads right; ``qwen2-left`` / ``qwen2-right`` are decoders padded either side."""
    if kind == "bert":
        return Path(tiny_model_dir)
    return make_tiny_decoder("qwen2", kind.split("-")[1])


@pytest.mark.parametrize("kind", ["bert", "qwen2-left", "qwen2-right"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_pooled_outputs_equal_torch_poolings(backend, kind, tiny_model_dir, make_tiny_decoder,
                                             export_root):
    folder = _model(kind, tiny_model_dir, make_tiny_decoder)
    ref = EncoderConfig(str(folder)).build_model().encode_multi(SENTENCES, POOLED, batch_size=6)
    enc = EncoderConfig(str(folder), backend=backend, cache_dir=str(export_root)).build_model()
    assert enc.padding_side == kind.rsplit("-", 1)[-1] if kind != "bert" else "right"
    got = enc.encode_multi(SENTENCES, POOLED, batch_size=6)   # one padded batch: padding matters
    # cls of a left-padded row is a padding position's output, which torch's attention and the
    # runtime's leave different (no token attends there): compared on the unpadded row only
    full = [len(x) for x in _ids(enc, SENTENCES)[0]]
    unpadded = [i for i, n in enumerate(full) if n == max(full)]
    for name in POOLED:
        assert got[name].dtype == np.float32 and got[name].shape == ref[name].shape
        rows = unpadded if name == "cls" and kind.endswith("left") else slice(None)
        assert np.abs(got[name][rows] - ref[name][rows]).max() < 1e-5, name
    # only the graph pruned to the pooled outputs was compiled and run
    assert list(enc.session._compiled) == [True]
    assert enc.session.outputs() == [pooled_name(p) for p in POOLED]


@pytest.mark.parametrize("backend", BACKENDS)
def test_pruned_session_returns_batch_by_d(backend, tiny_model_dir, export_root):
    enc = EncoderConfig(str(tiny_model_dir), backend=backend,
                        cache_dir=str(export_root)).build_model()
    ids, mask = enc._pad(*_ids(enc, SENTENCES[:3]))
    names = [pooled_name(p) for p in POOLED]
    arrays = enc.session.run(names, {"input_ids": ids, "attention_mask": mask})
    assert [a.shape for a in arrays] == [(3, enc.dim)] * 3
    assert enc.graph.manifest["pooled"] == POOLED


def _ids(enc, texts):
    from embedkit.encoders.base import tokenize_ids

    ids = tokenize_ids(enc.tokenizer, texts, 64, enc.eos_id)
    return ids, list(range(len(ids)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_other_poolings_compile_the_whole_graph_when_asked(backend, tiny_model_dir, export_root):
    enc = EncoderConfig(str(tiny_model_dir), backend=backend,
                        cache_dir=str(export_root)).build_model()
    ref = EncoderConfig(str(tiny_model_dir)).build_model().encode_multi(
        SENTENCES, ["first-last-avg", "cls", "pooler"])
    enc.encode_multi(SENTENCES, ["cls"])
    assert list(enc.session._compiled) == [True]
    got = enc.encode_multi(SENTENCES, ["first-last-avg", "cls", "pooler"])
    assert sorted(enc.session._compiled) == [False, True]   # the whole graph, made on demand
    for name, want in ref.items():
        assert np.abs(got[name] - want).max() < 1e-5, name


def test_pruned_onnx_keeps_only_what_the_outputs_need(tiny_model_dir, export_root):
    pytest.importorskip("onnxruntime")
    import onnx

    from embedkit.encoders.runtime import _pruned_onnx

    enc = EncoderConfig(str(tiny_model_dir), backend="onnx",
                        cache_dir=str(export_root)).build_model()
    full = onnx.load(str(enc.graph.graph))
    pruned = onnx.load_from_string(_pruned_onnx(enc.graph.graph, ["pooled_cls"]))
    assert [o.name for o in pruned.graph.output] == ["pooled_cls"]
    assert len(pruned.graph.node) < len(full.graph.node)
    # the pooler's dense weights feed no pooled output: they are dropped
    assert len(pruned.graph.initializer) < len(full.graph.initializer)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_prompt_left_out_of_the_pooling_reads_the_hidden_states(backend, tiny_model_dir,
                                                                  export_root):
    """The graph pools with the attention mask; a folder's include_prompt=False pools with
    another mask, so those runs take the hidden states and torch's pooling."""
    enc = EncoderConfig(str(tiny_model_dir), backend=backend, prompt="查询：",
                        cache_dir=str(export_root)).build_model()
    enc.include_prompt = False
    ref = EncoderConfig(str(tiny_model_dir), prompt="查询：").build_model()
    ref.include_prompt = False
    got, want = enc.encode(SENTENCES, "last-avg"), ref.encode(SENTENCES, "last-avg")
    assert np.abs(got - want).max() < 1e-5
    assert False in enc.session._compiled


def test_the_tokenizer_file_is_used_where_the_export_found_it_alike(tiny_model_dir,
                                                                     export_root, tmp_path):
    if not HAVE["onnx"]:
        pytest.skip("onnxruntime not installed")
    enc = EncoderConfig(str(tiny_model_dir), backend="onnx",
                        cache_dir=str(export_root)).build_model()
    assert enc.graph.tokenizer_file and isinstance(enc.tokenizer, FileTokenizer)
    # a tokenizer_config.json without a pad token: transformers' BERT class supplies [PAD],
    # tokenizer.json alone cannot, so the export says no and transformers' tokenizer loads
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    cfg_path = folder / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("pad_token", None)
    cfg_path.write_text(json.dumps(cfg))
    other = EncoderConfig(str(folder), backend="onnx", cache_dir=str(export_root)).build_model()
    assert not other.graph.tokenizer_file
    assert not isinstance(other.tokenizer, FileTokenizer)
    np.testing.assert_allclose(other.encode(SENTENCES, "cls"), enc.encode(SENTENCES, "cls"),
                               atol=1e-6)


_PROBE = """
import sys
from embedkit.cli.main import main
code = main(sys.argv[2:])
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[1].split(",")))
print("IMPORTED", ",".join(heavy) or "-", "CODE", code)
"""


@pytest.mark.parametrize("backend,command", [("openvino", "bench"), ("openvino", "encode"),
                                             ("onnx", "bench")])
def test_an_exported_backend_imports_no_torch(backend, command, tiny_model_dir, spec_file,
                                              tmp_path):
    if not HAVE[backend]:
        pytest.skip(f"{backend} not installed")
    cache = tmp_path / "cache"
    # the export (which needs torch) made beforehand, as a cached export is
    EncoderConfig(str(tiny_model_dir), backend=backend, cache_dir=str(cache)).build_model()
    heavy = "torch,transformers"  # encode writes Parquet: pyarrow is its work
    if command == "bench":
        heavy += ",sklearn,scipy,pandas,pyarrow"
        args = ["bench", "--model", str(tiny_model_dir), "--backend", backend,
                "--tasks", str(spec_file), "--no-cache"]
    else:
        corpus = tmp_path / "corpus.txt"
        corpus.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
        args = ["encode", "--model", str(tiny_model_dir), "--backend", "openvino",
                "--corpus", str(corpus), "--out", str(tmp_path / "out"), "--no-cache"]
    env = {**os.environ, "EMBEDKIT_CACHE": str(cache),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", _PROBE, heavy, *args], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300, check=False)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("IMPORTED")), "")
    assert line == "IMPORTED - CODE 0", proc.stdout[-2000:] + proc.stderr[-2000:]
