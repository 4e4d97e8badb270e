"""``run_encode`` (local engine): shards and manifest, the recipe an index records, resume
after a kill, a damaged shard re-encoded, finished folders left alone."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedkit.encoders import EncoderConfig
from embedkit.errors import ConfigError
from embedkit.runs import encode as encode_mod
from embedkit.runs.encode import EncodeSettings, run_encode
from embedkit.store.encode_folder import EncodeFolder, read_shard
from tests.conftest import source_sentences
from tests.faults import SimulatedKill, kill_at

pytest.importorskip("pyarrow")


def corpus_texts() -> list[str]:
    base = list(dict.fromkeys(source_sentences()))
    return base + [s[::-1] for s in base]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(corpus_texts()) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def config(tiny_model_dir):
    return EncoderConfig(str(tiny_model_dir), pooling="cls", cache=False, batch_size=16)


@pytest.fixture(autouse=True)
def _flush_every_shard(monkeypatch):
    monkeypatch.setattr(encode_mod, "FLUSH_SECONDS", 0.0)


def shas(folder) -> list[str]:
    return [e["sha256"] for e in json.loads((folder / "manifest.json").read_text())["shards"]]


def test_shards_and_manifest(tmp_path, corpus, config):
    out = tmp_path / "emb"
    rec = run_encode(config, corpus, out, EncodeSettings(shard_size=50, max_length=32))
    texts = corpus_texts()
    man = rec["manifest"]
    assert rec["status"] == "written" and man["complete"] and man["total_rows"] == len(texts)
    assert len(texts) == 136
    assert [e["rows"] for e in man["shards"]] == [50, 50, 36]
    assert man["inputs"]["files"][0]["sha256"] and man["timings"]["rows_per_second"] > 0
    import pyarrow as pa
    import pyarrow.parquet as pq

    emb = pq.read_schema(out / "shard-00000.parquet").field("embedding").type
    assert pa.types.is_fixed_size_list(emb) and emb.list_size == 32
    assert emb.value_type == pa.float32()
    folder = EncodeFolder.open(out)
    enc = config.build(cache=False)
    ids, got, x = read_shard(folder.shard_files[1])
    assert ids == [str(i) for i in range(50, 100)] and got == texts[50:100]
    np.testing.assert_allclose(x, enc.encode(got, "cls", max_length=32), atol=1e-6)
    assert folder.recipe.pooling == "cls" and folder.recipe.max_length == 32


def test_recipe_is_what_index_json_records(tmp_path, corpus, config):
    from embedkit.retrieval.folder import build_index

    out = tmp_path / "emb"
    run_encode(config, corpus, out, EncodeSettings(shard_size=100, max_length=32),
               post="norm")
    index = build_index(tmp_path / "idx", corpus_texts(), config, pooling="cls", post="norm",
                        max_length=32)
    stored = dict(index.recipe)
    mine = EncodeFolder.open(out).recipe.to_dict()
    # safetensors writes its metadata in no fixed order: the files' sha256 differ run to run
    from embedkit.provenance import sha256_file

    assert mine["post_sha256"] == sha256_file(out / "post.safetensors")
    for r in (stored, mine):
        r.pop("corpus")
        r.pop("post_sha256")
    assert mine == stored


def test_resume_after_a_kill_encodes_only_the_rest(tmp_path, corpus, config):
    settings = EncodeSettings(shard_size=40, max_length=32)
    clean = tmp_path / "clean"
    run_encode(config, corpus, clean, settings)
    out = tmp_path / "emb"
    with kill_at("embedkit.runs.encode.write_shard", call=3), \
            pytest.raises(SimulatedKill):
        run_encode(config, corpus, out, settings)
    assert not json.loads((out / "manifest.json").read_text())["complete"]
    rec = run_encode(config, corpus, out, settings)
    assert rec["shards_encoded"] == [2, 3]
    assert shas(out) == shas(clean)
    for a, b in zip(EncodeFolder.open(out).shard_files, EncodeFolder.open(clean).shard_files,
                    strict=True):
        assert a.read_bytes() == b.read_bytes()


def test_damaged_or_missing_shard_is_re_encoded(tmp_path, corpus, config):
    settings = EncodeSettings(shard_size=40, max_length=32)
    out = tmp_path / "emb"
    run_encode(config, corpus, out, settings)
    before = shas(out)
    data = bytearray((out / "shard-00001.parquet").read_bytes())
    data[100] ^= 0xFF
    (out / "shard-00001.parquet").write_bytes(bytes(data))
    (out / "shard-00003.parquet").unlink()
    with pytest.raises(ConfigError, match="shard-00001.parquet: sha256 differs"):
        EncodeFolder.open(out)
    rec = run_encode(config, corpus, out, settings)
    assert rec["shards_encoded"] == [1, 3] and shas(out) == before
    EncodeFolder.open(out)


def test_finished_folder_is_not_rewritten(tmp_path, corpus, config):
    settings = EncodeSettings(shard_size=80, max_length=32)
    out = tmp_path / "emb"
    run_encode(config, corpus, out, settings)
    stamp = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    rec = run_encode(config, corpus, out, settings)
    assert rec["status"] == "complete" and rec["shards_encoded"] == []
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamp
    other = EncodeSettings(shard_size=50, max_length=32)
    with pytest.raises(ConfigError) as err:
        run_encode(config, corpus, out, other)
    assert err.value.param == "overwrite"
    rec = run_encode(config, corpus, out, EncodeSettings(shard_size=50, max_length=32,
                                                         overwrite=True))
    assert len(rec["manifest"]["shards"]) == 3 and not (out / "shard-00003.parquet").exists()


def test_bad_settings_fail_early(tmp_path, corpus, config):
    with pytest.raises(ConfigError) as err:
        run_encode(config, corpus, tmp_path / "e", post="whiten")
    assert err.value.param == "post"
    with pytest.raises(ConfigError) as err:
        EncodeSettings(shard_size=0)
    assert err.value.param == "shard_size"
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ConfigError) as err:
        run_encode(config, corpus, tmp_path / "full")
    assert err.value.param == "out"


def test_the_manifest_times_the_model_apart_from_the_writer(tmp_path, corpus, config):
    """The speed report reads an encode run's rate over the model's own time (tokenising
    included); seconds_encoding is the writer's (shards written too)."""
    man = run_encode(config, corpus, tmp_path / "emb",
                     EncodeSettings(shard_size=50, max_length=32))["manifest"]
    t = man["timings"]
    assert t["encoded"] == t["rows_encoded"] == 136
    assert 0 < t["seconds_model"] <= t["seconds_encoding"] <= t["seconds_total"]
    s = t["seconds_model"]  # rounded to the millisecond: the rate agrees within that rounding
    assert 136 / (s + 5e-4) - 0.1 <= t["sentences_per_second"] <= 136 / max(s - 5e-4, 1e-6) + 0.1
