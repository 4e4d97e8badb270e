"""Encoder behaviour: order, de-duplication, batching, truncation, casing, default pooling."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from embedkit.encoders import Encoder
from embedkit.errors import ConfigError


def count_rows(encoder) -> list[int]:
    """Record the batch sizes the model is run on (a forward pre-hook; nothing else changes)."""
    rows: list[int] = []
    encoder.model.register_forward_pre_hook(
        lambda m, args, kwargs: rows.append(int(kwargs["input_ids"].shape[0])), with_kwargs=True)
    return rows


@pytest.fixture
def fresh_encoder(tiny_model_dir):
    return Encoder(str(tiny_model_dir), cache=None)


def test_order_restored_and_duplicates_encoded_once(fresh_encoder, tiny_encoder, sentences):
    a, b, c, d = sentences[0], sentences[3], "".join(sentences[10:14]), sentences[7]
    texts = [a, b, a, c, d, b, a, c]  # mixed lengths, repeats
    rows = count_rows(fresh_encoder)
    got = fresh_encoder.encode(texts, pooling="last-avg", batch_size=2)
    assert sum(rows) == 4 and max(rows) <= 2  # once per unique sentence, batches of 2
    assert got.shape == (8, 32)
    for i, t in enumerate(texts):
        np.testing.assert_allclose(got[i], tiny_encoder.encode([t], pooling="last-avg")[0],
                                   atol=1e-5, rtol=0)
    # repeats are the very same row
    np.testing.assert_array_equal(got[0], got[2])
    np.testing.assert_array_equal(got[3], got[7])
    st = fresh_encoder.stats
    assert (st.sentences, st.unique, st.encoded, st.cache_hits) == (8, 4, 4, 0)
    fresh_encoder.encode([a, a], pooling="cls")
    assert (st.sentences, st.unique, st.encoded) == (10, 5, 5)
    assert sum(rows) == 5
    d = st.as_dict()
    assert d["sentences"] == 10 and d["unique_sentences"] == 5 and d["encoded"] == 5


def test_encode_multi_runs_the_model_once_for_all_poolings(fresh_encoder, tiny_encoder, sentences):
    rows = count_rows(fresh_encoder)
    out = fresh_encoder.encode_multi(sentences[:6], ["cls", "mean", "first-last-avg", "cls"],
                                     batch_size=4)
    assert list(out) == ["cls", "last-avg", "first-last-avg"]
    assert sum(rows) == len(set(sentences[:6]))
    for p, v in out.items():
        np.testing.assert_allclose(v, tiny_encoder.encode(sentences[:6], pooling=p), atol=1e-5)


def test_batch_size_does_not_change_vectors(fresh_encoder, sentences):
    a = fresh_encoder.encode(sentences[:12], pooling="first-last-avg", batch_size=1)
    b = fresh_encoder.encode(sentences[:12], pooling="first-last-avg", batch_size=5)
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_empty_input_and_non_strings(tiny_encoder):
    assert tiny_encoder.encode([], pooling="cls").shape[0] == 0
    with pytest.raises(ConfigError, match="sentence 1 is int, not str"):
        tiny_encoder.encode(["一个", 3], pooling="cls")


def test_truncation_counts_cls_and_sep(tiny_encoder, sentences):
    long_ = "".join(sentences[:3])
    assert len(tiny_encoder.tokenizer(long_)["input_ids"]) > 8
    got = tiny_encoder.encode([long_], pooling="last-avg", max_length=8)
    expected = tiny_encoder.encode([long_[:6]], pooling="last-avg")
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    seven = tiny_encoder.encode([long_[:7]], pooling="last-avg")
    assert not np.allclose(got, seven, atol=1e-4)


def test_max_length_is_capped_by_positions_and_checked(tiny_encoder, sentences):
    very_long = "".join(sentences)  # > 64 tokens
    a = tiny_encoder.encode([very_long], pooling="cls", max_length=512)
    b = tiny_encoder.encode([very_long], pooling="cls", max_length=64)
    np.testing.assert_array_equal(a, b)
    assert tiny_encoder.model_max_length() == 64
    with pytest.raises(ConfigError, match="at least 3"):
        tiny_encoder.encode(["一个"], pooling="cls", max_length=2)


def test_lowercase(tiny_model_dir, tiny_encoder):
    lower = Encoder(str(tiny_model_dir), lowercase=True, cache=None)
    mixed, low = "ABC一个人在切洋葱Xyz", "abc一个人在切洋葱xyz"
    tok = tiny_encoder.tokenizer
    assert tok.unk_token_id in tok(mixed)["input_ids"]  # the vocabulary is lower-case only
    assert tok.unk_token_id not in tok(low)["input_ids"]
    np.testing.assert_allclose(lower.encode([mixed], pooling="cls"),
                               tiny_encoder.encode([low], pooling="cls"), atol=1e-6)
    assert not np.allclose(tiny_encoder.encode([mixed], pooling="cls"),
                           tiny_encoder.encode([low], pooling="cls"), atol=1e-4)
    assert lower.namespace_settings("cls", 64)["lowercase"] is True


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_default_pooling_from_uniem_config(tiny_model_dir, tmp_path, tiny_encoder, sentences):
    folder = _copy(tiny_model_dir, tmp_path / "m3e-like")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["uniem_embedding_strategy"] = "last_mean"
    (folder / "config.json").write_text(json.dumps(cfg))
    enc = Encoder(str(folder), cache=None)
    assert enc.default_pooling == "last-avg"
    np.testing.assert_allclose(enc.encode(sentences[:2]),
                               tiny_encoder.encode(sentences[:2], pooling="last-avg"), atol=1e-6)
    # an explicit pooling wins over the declared one
    assert Encoder(str(folder), pooling="cls", cache=None).default_pooling == "cls"


def test_default_pooling_from_sentence_transformers_modules(tiny_model_dir, tmp_path):
    folder = _copy(tiny_model_dir, tmp_path / "st-like")
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_cls_token": True,
         "pooling_mode_mean_tokens": False}))
    assert Encoder(str(folder), cache=None).default_pooling == "cls"


def test_default_pooling_without_declaration_is_cls(tiny_encoder):
    assert tiny_encoder.default_pooling == "cls"


def test_pooler_needs_pooler_weights(tiny_model_no_pooler_dir, sentences):
    enc = Encoder(str(tiny_model_no_pooler_dir), cache=None)
    assert enc.has_pooler is False
    for p in ("pooler", "pooler-tanh"):
        with pytest.raises(ConfigError, match="needs pooler weights"):
            enc.encode(sentences[:1], pooling=p)
    with pytest.raises(ConfigError, match="pooler"):
        enc.encode_multi(sentences[:1], ["cls", "pooler"])
    assert enc.encode(sentences[:1], pooling="cls").shape == (1, 32)


def test_tiny_model_has_pooler(tiny_encoder):
    assert tiny_encoder.has_pooler is True


def test_bad_dtype_and_missing_model(tiny_model_dir, tmp_path):
    from embedkit.errors import EmbedkitError

    with pytest.raises(ConfigError, match="unknown dtype 'float8'"):
        Encoder(str(tiny_model_dir), dtype="float8")
    empty = tmp_path / "empty-model"
    empty.mkdir()
    with pytest.raises(EmbedkitError, match="cannot load model"):
        Encoder(str(empty))


def test_bfloat16_returns_float32(tiny_model_dir, tiny_encoder, sentences):
    enc = Encoder(str(tiny_model_dir), dtype="bf16", cache=None)
    assert enc.dtype_name == "bfloat16"
    v = enc.encode(sentences[:2], pooling="cls")
    assert v.dtype == np.float32
    np.testing.assert_allclose(v, tiny_encoder.encode(sentences[:2], pooling="cls"), atol=0.1)


def test_describe(tiny_encoder, tiny_model_dir):
    d = tiny_encoder.describe()
    assert d["path"] == str(tiny_model_dir.resolve())
    assert d["identity"].startswith("sha256:")
    assert (d["hidden_size"], d["num_layers"], d["dtype"], d["device"]) == (32, 2, "float32", "cpu")
