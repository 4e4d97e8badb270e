"""Indexes from encode folders: equal to an index built from text (Flat), on-disk IVF round
trip, seeded training samples, and the folder checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedkit.encoders import EncoderConfig
from embedkit.errors import ConfigError
from embedkit.retrieval.folder import build_index, search
from embedkit.retrieval.index import EmbeddingIndex
from embedkit.retrieval.persistence import IVFDATA_FILE
from embedkit.runs.encode import EncodeSettings, run_encode
from embedkit.store.encode_folder import EncodeFolder, write_manifest

pytest.importorskip("pyarrow")


@pytest.fixture
def texts(rx_texts):
    # a repeated text: indexes keep its first row, as build_index does
    return rx_texts + [s[::-1] for s in rx_texts] + [rx_texts[3]]


@pytest.fixture
def config(rx_model_dir):
    return EncoderConfig(str(rx_model_dir), pooling="cls", cache=False, batch_size=16)


@pytest.fixture
def encoded(tmp_path, texts, config):
    corpus = tmp_path / "corpus.csv"
    corpus.write_text("key,sentence\n" + "".join(f"k{i},{t}\n" for i, t in enumerate(texts)),
                      encoding="utf-8")
    out = tmp_path / "emb"
    run_encode(config, corpus, out, EncodeSettings(shard_size=15, max_length=32),
               text_column="sentence", id_column="key")
    return out


def test_flat_from_shards_equals_from_text(tmp_path, texts, config, encoded):
    from_shards = build_index(tmp_path / "a", encoded)
    from_text = build_index(tmp_path / "b", texts, config, pooling="cls", max_length=32,
                            ids=[f"k{i}" for i in range(len(texts))])
    assert from_shards.texts == from_text.texts and len(from_shards) == len(texts) - 1
    assert from_shards.user_ids == from_text.user_ids
    mine, theirs = dict(from_shards.recipe), dict(from_text.recipe)
    assert mine.pop("corpus")[0]["n_indexed"] == len(texts) - 1
    theirs.pop("corpus")
    assert mine == theirs
    queries = texts[:10]
    hits_a = search(tmp_path / "a", queries, k=5, encoder=config)
    hits_b = search(tmp_path / "b", queries, k=5, encoder=config)
    assert [[h["id"] for h in q["hits"]] for q in hits_a] == \
        [[h["id"] for h in q["hits"]] for q in hits_b]
    assert hits_a[0]["hits"][0]["user_id"] == "k0"


def test_post_is_baked_in_from_the_manifest(tmp_path, texts, config):
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(texts), encoding="utf-8")
    run_encode(config, corpus, tmp_path / "emb", EncodeSettings(max_length=32), post="norm")
    index = build_index(tmp_path / "idx", tmp_path / "emb", metric="ip")
    assert index.recipe["post"] == "norm" and "post.safetensors" in index.extra_files
    hits = search(tmp_path / "idx", texts[:2], k=1, encoder=config)
    assert [q["hits"][0]["text"] for q in hits] == texts[:2]


def test_on_disk_ivf_round_trip(tmp_path, texts, config, encoded):
    memory = build_index(tmp_path / "mem", encoded, factory="IVF4,Flat", seed=3)
    build_index(tmp_path / "disk", encoded, factory="IVF4,Flat", seed=3,
                            on_disk=True)
    assert (tmp_path / "disk" / IVFDATA_FILE).is_file()
    assert json.loads((tmp_path / "disk" / "index.json").read_text())["on_disk"] is True
    again = EmbeddingIndex.load(tmp_path / "disk")
    assert again.ntotal == memory.ntotal == len(texts) - 1 and again.texts == memory.texts
    x = EncodeFolder.open(encoded).sample(20, seed=1)
    for a, b in zip(memory.search(x, k=5, nprobe=4), again.search(x, k=5, nprobe=4),
                    strict=True):
        assert [h.id for h in a] == [h.id for h in b]
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-5)
    hits = search(tmp_path / "disk", texts[:3], k=1, encoder=config, nprobe=4)
    assert [q["hits"][0]["text"] for q in hits] == texts[:3]


def test_sample_is_seeded_and_bounded(encoded):
    folder = EncodeFolder.open(encoded)
    a, b = folder.sample(30, seed=7), folder.sample(30, seed=7)
    assert a.shape == (30, 32) and np.array_equal(a, b)
    assert not np.array_equal(a, folder.sample(30, seed=8))
    assert folder.sample(10**6).shape[0] == folder.total_rows


def test_folder_checks(tmp_path, encoded):
    with pytest.raises(ConfigError) as err:
        build_index(tmp_path / "x", encoded, on_disk=True)
    assert err.value.param == "on_disk"
    manifest = json.loads((encoded / "manifest.json").read_text())
    manifest["complete"] = False
    write_manifest(encoded, manifest)  # as a killed run leaves it (sealed)
    with pytest.raises(ConfigError, match="not finished") as err:
        build_index(tmp_path / "y", encoded)
    assert err.value.param == "embeddings"
    with pytest.raises(ConfigError, match="missing"):
        EncodeFolder.open(tmp_path)


def test_ivf_from_shards_stores_its_default_nprobe(tmp_path, texts, config, encoded):
    """From shards (in memory and on disk) the default nprobe is chosen as build_index chooses
    it, each query's own row found in the shards (the repeated text's second row is not
    indexed), and used when a search gives none."""
    from embedkit.retrieval.faiss_ops import build_faiss
    from embedkit.retrieval.tuning import RecallProbe

    mem = build_index(tmp_path / "mem", encoded, factory="IVF4,Flat", seed=3)
    disk = build_index(tmp_path / "disk", encoded, factory="IVF4,Flat", seed=3,
                                   on_disk=True)
    d = mem.recipe["search_defaults"]
    assert disk.recipe["search_defaults"] == d and mem.search_defaults == {"nprobe": d["nprobe"]}
    assert d["queries"] == len(texts) and d["seed"] == 3  # fewer rows than 200: all of them
    # the same choice as a probe over the kept vectors in memory
    folder = EncodeFolder.open(encoded)
    rows = folder.sample(len(texts), seed=4)[:-1]  # every row; the last is the repeat
    index, _ = build_faiss(rows, "IVF4,Flat", "cosine", None, seed=3)
    probe = RecallProbe.for_matrix(rows, "cosine", None, seed=3)
    probe.observe(rows, 0)
    assert probe.choose(index, "IVF4,Flat")["recall_at_10"] == pytest.approx(
        d["recall_at_10"], abs=0.02)
    x = folder.sample(20, seed=1)
    assert ([[h.id for h in hs] for hs in disk.search(x, k=5)]
            == [[h.id for h in hs] for hs in disk.search(x, k=5, nprobe=d["nprobe"])])


def test_one_builder_for_texts_and_shards(tmp_path, rx_texts, config):
    """IVF from texts and from their encode folder: one path, so the same training sample, the
    same default nprobe and the same hits (lists in memory or on disk, either source)."""
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(rx_texts), encoding="utf-8")
    run_encode(config, corpus, tmp_path / "emb", EncodeSettings(shard_size=7, max_length=32))
    kw = {"factory": "IVF4,Flat", "seed": 5}
    shards = build_index(tmp_path / "s", tmp_path / "emb", **kw)
    texts = build_index(tmp_path / "t", rx_texts, config, pooling="cls", max_length=32, **kw)
    disk = build_index(tmp_path / "d", rx_texts, config, pooling="cls", max_length=32,
                       on_disk=True, **kw)
    assert (tmp_path / "d" / IVFDATA_FILE).is_file()
    assert not (tmp_path / "t" / IVFDATA_FILE).exists()
    d = texts.recipe["search_defaults"]
    assert disk.recipe["search_defaults"] == d and d["queries"] == len(rx_texts)
    # the shards' vectors were encoded in other batches: equal up to float rounding
    mine = shards.recipe["search_defaults"]
    assert (mine["nprobe"], mine["queries"], mine["seed"]) == (d["nprobe"], d["queries"], 5)
    assert mine["recall_at_10"] == pytest.approx(d["recall_at_10"], abs=0.02)
    x = EncodeFolder.open(tmp_path / "emb").sample(len(rx_texts))
    for other in (shards, disk):
        a, b = texts.search(x, k=3, nprobe=4), other.search(x, k=3, nprobe=4)
        assert [q[0].id for q in a] == [q[0].id for q in b]
        np.testing.assert_allclose([[h.score for h in q] for q in a],
                                   [[h.score for h in q] for q in b], atol=1e-4)
    stored = json.loads((tmp_path / "t" / "index.json").read_text())
    assert stored["train_size"] == len(rx_texts) and stored["on_disk"] is False


def test_one_row_sampler(encoded):
    """Training samples and tuning queries are the rows the one sampler draws (the probe's with
    seed + 1), read from the shards or from memory alike."""
    from embedkit.retrieval.shards import ArraySource
    from embedkit.retrieval.tuning import TUNE_QUERIES, RowProbe
    from embedkit.store.encode_folder import draw_rows

    folder = EncodeFolder.open(encoded)
    total = folder.total_rows
    rows = draw_rows(total, 20, 7)
    assert np.array_equal(folder.sample(20, seed=7), folder.rows(rows))
    x = folder.sample(total)
    assert np.array_equal(ArraySource(x, [str(i) for i in range(total)]).rows(rows), x[rows])
    probe = RowProbe(total, folder.rows, "cosine", None, seed=3, n_queries=10)
    assert np.array_equal(probe.rows, draw_rows(total, 10, 4))
    assert np.array_equal(probe.probe.queries, x[draw_rows(total, 10, 4)])
    assert len(RowProbe(total, folder.rows, "cosine", None).rows) == min(TUNE_QUERIES, total)


def test_post_file_for_shards_is_loaded_once(tmp_path, encoded, monkeypatch):
    """A transform file given to an index built from shards is checked once (model, pooling,
    dimension and the shards' own settings, in one pass): read to check it and when the chain
    is fitted, as for texts (the shards' own check read it a third time)."""
    import embedkit.postprocess.files as files
    from embedkit.runs.whiten import run_whiten

    w = run_whiten(None, None, tmp_path / "w.safetensors", embeddings=encoded).path
    loads = []
    real = files.load_transform
    monkeypatch.setattr(files, "load_transform", lambda p: loads.append(str(p)) or real(p))
    index = build_index(tmp_path / "i", encoded, post=str(w))
    assert loads == [str(w)] * 2
    assert index.recipe["post_sources"][0]["path"] == str(w)
    assert "post.safetensors" in index.extra_files
