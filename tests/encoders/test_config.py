"""EncoderConfig as the one settings value: the backends are built from it, the cache
namespaces keep the keys earlier versions wrote, and ``Encoder`` is the config built."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest

from embedkit.encoders import Encoder, EncoderConfig, settings_record
from embedkit.encoders.cache import EmbeddingCache
from embedkit.encoders.config import build_model
from embedkit.encoders.wrappers import CachedEncoder
from embedkit.errors import ConfigError


class Pinned:
    """An encoder with a fixed identity that must never run: every vector has to come from
    the cache."""

    name = "toy"
    identity = "sha256:0123abcd;lowercase"
    dim = 4
    default_pooling = "cls"
    batch_size = 8

    def describe(self) -> dict[str, object]:
        return {"dtype": "float32", "lowercase": True}

    def encode_multi(self, sentences, poolings, *, max_length=64, **options):
        raise AssertionError(f"encoded {list(sentences)} although the cache holds them")


#: the namespaces embedkit wrote for :class:`Pinned` before EncoderConfig became the one
#: settings value (computed on main at f1271ec): a change here orphans every user's cache
PINNED_NAMESPACES = {("cls", 32): "485a3da9e310eea2222281a8aea5453b",
                     ("last-avg", 64): "c8f2f8c2bce7a6ea6e7fc2a2f9b516a1"}


@pytest.mark.parametrize(("pooling", "max_length"), sorted(PINNED_NAMESPACES))
def test_namespace_keys_are_those_earlier_versions_wrote(tmp_path, pooling, max_length):
    enc = CachedEncoder(Pinned(), EmbeddingCache(tmp_path))
    assert enc.namespace(pooling, max_length) == PINNED_NAMESPACES[pooling, max_length]
    assert enc.namespace_settings(pooling, max_length) == {
        "model_identity": Pinned.identity, "model": "toy", "pooling": pooling,
        "max_length": max_length, "dtype": "float32", "lowercase": True}


def test_an_existing_cache_folder_is_still_hit(tmp_path):
    # the folder as an earlier version left it: its settings dict, spelled out
    old = EmbeddingCache(tmp_path)
    ns = old.namespace({"model_identity": Pinned.identity, "model": "toy", "pooling": "cls",
                        "max_length": 32, "dtype": "float32", "lowercase": True})
    assert ns == PINNED_NAMESPACES["cls", 32]
    vectors = np.arange(8, dtype=np.float32).reshape(2, 4)
    old.put(ns, ["甲", "乙"], vectors)
    old.close()
    enc = CachedEncoder(Pinned(), EmbeddingCache(tmp_path))
    got = enc.encode_multi(["乙", "甲", "乙"], ["cls"], max_length=32)["cls"]
    np.testing.assert_array_equal(got, vectors[[1, 0, 1]])
    assert enc.stats.cache_hits == 2 and enc.stats.encoded == 0


def test_the_backends_take_the_config(tiny_model_dir):
    config = EncoderConfig(str(tiny_model_dir), pooling="last-avg", lowercase=True,
                           batch_size=3, prompt="问：")
    enc = build_model(config)
    assert enc.encoder_config is config
    assert (enc.default_pooling, enc.lowercase, enc.batch_size, enc.prompt) == (
        "last-avg", True, 3, "问：")
    assert enc.identity == f'{enc.model_identity};lowercase;prompt="问："'
    assert inspect.signature(build_model).parameters.keys() == {"config"}


def test_encoder_is_the_config_built(tiny_model_dir, tmp_path):
    cache = EmbeddingCache(tmp_path)
    enc = Encoder(str(tiny_model_dir), "cls", cache=cache, batch_size=2, lowercase=True)
    built = EncoderConfig(str(tiny_model_dir), pooling="cls", batch_size=2, lowercase=True,
                          cache_dir=str(tmp_path)).build(cache)
    assert enc.cache is cache and enc.identity == built.identity
    assert settings_record(enc) == settings_record(built)
    assert settings_record(enc)["cache"] == str(tmp_path)
    assert Encoder(str(tiny_model_dir)).cache is None  # no cache unless one is given
    with pytest.raises(TypeError, match="colour"):
        Encoder(str(tiny_model_dir), colour="red")


@pytest.mark.parametrize(("given", "expected"), [(None, None), (0, None), (12, 12)])
def test_token_budget_none_is_the_backends_default(tiny_model_dir, given, expected):
    enc = EncoderConfig(str(tiny_model_dir), token_budget=given).build_model()
    assert enc.token_budget == expected  # torch on the cpu: by sentence count


@pytest.mark.parametrize(("backend", "expected"), [("onnx", 4096)])
def test_token_budget_none_on_an_exported_backend(tiny_model_dir, tmp_path, backend, expected):
    pytest.importorskip("onnxruntime")
    base = EncoderConfig(str(tiny_model_dir), backend=backend, cache_dir=str(tmp_path))
    assert base.build_model().token_budget == expected
    assert dataclasses.replace(base, token_budget=0).build_model().token_budget is None


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_token_budget_is_checked_with_the_other_integers(bad):
    with pytest.raises(ConfigError, match=r"token_budget must be an integer >= 0; got"):
        EncoderConfig("m3e-small", token_budget=bad)


def test_the_record_is_the_settings_as_given(tmp_path):
    rec = EncoderConfig("org/m", revision="v1", cache_dir=str(tmp_path)).record()
    assert rec["revision"] == "v1" and rec["cache"] == str(tmp_path)
    assert "cache_dir" not in rec
    assert set(rec) == {f.name for f in dataclasses.fields(EncoderConfig)} - {"cache_dir"}


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_model_facts_read_the_folder_and_load_nothing(tiny_model_dir, tmp_path, backend,
                                                      monkeypatch):
    from embedkit.encoders.facts import ModelFacts

    if backend == "onnx":
        pytest.importorskip("onnxruntime")
    config = EncoderConfig(str(tiny_model_dir), backend=backend, lowercase=True,
                           prompt="问：", cache_dir=str(tmp_path))
    built = config.build_model()
    loads: list[str] = []
    monkeypatch.setattr("embedkit.encoders.transformer._load",
                        lambda *a, **k: loads.append("weights"))
    monkeypatch.setattr("embedkit.encoders.runtime.ensure_export",
                        lambda *a, **k: loads.append("export"))
    facts = ModelFacts(config)
    assert loads == []
    assert (facts.identity, facts.dim, facts.default_pooling, facts.model_max_length()) == (
        built.identity, built.dim, built.default_pooling, built.model_max_length())
    assert list(facts.describe()) == list(built.describe())  # a record's shape, in order
    assert settings_record(facts).keys() == settings_record(built).keys()
    with pytest.raises(ConfigError, match="encodes nothing"):
        facts.encode(["猫"])
