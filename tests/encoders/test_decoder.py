"""Decoder embedders (Qwen2, GPT-2 families) on the tiny random models: last-token pooling against
sentence-transformers on every backend, left and right padding, EOS, padding invariance, GPT-2
without a pad token, and the dtype and device settings."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from embedkit.cli.main import main
from embedkit.encoders.base import eos_to_append, tokenize_ids
from embedkit.encoders.config import EncoderConfig
from embedkit.encoders.pooling import Pooling
from embedkit.encoders.st_folder import declared_pooling
from embedkit.errors import ConfigError

HAVE = {"onnx": importlib.util.find_spec("onnxruntime") is not None,
        "openvino": importlib.util.find_spec("openvino") is not None}
#: very different lengths (1 to ~60 tokens), Chinese and English
S = ["一个人在切洋葱。", "猫", "A man is slicing an onion. " * 4, "一只熊猫宝宝滑下滑梯。",
     "今天天气很好，我们去公园散步吧", "The panda slides down the slide."]
FOLDERS = [(f, side) for f in ("qwen2", "gpt2") for side in ("left", "right")]
MAX_LENGTH = 128  # the tokenizer's model_max_length: sentence-transformers truncates there


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _st_reference(folder, family: str, side: str) -> np.ndarray:
    """sentence-transformers' vectors. GPT-2's tokenizer has no pad token: set to EOS, as its
    users do. A left-padded GPT-2 batch shifts sentence-transformers' absolute positions (its
    batched vectors depend on the batch: up to 0.62 apart here), so that case is each sentence
    alone; every other case is one batch."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(folder), device="cpu")
    if st.tokenizer.pad_token is None:
        st.tokenizer.pad_token = st.tokenizer.eos_token
    if family == "gpt2" and side == "left":
        return np.stack([st.encode([s])[0] for s in S])
    return st.encode(S, batch_size=len(S))


@pytest.fixture(scope="module")
def st_vectors(make_tiny_decoder):
    return {(f, side): _st_reference(make_tiny_decoder(f, side, st=True), f, side)
            for f, side in FOLDERS}


@pytest.fixture(scope="module")
def export_root(tmp_path_factory):
    return tmp_path_factory.mktemp("decoder-exports")


def test_last_token_is_registered_for_sentence_transformers():
    p = Pooling("lasttoken")
    assert p == "last-token" and p.st_mode == "lasttoken" and not p.needs_hidden_states


@pytest.mark.parametrize("family,side", FOLDERS)
def test_st_folder_matches_sentence_transformers_on_torch(family, side, make_tiny_decoder,
                                                          st_vectors):
    folder = make_tiny_decoder(family, side, st=True)
    assert declared_pooling(folder) == "last-token"
    enc = EncoderConfig(str(folder)).build_model()
    assert enc.padding_side == side and enc.default_pooling == "last-token"
    got = _unit(enc.encode(S, max_length=MAX_LENGTH, batch_size=len(S)))
    assert np.abs(got - st_vectors[(family, side)]).max() < 1e-5


BACKEND_CASES = [pytest.param(b, f, side, marks=pytest.mark.skipif(not HAVE[b], reason=b))
                 for b in ("onnx", "openvino") for f, side in FOLDERS
                 if b == "onnx" or side == "left"]  # OpenVINO's conversion takes ~8 s each


@pytest.mark.parametrize("backend,family,side", BACKEND_CASES)
def test_st_folder_matches_sentence_transformers_on_exports(backend, family, side,
                                                            make_tiny_decoder, st_vectors,
                                                            export_root):
    folder = make_tiny_decoder(family, side, st=True)
    enc = EncoderConfig(str(folder), backend=backend, cache_dir=str(export_root)).build_model()
    got = _unit(enc.encode(S, max_length=MAX_LENGTH))
    assert np.abs(got - st_vectors[(family, side)]).max() < 1e-5
    assert enc.describe()["padding_side"] == side


@pytest.mark.parametrize("family,side", FOLDERS)
def test_padding_does_not_change_a_vector(family, side, make_tiny_decoder):
    enc = EncoderConfig(str(make_tiny_decoder(family, side)), pooling="last-token").build_model()
    batched = enc.encode(S, max_length=MAX_LENGTH, batch_size=len(S))
    alone = np.concatenate([enc.encode([s], max_length=MAX_LENGTH) for s in S])
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    if side == "left":  # the batch really is padded on the left
        _, mask = enc._pad(enc._plan(S, MAX_LENGTH, len(S))[0], list(range(len(S))))
        assert mask[:, -1].all() and not mask[:, 0].all()


def test_gpt2_pads_with_eos_and_gets_no_segment_ids(make_tiny_decoder):
    import torch

    folder = make_tiny_decoder("gpt2", "right")
    enc = EncoderConfig(str(folder), pooling="last-token").build_model()
    assert enc.tokenizer.pad_token_id is None and not enc._token_types
    ids, mask = enc._pad(enc._plan(S[:2], 64, 2)[0], [0, 1])
    assert set(ids[mask == 0].tolist()) == {enc.tokenizer.eos_token_id}
    with torch.inference_mode():  # transformers itself, no token_type_ids
        out = enc.model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
    last = mask.sum(1) - 1
    expected = out.last_hidden_state[torch.arange(2), torch.from_numpy(last)].numpy()
    np.testing.assert_allclose(enc.encode(S[:2], max_length=64, batch_size=2), expected,
                               atol=1e-6)


def test_eos_is_appended_where_the_folder_asks(make_tiny_decoder, tmp_path):
    import shutil

    qwen = EncoderConfig(str(make_tiny_decoder("qwen2", "left"))).build_model()
    eos = qwen.tokenizer.eos_token_id
    ids = qwen._plan(S, 8, 8)[0]  # the tokenizer's post-processor appends it, truncated too
    assert all(x[-1] == eos and x.count(eos) == 1 and len(x) <= 8 for x in ids)
    assert qwen.eos_id is None  # nothing for embedkit to add
    gpt = tmp_path / "gpt2-eos"
    shutil.copytree(make_tiny_decoder("gpt2", "right"), gpt)
    assert EncoderConfig(str(gpt)).build_model().eos_id is None  # GPT-2 appends nothing by default
    cfg = json.loads((gpt / "tokenizer_config.json").read_text())
    (gpt / "tokenizer_config.json").write_text(json.dumps({**cfg, "add_eos_token": True}))
    enc = EncoderConfig(str(gpt), pooling="last-token").build_model()
    assert enc.eos_id == eos_to_append(enc.tokenizer, str(gpt)) == eos
    ids = enc._plan(S, 8, 8)[0]
    assert all(x[-1] == eos and len(x) <= 8 for x in ids)
    plain = tokenize_ids(enc.tokenizer, ["猫"], 8)[0]
    assert enc._plan(["猫"], 8, 1)[0][0] == plain + [eos]
    assert enc.count_truncated(["猫"], len(plain)) == 1  # the EOS counts


def test_bfloat16_runs_on_a_native_cpu_close_to_float32(make_tiny_decoder):
    from embedkit import provenance

    if not provenance.native_bf16_flags():
        pytest.skip("this CPU has no native bfloat16")
    folder = str(make_tiny_decoder("qwen2", "left"))
    fp32 = EncoderConfig(folder, pooling="last-token").build_model().encode(S, max_length=MAX_LENGTH)
    bf16 = EncoderConfig(folder, pooling="last-token", dtype="bfloat16").build_model()
    assert bf16.model.dtype.__repr__() == "torch.bfloat16"
    got = bf16.encode(S, max_length=MAX_LENGTH)
    assert got.dtype == np.float32
    assert (_unit(got) * _unit(fp32)).sum(1).min() > 0.99
    assert bf16.identity == EncoderConfig(folder).build_model().identity + ";dtype=bfloat16"


def test_bfloat16_refused_without_native_bf16(make_tiny_decoder, monkeypatch, capsys):
    from embedkit import provenance

    monkeypatch.setattr(provenance, "native_bf16_flags", lambda: [])
    folder = str(make_tiny_decoder("qwen2", "left"))
    with pytest.raises(ConfigError, match="no native bfloat16"):
        EncoderConfig(folder, dtype="bfloat16").build_model()
    with pytest.raises(ConfigError, match="no native bfloat16"):
        EncoderConfig(folder, dtype="bf16")
    assert main(["encode", "--model", folder, "--dtype", "bfloat16", "--corpus", folder + "/tokenizer.json",
                 "--out", folder + "-out"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "avx512_bf16" in err[0] and "--dtype" in err[0]


def test_float16_on_cpu_and_missing_cuda_are_refused(make_tiny_decoder, monkeypatch, capsys):
    import torch

    folder = str(make_tiny_decoder("gpt2", "right"))
    with pytest.raises(ConfigError, match="float16 on the cpu is refused"):
        EncoderConfig(folder, dtype="float16").build_model()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="torch sees no CUDA device"):
        EncoderConfig(folder, device="cuda")
    assert main(["encode", "--model", folder, "--device", "cuda", "--corpus", folder + "/tokenizer.json",
                 "--out", folder + "-out"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "CUDA" in err[0]


@pytest.mark.parametrize("family", ["qwen3", "llama"])
def test_other_decoder_families_match_sentence_transformers(family, make_tiny_decoder):
    folder = make_tiny_decoder(family, "left", st=True)
    enc = EncoderConfig(str(folder)).build_model()
    got = _unit(enc.encode(S, max_length=MAX_LENGTH, batch_size=len(S)))
    np.testing.assert_allclose(got, _st_reference(folder, family, "left"), atol=1e-5)
    alone = np.concatenate([enc.encode([s], max_length=MAX_LENGTH) for s in S])
    np.testing.assert_allclose(_unit(alone), got, atol=1e-5)
