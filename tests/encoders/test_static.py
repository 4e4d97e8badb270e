"""StaticEncoder: a StaticEmbedding folder encodes in embedkit exactly as sentence-transformers
encodes it, and builds through EncoderConfig like any model."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from embedkit.encoders.config import EncoderConfig
from embedkit.encoders.st_folder import read_static_folder, write_static_folder
from embedkit.encoders.static import StaticEncoder, is_static_folder
from embedkit.errors import ConfigError
from tests.conftest import st_vectors

SENTENCES = ["一个男人在弹吉他。", "一个女人在打电话。", "男孩学习日历。", "", "abc 一个 xyz"]


def _static(folder, model_dir, *, normalize=True, seed=0):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    rows = len(tok.get_vocab())
    weights = np.random.default_rng(seed).normal(size=(rows, 12)).astype(np.float32)
    return write_static_folder(folder, copy.deepcopy(tok.backend_tokenizer), weights,
                               normalize=normalize), weights, tok


@pytest.mark.parametrize("normalize", [True, False])
def test_static_equals_sentence_transformers(tmp_path, tiny_model_dir, normalize):
    folder, weights, tok = _static(tmp_path / "static", tiny_model_dir, normalize=normalize)
    ours = StaticEncoder(str(folder)).encode(SENTENCES)
    theirs = st_vectors(folder, SENTENCES)
    assert ours.shape == theirs.shape == (len(SENTENCES), 12)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    # the value itself: the mean of the sentence's token rows (no special tokens), normalised
    ids = tok(SENTENCES[0], add_special_tokens=False)["input_ids"]
    want = weights[ids].mean(axis=0)
    want = want / np.linalg.norm(want) if normalize else want
    np.testing.assert_allclose(ours[0], want, atol=1e-6)
    assert not ours[3].any()  # an empty sentence: zeros, as EmbeddingBag gives


def test_config_builds_static_encoder_and_identity_follows_weights(tmp_path, tiny_model_dir):
    a, _, _ = _static(tmp_path / "a", tiny_model_dir, seed=0)
    b, _, _ = _static(tmp_path / "b", tiny_model_dir, seed=1)
    enc = EncoderConfig(str(a), cache=False).build_model()
    assert isinstance(enc, StaticEncoder) and enc.dim == 12 and is_static_folder(str(a))
    assert not is_static_folder(str(tiny_model_dir))
    assert enc.identity != StaticEncoder(str(b)).identity
    assert enc.identity == StaticEncoder(str(a)).identity
    assert StaticEncoder(str(a), truncate_dim=4).encode(["男孩"]).shape == (1, 4)
    # the whole stack (cache, progress) works on it
    stacked = EncoderConfig(str(a), cache=False).build()
    np.testing.assert_allclose(stacked.encode(SENTENCES), enc.encode(SENTENCES), atol=0)


def test_max_length_truncates_tokens(tmp_path, tiny_model_dir):
    folder, _, _ = _static(tmp_path / "s", tiny_model_dir)
    enc = StaticEncoder(str(folder))
    np.testing.assert_allclose(enc.encode(["男孩学习"], max_length=2), enc.encode(["男孩"]),
                               atol=1e-7)


def test_static_refusals(tmp_path, tiny_model_dir):
    folder, _, _ = _static(tmp_path / "s", tiny_model_dir)
    with pytest.raises(ConfigError, match="pooling cls is not available") as e:
        StaticEncoder(str(folder), "cls")
    assert e.value.param == "pooling"
    with pytest.raises(ConfigError, match="backend onnx does not apply") as e:
        EncoderConfig(str(folder), backend="onnx", cache=False).build_model()
    assert e.value.param == "backend"
    (folder / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ConfigError, match="model.safetensors: cannot read it"):
        StaticEncoder(str(folder))
    assert read_static_folder(tiny_model_dir) is None


def test_static_folder_with_a_module_embedkit_cannot_run(tmp_path, tiny_model_dir):
    import json

    from embedkit.errors import UnsupportedModuleError

    folder, _, _ = _static(tmp_path / "s", tiny_model_dir)
    modules = json.loads((folder / "modules.json").read_text())
    modules.append({"idx": 2, "name": "2", "path": "2_X",
                    "type": "sentence_transformers.models.Pooling"})
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(UnsupportedModuleError, match="StaticEmbedding -> Normalize -> Pooling"):
        StaticEncoder(str(folder))
