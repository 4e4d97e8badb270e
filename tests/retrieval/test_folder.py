"""The Python side of index folders: build_index / add_to_index / search / IndexSearcher."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import warnings

import numpy as np
import pytest

from embedkit.encoders import EncoderConfig
from embedkit.errors import ConfigError
from embedkit.io.seal import value_checksums
from embedkit.postprocess import AffineMap, parse_post
from embedkit.retrieval import folder
from embedkit.store.recipe import Recipe, RecipeConflictError


@pytest.fixture
def cfg(rx_model_dir):
    return EncoderConfig(str(rx_model_dir), cache=False)


def test_search_api_matches_index_and_recipe(cfg, rx_encoder, rx_texts, tmp_path):
    out = tmp_path / "idx"
    ids = [f"d{i}" for i in range(len(rx_texts))]
    index = folder.build_index(out, rx_texts + rx_texts[:3], cfg, ids=ids + ["x", "y", "z"],
                               pooling="cls", post="pca:k=12")
    assert index.ntotal == len(rx_texts)  # duplicates indexed once, first id kept
    res = folder.search(out, ["今天天气很好", "我想看电影"], k=4, encoder=cfg)
    assert [r["query"] for r in res] == ["今天天气很好", "我想看电影"]
    assert res[0]["hits"][0] == {"id": 0, "text": "今天天气很好", "user_id": "d0",
                                 "score": pytest.approx(1.0, abs=1e-4)}
    assert all(len(r["hits"]) == 4 for r in res)
    searcher = folder.IndexSearcher(out, rx_encoder)
    assert searcher.recipe.post == "pca:k=12" and searcher.recipe.max_length == 64
    again = searcher.search("我想看电影", k=4)[0]["hits"]
    assert [h["id"] for h in again] == [h["id"] for h in res[1]["hits"]]
    np.testing.assert_allclose([h["score"] for h in again], [h["score"] for h in res[1]["hits"]],
                               atol=1e-5)
    assert folder.search(out, [], encoder=cfg) == []
    recipe = Recipe.from_dict(index.recipe)
    assert (recipe.pooling, recipe.post, recipe.post_file) == ("cls", "pca:k=12", "post.safetensors")
    assert recipe.to_dict() == json.loads((out / "index.json").read_text())["recipe"]


def test_identity_change_refused(cfg, rx_texts, tmp_path):
    out = tmp_path / "idx"
    folder.build_index(out, rx_texts[:10], cfg)
    meta_path = out / "index.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["recipe"]["model_identity"] = "sha256:" + "0" * 64
    meta["values_sha256"] = value_checksums(meta)  # as if the model had changed, not the file
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(ConfigError, match="weights changed"):
        folder.search(out, ["今天"], encoder=cfg)
    with pytest.warns(UserWarning, match="weights changed"):
        assert folder.search(out, ["今天"], k=2, encoder=cfg, force=True)[0]["hits"]
    with pytest.raises(ConfigError, match="weights changed"):
        folder.add_to_index(out, ["新的句子"], cfg)


def test_recipe_without_model_refused(rx_texts, tmp_path):
    from embedkit.retrieval.index import EmbeddingIndex

    EmbeddingIndex.build(np.eye(3, dtype="float32"), ["a", "b", "c"]).save(tmp_path / "raw")
    with pytest.raises(ConfigError, match="not built by `embedkit index build`"):
        folder.search(tmp_path / "raw", ["a"])


def test_recipe_conflicts_are_typed(cfg, rx_texts, tmp_path):
    out = tmp_path / "idx"
    folder.build_index(out, rx_texts[:10], cfg, post="pca:k=4")
    with pytest.raises(RecipeConflictError) as err:
        folder.IndexSearcher(out, cfg, pooling="last-avg", max_length=32)
    assert [(c.key, c.stored, c.requested) for c in err.value.conflicts] == [
        ("pooling", "cls", "last-avg"), ("max_length", 64, 32)]
    assert str(err.value).endswith("use the index's recipe or force=True")
    # the same settings spelled differently are no conflict
    same = folder.IndexSearcher(out, cfg, pooling="CLS", post="pca:k=4", max_length=64)
    assert same.conflicts == []
    with pytest.warns(UserWarning) as caught:
        forced = folder.IndexSearcher(out, cfg, post="none", force=True)
    assert "post=pca:k=4 but post=none" in str(caught[0].message)
    assert "baked into the index" in str(caught[1].message)
    assert [c.key for c in forced.conflicts] == ["post"]


def test_old_index_json_still_loads(cfg, rx_texts, tmp_path):
    """A folder whose recipe lacks the keys added later (dtype, lowercase, post_*) loads."""
    out = tmp_path / "idx"
    folder.build_index(out, rx_texts[:10], cfg)
    meta_path = out / "index.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    for key in ("dtype", "lowercase", "post", "post_file", "post_sha256", "post_sources", "fit"):
        meta["recipe"].pop(key)
    meta.pop("values_sha256")  # added later too
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    with pytest.warns(UserWarning, match="without checksums of its values"):
        assert folder.search(out, [rx_texts[3]], k=1, encoder=cfg)[0]["hits"][0]["id"] == 3


def test_fit_on_file(cfg, rx_encoder, rx_texts, tmp_path):
    fit_file = tmp_path / "fit.txt"
    fit_file.write_text("\n".join(rx_texts[10:]) + "\n", encoding="utf-8")
    index = folder.build_index(tmp_path / "idx", rx_texts[:10], cfg, post="pca:k=6",
                               fit_on=str(fit_file))
    assert index.recipe["fit"]["on"] == f"file:{fit_file.resolve()}"
    assert index.recipe["fit"]["n_sentences"] == 30
    expected = AffineMap.from_pipeline(parse_post("pca:k=6").fit(
        rx_encoder.encode(rx_texts[10:], "cls")))
    np.testing.assert_allclose(np.abs(index.affine_map().kernel), np.abs(expected.kernel),
                               atol=1e-4)
    with pytest.raises(ConfigError, match="fit_on") as err:
        folder.build_index(tmp_path / "idx2", rx_texts[:10], cfg, post="pca:k=6",
                           fit_on=str(tmp_path / "missing.txt"))
    assert err.value.param == "fit_on"


def test_add_python_api_keeps_post_file(cfg, rx_texts, tmp_path):
    out = tmp_path / "idx"
    folder.build_index(out, rx_texts[:12], cfg, post="whiten:k=8", factory="HNSW8")
    res = folder.add_to_index(out, rx_texts[10:16] + ["", "全新的一句"], cfg)
    assert res == {"added": 6, "skipped": 2, "ntotal": 18}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hits = folder.search(out, ["全新的一句"], k=1, encoder=cfg, ef_search=32)[0]["hits"]
    assert hits[0]["text"] == "全新的一句"
    assert (out / "post.safetensors").is_file()
    assert [c["n_indexed"] for c in Recipe.from_dict(
        json.loads((out / "index.json").read_text())["recipe"]).corpus] == [12, 6]


def test_build_refuses_to_replace_a_foreign_folder(cfg, tmp_path):
    victim = tmp_path / "docs"
    victim.mkdir()
    (victim / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(ConfigError, match="not an index folder"):
        folder.build_index(victim, ["一"], cfg)
    assert (victim / "notes.txt").read_text(encoding="utf-8") == "keep me"
    folder.build_index(tmp_path / "idx", ["一"], cfg)
    folder.build_index(tmp_path / "idx", ["二"], cfg)
    assert folder.search(tmp_path / "idx", ["二"], k=3, encoder=cfg)[0]["hits"][0]["text"] == "二"


def test_search_default_is_kept_with_a_post_processor(cfg, rx_texts, tmp_path):
    """The default efSearch / nprobe chosen at build time stays in the recipe when a
    post-processor is baked in (the recipe written with post.safetensors' sha256 used to drop
    it) and is the one a search uses."""
    index = folder.build_index(tmp_path / "i", rx_texts, cfg, post="whiten:k=16",
                               factory="HNSW8", max_length=32, seed=3)
    d = index.recipe["search_defaults"]
    assert d["ef_search"] in (16, 32, 64) and d["queries"] == len(rx_texts) and d["seed"] == 3
    assert index.recipe["post"].startswith("whiten") and index.recipe["post_sha256"]
    stored = json.loads((tmp_path / "i" / "index.json").read_text())
    assert stored["recipe"]["search_defaults"] == d
    assert folder.IndexSearcher(tmp_path / "i", cfg).index.search_defaults == {
        "ef_search": d["ef_search"]}


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None,
                    reason="onnxruntime not installed")
def test_int8_static_index_keeps_its_calibration(rx_model_dir, rx_texts, tmp_path):
    """The recipe keeps the calibration an int8-static index was built with: a search builds
    the same encoder again, and an encoder calibrated on other sentences is refused."""
    files = []
    for name, texts in (("a.txt", rx_texts), ("b.txt", rx_texts[::-1][:12])):
        files.append(tmp_path / name)
        files[-1].write_text("\n".join(texts) + "\n", encoding="utf-8")
    cfg = EncoderConfig(str(rx_model_dir), backend="onnx", quantize="int8-static",
                        calibration=str(files[0]), cache=False,
                        cache_dir=str(tmp_path / "cache"))
    out = tmp_path / "idx"
    folder.build_index(out, rx_texts[:10], cfg, pooling="cls")
    recipe = folder.load_index_folder(out)[1]
    assert recipe.quantize == "int8-static" and recipe.calibration["given"] == str(files[0])
    assert recipe.calibration["digest"] in cfg.build().identity
    plain = EncoderConfig(str(rx_model_dir), cache=False, cache_dir=str(tmp_path / "cache"))
    hits = folder.search(out, [rx_texts[0]], k=1, encoder=plain)[0]["hits"]
    assert hits[0]["text"] == rx_texts[0]
    other = dataclasses.replace(cfg, calibration=str(files[1])).build()
    with pytest.raises(ConfigError, match="give the calibration the index was built with"):
        folder.search(out, [rx_texts[0]], k=1, encoder=other)
