"""The on-disk embedding cache, alone and behind the encoder."""

from __future__ import annotations

import os
import shutil
import sqlite3
import zlib

import numpy as np
import pytest

from embedkit.encoders import Encoder
from embedkit.encoders.cache import EmbeddingCache, default_cache_dir, text_key


def count_rows(encoder) -> list[int]:
    rows: list[int] = []
    encoder.model.register_forward_pre_hook(
        lambda m, args, kwargs: rows.append(int(kwargs["input_ids"].shape[0])), with_kwargs=True)
    return rows


def cached_encoder(model_dir, root=None) -> tuple[Encoder, list[int]]:
    enc = Encoder(str(model_dir), cache=EmbeddingCache(root))
    return enc, count_rows(enc)


def db_path(cache: EmbeddingCache, ns: str):
    return cache.root / "embeddings" / ns / "vectors.sqlite"


# -- the cache alone ------------------------------------------------------------------------

def test_default_dir_follows_env(tmp_path, monkeypatch):
    assert default_cache_dir() == tmp_path / "embedkit-cache"  # set by the autouse fixture
    assert EmbeddingCache().root == tmp_path / "embedkit-cache"
    monkeypatch.setenv("EMBEDKIT_CACHE", str(tmp_path / "elsewhere"))
    assert EmbeddingCache().root == tmp_path / "elsewhere"


def test_put_get_round_trip(tmp_path):
    c = EmbeddingCache(tmp_path)
    ns = c.namespace({"model": "m", "pooling": "cls"})
    assert ns == c.namespace({"pooling": "cls", "model": "m"})  # key order does not matter
    assert ns != c.namespace({"model": "m", "pooling": "last-avg"})
    vecs = np.arange(6, dtype=np.float32).reshape(3, 2)
    c.put(ns, ["甲", "乙", "丙"], vecs)
    found, missing = c.get(ns, ["丙", "丁", "甲"])
    assert missing == [1]
    np.testing.assert_array_equal(found, vecs[[2, 0]])
    assert found.dtype == np.float32
    assert c.get(ns, ["丁"]) == (None, [0])
    assert (c.hits, c.misses, c.corrupt) == (2, 2, 0)
    info = c.namespaces()
    assert len(info) == 2 and sorted(e["rows"] for e in info) == [0, 3]
    c.close()


def test_clear_by_model(tmp_path):
    c = EmbeddingCache(tmp_path)
    a = c.namespace({"model": "alpha", "model_identity": "sha256:aa"})
    c.namespace({"model": "beta", "model_identity": "sha256:bb"})
    c.put(a, ["x"], np.ones((1, 2), np.float32))
    assert c.clear("alph") == 0  # exact matches only
    assert c.clear("alpha") == 1
    assert [e["settings"]["model"] for e in c.namespaces()] == ["beta"]
    assert c.clear() == 1 and c.namespaces() == []


# -- behind the encoder ---------------------------------------------------------------------

def test_hit_calls_the_model_zero_times(tiny_model_dir, sentences):
    enc1, rows1 = cached_encoder(tiny_model_dir)
    first = enc1.encode(sentences[:10], pooling="cls")
    assert sum(rows1) == len(set(sentences[:10])) and enc1.stats.cache_hits == 0
    enc2, rows2 = cached_encoder(tiny_model_dir)
    second = enc2.encode(sentences[:10], pooling="cls")
    assert rows2 == []
    np.testing.assert_array_equal(first, second)
    assert enc2.stats.cache_hits == enc2.stats.unique == len(set(sentences[:10]))
    assert enc2.stats.encoded == 0


def test_partial_hit_merges_in_order(tiny_model_dir, tiny_encoder, sentences):
    enc, rows = cached_encoder(tiny_model_dir)
    enc.encode(sentences[2:6], pooling="last-avg")
    rows.clear()
    texts = [sentences[7], sentences[3], sentences[8], sentences[2], sentences[7]]
    got = enc.encode(texts, pooling="last-avg")
    assert sum(rows) == 2  # sentences[7] and [8]
    np.testing.assert_allclose(got, tiny_encoder.encode(texts, pooling="last-avg"), atol=1e-5)


def test_poolings_are_cached_separately(tiny_model_dir, tiny_encoder, sentences):
    enc, rows = cached_encoder(tiny_model_dir)
    enc.encode(sentences[:4], pooling="cls")
    rows.clear()
    out = enc.encode_multi(sentences[:4], ["cls", "first-last-avg"])
    assert sum(rows) == 4  # first-last-avg was missing
    for p in ("cls", "first-last-avg"):
        np.testing.assert_allclose(out[p], tiny_encoder.encode(sentences[:4], pooling=p), atol=1e-5)
    rows.clear()
    enc.encode_multi(sentences[:4], ["first-last-avg", "cls"])
    assert rows == []
    # max length is part of the namespace too
    enc.encode(sentences[:4], pooling="cls", max_length=5)
    assert sum(rows) == 4


def test_model_change_misses(tiny_model_dir, tmp_path, sentences):
    from safetensors.torch import load_file, save_file

    enc1, _ = cached_encoder(tiny_model_dir)
    v1 = enc1.encode(sentences[:3], pooling="cls")
    changed = tmp_path / "changed"
    shutil.copytree(tiny_model_dir, changed)
    state = load_file(changed / "model.safetensors")
    key = next(k for k in state if k.endswith("LayerNorm.bias"))
    state[key] = state[key] + 0.5
    save_file(state, changed / "model.safetensors", metadata={"format": "pt"})
    enc2, rows2 = cached_encoder(changed)
    assert enc2.identity != enc1.identity
    v2 = enc2.encode(sentences[:3], pooling="cls")
    assert sum(rows2) == 3
    assert not np.allclose(v1, v2, atol=1e-3)
    identities = {e["settings"]["model_identity"] for e in enc2.cache.namespaces()}
    assert identities == {enc1.identity, enc2.identity}


@pytest.mark.parametrize("damage", [
    "UPDATE vec SET crc = (crc + 1) % 4294967296 WHERE key = ?",
    "UPDATE vec SET data = zeroblob(length(data)) WHERE key = ?",
    "UPDATE vec SET data = substr(data, 1, 8) WHERE key = ?",
], ids=["crc", "blob", "short-blob"])
def test_corrupted_row_is_detected_and_recomputed(tiny_model_dir, sentences, damage):
    texts = sentences[:6]
    enc1, _ = cached_encoder(tiny_model_dir)
    original = enc1.encode(texts, pooling="last-avg")
    ns = enc1.namespace("last-avg", 64)
    enc1.cache.close()
    with sqlite3.connect(db_path(enc1.cache, ns)) as conn:
        assert conn.execute(damage, (text_key(texts[1]),)).rowcount == 1
    enc2, rows2 = cached_encoder(tiny_model_dir)
    with pytest.warns(UserWarning, match=r"1 cached vector\(s\) damaged \(checksum or length "
                                         r"wrong\); removed and recomputed"):
        again = enc2.encode(texts, pooling="last-avg")
    assert rows2 == [1] and enc2.cache.corrupt == 1 and enc2.stats.encoded == 1
    np.testing.assert_allclose(again, original, atol=1e-5, rtol=0)
    # the row was rewritten correctly
    enc2.cache.close()
    with sqlite3.connect(db_path(enc2.cache, ns)) as conn:
        dim, crc, data = conn.execute("SELECT dim, crc, data FROM vec WHERE key = ?",
                                      (text_key(texts[1]),)).fetchone()
    assert dim == 32 and len(data) == 128 and zlib.crc32(data) == crc
    enc3, rows3 = cached_encoder(tiny_model_dir)
    enc3.encode(texts, pooling="last-avg")
    assert rows3 == [] and enc3.cache.corrupt == 0


def test_garbage_database_is_moved_aside_and_rebuilt(tiny_model_dir, tiny_encoder, sentences):
    enc, rows = cached_encoder(tiny_model_dir)
    ns = enc.namespace("cls", 64)
    db = db_path(enc.cache, ns)
    db.write_bytes(b"this is not a sqlite database\n" * 200)
    with pytest.warns(UserWarning, match="is unreadable .* moved to vectors.corrupt-"):
        got = enc.encode(sentences[:5], pooling="cls")
    np.testing.assert_allclose(got, tiny_encoder.encode(sentences[:5], pooling="cls"), atol=1e-5)
    aside = list(db.parent.glob("vectors.corrupt-*.sqlite"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not")
    enc.cache.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM vec").fetchone()[0] == len(set(sentences[:5]))
    enc2, rows2 = cached_encoder(tiny_model_dir)
    enc2.encode(sentences[:5], pooling="cls")
    assert rows2 == []


def test_no_cache_touches_nothing(tiny_model_dir, sentences):
    enc = Encoder(str(tiny_model_dir), cache=None)
    enc.encode(sentences[:3], pooling="cls")
    assert not os.path.exists(os.environ["EMBEDKIT_CACHE"])
