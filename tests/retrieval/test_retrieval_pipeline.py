"""The Python side of the index pipeline: build_index / add_to_index / search, posts, eval parts."""

from __future__ import annotations

import doctest
import json
import warnings

import numpy as np
import pytest

from embedkit.errors import ConfigError, DataError
from embedkit.experiments import index_eval as benchmark
from embedkit.retrieval import pipeline


@pytest.mark.parametrize("module", [pipeline, benchmark])
def test_docstring_examples(module):
    assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0


def test_search_api_matches_index_and_recipe(rx_model_dir, rx_encoder, rx_texts, tmp_path):
    out = tmp_path / "idx"
    ids = [f"d{i}" for i in range(len(rx_texts))]
    index = pipeline.build_index(out, rx_texts + rx_texts[:3], ids=ids + ["x", "y", "z"],
                                 model=str(rx_model_dir), pooling="cls", post="pca:k=12",
                                 cache=False)
    assert index.ntotal == len(rx_texts)  # duplicates indexed once, first id kept
    res = pipeline.search(out, ["今天天气很好", "我想看电影"], k=4, cache=False)
    assert [r["query"] for r in res] == ["今天天气很好", "我想看电影"]
    assert res[0]["hits"][0] == {"id": 0, "text": "今天天气很好", "user_id": "d0",
                                 "score": pytest.approx(1.0, abs=1e-4)}
    assert all(len(r["hits"]) == 4 for r in res)
    searcher = pipeline.IndexSearcher(out, encoder=rx_encoder)
    again = searcher.search("我想看电影", k=4)[0]["hits"]
    assert [h["id"] for h in again] == [h["id"] for h in res[1]["hits"]]
    np.testing.assert_allclose([h["score"] for h in again], [h["score"] for h in res[1]["hits"]],
                               atol=1e-5)
    assert pipeline.search(out, [], cache=False) == []


def test_identity_change_refused(rx_model_dir, rx_texts, tmp_path):
    out = tmp_path / "idx"
    pipeline.build_index(out, rx_texts[:10], model=str(rx_model_dir), cache=False)
    meta_path = out / "index.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["recipe"]["model_identity"] = "sha256:" + "0" * 64
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(ConfigError, match="weights changed"):
        pipeline.search(out, ["今天"], cache=False)
    with pytest.warns(UserWarning, match="weights changed"):
        assert pipeline.search(out, ["今天"], k=2, cache=False, force=True)[0]["hits"]
    with pytest.raises(ConfigError, match="weights changed"):
        pipeline.add_to_index(out, ["新的句子"], cache=False)


def test_recipe_without_model_refused(rx_texts, tmp_path):
    from embedkit.retrieval.index import EmbeddingIndex

    EmbeddingIndex.build(np.eye(3, dtype="float32"), ["a", "b", "c"]).save(tmp_path / "raw")
    with pytest.raises(ConfigError, match="not built by `embedkit index build`"):
        pipeline.search(tmp_path / "raw", ["a"])


def test_prepare_post_file_checks(rx_encoder, rx_texts, tmp_path):
    from embedkit.postprocess import save_transform

    x = rx_encoder.encode(rx_texts, "cls")
    k = np.eye(32)[:, :8]
    by_name = tmp_path / "name.npz"
    save_transform(by_name, k, np.zeros(32), {"model": rx_encoder.name, "pooling": "cls"})
    post = pipeline.prepare_post(str(by_name), encoder=rx_encoder, pooling="cls", dim=32)
    assert post.spec == f"file:{by_name.resolve()}" and post.kernel.shape == (32, 8)
    np.testing.assert_allclose(post.apply(x), x[:, :8], atol=1e-6)

    other = tmp_path / "other.npz"
    save_transform(other, k, np.zeros(32), {"model": "sha256:abc", "pooling": "cls"})
    with pytest.raises(ConfigError, match="model 'sha256:abc'"):
        pipeline.prepare_post(str(other), encoder=rx_encoder, pooling="cls", dim=32)
    with pytest.raises(ConfigError, match="dimension|d=32"):
        pipeline.prepare_post(str(by_name), encoder=rx_encoder, pooling="cls", dim=16)
    # file: steps of a chain are checked too
    with pytest.raises(ConfigError, match="sha256:abc"):
        pipeline.prepare_post(f"file:{other},norm", encoder=rx_encoder, pooling="cls", dim=32)
    with pytest.raises(ConfigError, match="--metric cosine"):
        pipeline.prepare_post("pca:k=4,norm", encoder=rx_encoder, pooling="cls", dim=32,
                              fit_data=lambda: (x, {"on": "t"}), metric="ip")
    assert pipeline.prepare_post("none", encoder=rx_encoder, pooling="cls", dim=32) is None
    normed = tmp_path / "normed.safetensors"
    save_transform(normed, k, np.zeros(32), {"model": rx_encoder.identity, "normalize": True})
    assert pipeline.prepare_post(str(normed), encoder=rx_encoder, pooling="cls", dim=32).normalize
    with pytest.raises(ConfigError, match="normalize"):
        pipeline.prepare_post(str(normed), encoder=rx_encoder, pooling="cls", dim=32, metric="l2")


def test_fit_on_file(rx_model_dir, rx_encoder, rx_texts, tmp_path):
    from embedkit.postprocess import affine_of, parse_post

    fit_file = tmp_path / "fit.txt"
    fit_file.write_text("\n".join(rx_texts[10:]) + "\n", encoding="utf-8")
    index = pipeline.build_index(tmp_path / "idx", rx_texts[:10], model=str(rx_model_dir),
                                 post="pca:k=6", fit_on=str(fit_file), cache=False)
    assert index.recipe["fit"]["on"] == f"file:{fit_file.resolve()}"
    assert index.recipe["fit"]["n_sentences"] == 30
    kernel, _, _ = affine_of(parse_post("pca:k=6").fit(rx_encoder.encode(rx_texts[10:], "cls")))
    np.testing.assert_allclose(np.abs(index.transform_matrix()[0]), np.abs(kernel), atol=1e-4)


def test_read_corpus(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_bytes("\ufeff一\r\n\n二 \r\n三".encode())
    ids = tmp_path / "i.txt"
    ids.write_text("a\nb\n\nc\n", encoding="utf-8")
    texts, user_ids, info = pipeline.read_corpus(corpus, ids)
    assert texts == ["一", "二 ", "三"] and user_ids == ["a", None, "c"]
    assert info["n_texts"] == 3 and len(info["sha256"]) == 64
    ids.write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="aligned"):
        pipeline.read_corpus(corpus, ids)
    corpus.write_bytes(b"ok\n\xff\xfe\n")
    with pytest.raises(DataError, match=":2: invalid UTF-8"):
        pipeline.read_corpus(corpus)
    with pytest.raises(ConfigError, match="not found"):
        pipeline.read_corpus(tmp_path / "missing.txt")


def test_corpus_from_tasks(rx_spec_file, rx_texts):
    texts, info = pipeline.corpus_from_tasks(f"{rx_spec_file}:test,{rx_spec_file}")
    assert texts == rx_texts[0::2] + rx_texts[1::2] and info["n_texts"] == 40
    assert info["tasks"]["rx-pairs"]["test"]["n_pairs"] == 20
    assert pipeline._split_task_arg("LCQMC:test") == ("LCQMC", "test")
    assert pipeline._split_task_arg("/a:b/spec.json") == ("/a:b/spec.json", None)


def test_quality_eval_both_directions(rx_encoder, rx_spec_file):
    from embedkit.data import get_task, load_split
    from embedkit.retrieval import evaluate_retrieval, pairs_to_retrieval

    rows, data = benchmark.quality_eval(rx_encoder, str(rx_spec_file), both_directions=True)
    assert len(rows) == 1 and rows[0]["n_queries"] == 20 and rows[0]["post"] is None
    split = load_split(get_task(str(rx_spec_file)), "test")
    task = pairs_to_retrieval(split.sentences1, split.sentences2, split.labels,
                              both_directions=True)
    x = rx_encoder.encode(task.corpus, "cls", max_length=64)
    ref = evaluate_retrieval(task, x, x[task.query_ids])
    for key in ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10"):
        assert rows[0][key] == pytest.approx(ref[key])
    assert data["rx-pairs"]["test"]["threshold"] == 1.0


def test_thresholds_and_factories():
    assert benchmark.label_threshold((0, 5), None) == 4.0
    assert benchmark.label_threshold(None, np.array([0.0, 1.0, 1.0])) == 1.0
    assert benchmark.label_threshold(None, np.array([1.0, 3.0, 5.0])) == pytest.approx(4.2)
    assert benchmark.split_factories(["Flat", "IVF1024,PQ32", "PCA64,IVF256,Flat,HNSW32,SQ8"]) == [
        "Flat", "IVF1024,PQ32", "PCA64,IVF256,Flat", "HNSW32,SQ8"]
    assert benchmark.split_factories("HNSW32,Flat") == ["HNSW32", "Flat"]
    with pytest.raises(ConfigError, match="--nprobe"):
        benchmark.parse_int_list("1,x", "--nprobe")
    with pytest.raises(ConfigError, match=">= 1"):
        benchmark.parse_int_list("0", "--ef-search")


def test_add_python_api_keeps_post_file(rx_model_dir, rx_texts, tmp_path):
    out = tmp_path / "idx"
    pipeline.build_index(out, rx_texts[:12], model=str(rx_model_dir), post="whiten:k=8",
                         factory="HNSW8", cache=False)
    res = pipeline.add_to_index(out, rx_texts[10:16] + ["", "全新的一句"], cache=False)
    assert res == {"added": 6, "skipped": 2, "ntotal": 18}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hits = pipeline.search(out, ["全新的一句"], k=1, cache=False, ef_search=32)[0]["hits"]
    assert hits[0]["text"] == "全新的一句"
    assert (out / "post.safetensors").is_file()


def test_build_refuses_to_replace_a_foreign_folder(rx_model_dir, tmp_path):
    victim = tmp_path / "docs"
    victim.mkdir()
    (victim / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(ConfigError, match="not an index folder"):
        pipeline.build_index(victim, ["一"], model=str(rx_model_dir), cache=False)
    assert (victim / "notes.txt").read_text(encoding="utf-8") == "keep me"
    pipeline.build_index(tmp_path / "idx", ["一"], model=str(rx_model_dir), cache=False)
    pipeline.build_index(tmp_path / "idx", ["二"], model=str(rx_model_dir), cache=False)
    assert pipeline.search(tmp_path / "idx", ["二"], k=3, cache=False)[0]["hits"][0]["text"] == "二"
