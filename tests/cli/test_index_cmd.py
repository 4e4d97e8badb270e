"""``embedkit index build|add|search|eval`` end to end on the tiny random BERT."""

from __future__ import annotations

import hashlib
import json
import shlex

import numpy as np
import pytest

from embedkit.cli.main import main
from embedkit.cli.parsing import parse_int_list, split_factories
from embedkit.errors import ConfigError

POST = "whiten:beta=1,gamma=1,k=16"


def build(model, corpus, out, *extra):
    return main(["index", "build", "--model", str(model), "--pooling", "cls",
                 "--corpus", str(corpus), "--out", str(out), *extra])


def search(index, *extra):
    return main(["index", "search", "--index", str(index), *extra])


def errors(text):
    """The error lines of stderr (progress lines start with 'embedkit: ' too)."""
    return [line for line in text.splitlines() if line.startswith("embedkit: error:")]


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def cosine_top(queries, corpus, k):
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    cn = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    sims = qn @ cn.T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(sims, order, axis=1)


@pytest.fixture
def built(rx_model_dir, rx_corpus_file, tmp_path, capsys):
    out = tmp_path / "idx"
    assert build(rx_model_dir, rx_corpus_file, out, "--post", POST) == 0
    capsys.readouterr()
    return out


def test_build_search_round_trip_matches_numpy(built, rx_encoder, rx_texts, tmp_path, capsys):
    from embedkit.postprocess import parse_post

    queries = rx_texts[:6] + ["天气怎么样", "我想看书"]
    qfile = tmp_path / "q.txt"
    qfile.write_text("\n".join(queries) + "\n\n", encoding="utf-8")
    assert search(built, "--queries", str(qfile), "-k", "5") == 0
    results = json_lines(capsys.readouterr().out)
    assert [r["query"] for r in results] == queries

    x = rx_encoder.encode(rx_texts, "cls", max_length=64)
    pipe = parse_post(POST).fit(x)
    ids, scores = cosine_top(pipe.transform(rx_encoder.encode(queries, "cls")), pipe.transform(x), 5)
    for r, row_ids, row_scores in zip(results, ids, scores, strict=True):
        assert [h["id"] for h in r["hits"]] == row_ids.tolist()
        assert [h["text"] for h in r["hits"]] == [rx_texts[i] for i in row_ids]
        np.testing.assert_allclose([h["score"] for h in r["hits"]], row_scores, atol=1e-4)
        assert set(r["hits"][0]) == {"id", "text", "score"}

    meta = json.loads((built / "index.json").read_text(encoding="utf-8"))
    rec = meta["recipe"]
    assert rec["model_identity"] == rx_encoder.identity
    assert (rec["pooling"], rec["max_length"], rec["post"]) == ("cls", 64, POST)
    post_sha = hashlib.sha256((built / "post.safetensors").read_bytes()).hexdigest()
    assert rec["post_sha256"] == meta["files"]["post.safetensors"] == post_sha
    assert rec["fit"]["on"] == "corpus" and rec["fit"]["n_sentences"] == len(rx_texts)
    assert (meta["factory"], meta["metric"], meta["dim_in"], meta["dim"]) == ("Flat", "cosine",
                                                                             32, 16)


def test_baked_transform_equals_fitted(built, rx_encoder, rx_texts):
    from embedkit.postprocess import AffineMap, load_transform, parse_post
    from embedkit.retrieval.index import EmbeddingIndex

    x = rx_encoder.encode(rx_texts, "cls", max_length=64)
    fitted = AffineMap.from_pipeline(parse_post(POST).fit(x))
    kernel, bias = fitted.kernel, fitted.bias
    assert not fitted.normalize
    baked = EmbeddingIndex.load(built).affine_map()
    np.testing.assert_allclose(baked.kernel, kernel, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(baked.bias @ baked.kernel, bias @ kernel, rtol=1e-4, atol=1e-4)
    t = load_transform(built / "post.safetensors")
    np.testing.assert_allclose(t.map.kernel, kernel, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(t.map.bias, bias, rtol=1e-5, atol=1e-6)
    assert t.metadata["model_identity"] == rx_encoder.identity
    assert (t.metadata["pooling"], t.metadata["spec"], t.metadata["d"]) == ("cls", POST, 32)


def test_transform_file_is_checked(rx_model_dir, rx_corpus_file, rx_encoder, rx_texts, tmp_path,
                                   capsys):
    from embedkit.postprocess import AffineMap, parse_post, save_transform

    x = rx_encoder.encode(rx_texts, "cls")
    amap = AffineMap.from_pipeline(parse_post("pca:k=8").fit(x))
    good = tmp_path / "good.safetensors"
    save_transform(good, amap, {"model": rx_encoder.identity, "pooling": "cls"})
    assert build(rx_model_dir, rx_corpus_file, tmp_path / "a", "--post", str(good)) == 0
    rec = json.loads((tmp_path / "a" / "index.json").read_text())["recipe"]
    assert rec["post"] == f"file:{good.resolve()}" and rec["fit"] is None
    assert rec["post_sources"][0]["sha256"] == hashlib.sha256(good.read_bytes()).hexdigest()
    capsys.readouterr()

    bad = tmp_path / "bad.safetensors"
    save_transform(bad, amap, {"model": rx_encoder.identity, "pooling": "last-avg"})
    assert build(rx_model_dir, rx_corpus_file, tmp_path / "b", "--post", str(bad)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("embedkit: error: ") and "pooling" in err[0]
    assert str(bad) in err[0]  # checked before any encoding, named
    assert not (tmp_path / "b").exists()
    with pytest.warns(UserWarning, match="pooling"):
        assert build(rx_model_dir, rx_corpus_file, tmp_path / "b", "--post", str(bad),
                     "--force") == 0


def test_add_skips_texts_already_present(rx_model_dir, rx_texts, tmp_path, capsys):
    first = tmp_path / "first.txt"
    first.write_text("\n".join(rx_texts[:20]) + "\n", encoding="utf-8")
    out = tmp_path / "idx"
    assert build(rx_model_dir, first, out, "--post", "pca:k=8") == 0
    post_before = (out / "post.safetensors").read_bytes()
    more = tmp_path / "more.txt"
    new = rx_texts[20:30]
    more.write_text("\n".join(rx_texts[15:20] + new + new[:3]) + "\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["index", "add", "--index", str(out), "--corpus", str(more)]) == 0
    assert capsys.readouterr().out.startswith("added 10, skipped 8 already indexed; 30 texts")
    texts = [json.loads(line)["text"] for line in (out / "texts.jsonl").read_text().splitlines()]
    assert texts == rx_texts[:30]
    assert (out / "post.safetensors").read_bytes() == post_before
    rec = json.loads((out / "index.json").read_text())["recipe"]
    assert [c["n_indexed"] for c in rec["corpus"]] == [20, 10]
    assert main(["index", "add", "--index", str(out), "--corpus", str(more)]) == 0
    assert capsys.readouterr().out.startswith("added 0, skipped 18")
    assert search(out, "--query", new[4], "-k", "1") == 0
    hit = json_lines(capsys.readouterr().out)[0]["hits"][0]
    assert (hit["id"], hit["text"]) == (24, new[4]) and hit["score"] == pytest.approx(1, abs=1e-4)


def test_recipe_mismatch_refused_unless_forced(built, rx_model_dir, capsys):
    assert search(built, "--query", "今天天气很好", "--pooling", "last-avg") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("embedkit: error: index was built with pooling=cls but --pooling "
                             "last-avg was given")
    for flag, value in (("--max-length", "32"), ("--post", "pca:k=8"), ("--model", "bert-x")):
        assert search(built, "--query", "今天", flag, value) == 2, flag
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    # the same settings, spelled differently, are no conflict
    assert search(built, "--query", "今天", "--model", str(rx_model_dir), "--pooling", "CLS",
                  "--post", "whiten:k=16", "--max-length", "64") == 0
    capsys.readouterr()
    with pytest.warns(UserWarning, match="pooling"):
        assert search(built, "--query", "今天天气很好", "--pooling", "last-avg", "--force") == 0
    assert len(json_lines(capsys.readouterr().out)[0]["hits"]) == 10


@pytest.mark.parametrize("victim", ["texts.jsonl", "index.faiss", "post.safetensors"])
def test_tampered_index_refused(built, victim, capsys):
    path = built / victim
    data = bytearray(path.read_bytes())
    data[-2] ^= 1
    path.write_bytes(bytes(data))
    assert search(built, "--query", "今天天气很好") == 2
    err = capsys.readouterr().err.strip()
    assert victim in err and "changed since the index was saved" in err
    assert len(err.splitlines()) == 1


def test_empty_and_single_text_corpus(rx_model_dir, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    assert build(rx_model_dir, empty, tmp_path / "e") == 0
    assert "the corpus is empty" in capsys.readouterr().err
    assert search(tmp_path / "e", "--query", "今天") == 0
    assert json_lines(capsys.readouterr().out) == [{"query": "今天", "hits": []}]

    one = tmp_path / "one.txt"
    one.write_text("今天天气很好\n", encoding="utf-8")
    assert build(rx_model_dir, one, tmp_path / "o") == 0
    capsys.readouterr()
    assert search(tmp_path / "o", "--query", "明天", "-k", "5") == 0
    hits = json_lines(capsys.readouterr().out)[0]["hits"]
    assert [h["text"] for h in hits] == ["今天天气很好"]
    # a chain cannot be fitted on one sentence: one clear line, no folder
    assert build(rx_model_dir, one, tmp_path / "w", "--post", "whiten") == 2
    err = errors(capsys.readouterr().err)
    assert len(err) == 1 and "at least 2" in err[0] and not (tmp_path / "w").exists()


def test_queries_longer_than_max_length(rx_model_dir, rx_corpus_file, rx_encoder, rx_texts,
                                        tmp_path, capsys):
    out = tmp_path / "idx"
    assert build(rx_model_dir, rx_corpus_file, out, "--max-length", "8") == 0
    capsys.readouterr()
    long_query = "今天天气很好" * 50  # 300 characters, far beyond 8 tokens and 64 positions
    assert search(out, "--query", long_query, "-k", "3") == 0
    hits = json_lines(capsys.readouterr().out)[0]["hits"]
    x = rx_encoder.encode(rx_texts, "cls", max_length=8)
    q = rx_encoder.encode([long_query[:6]], "cls", max_length=8)  # the 6 tokens that fit
    ids, scores = cosine_top(q, x, 3)
    assert [h["id"] for h in hits] == ids[0].tolist()
    np.testing.assert_allclose([h["score"] for h in hits], scores[0], atol=1e-4)


def test_ivf_hnsw_ids_and_output_file(rx_model_dir, rx_corpus_file, rx_texts, tmp_path, capsys):
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"doc-{i}\n" for i in range(len(rx_texts))), encoding="utf-8")
    assert build(rx_model_dir, rx_corpus_file, tmp_path / "flat", "--ids", str(ids)) == 0
    assert build(rx_model_dir, rx_corpus_file, tmp_path / "ivf", "--factory", "IVF2,Flat",
                 "--metric", "ip") == 0
    assert build(rx_model_dir, rx_corpus_file, tmp_path / "hnsw", "--factory", "HNSW8") == 0
    capsys.readouterr()
    out = tmp_path / "hits.jsonl"
    assert search(tmp_path / "flat", "--query", rx_texts[3], "--output", str(out)) == 0
    assert capsys.readouterr().out == ""
    flat = json_lines(out.read_text(encoding="utf-8"))[0]["hits"]
    assert flat[0]["user_id"] == "doc-3" and flat[0]["text"] == rx_texts[3]
    assert search(tmp_path / "hnsw", "--query", rx_texts[3], "--ef-search", "64") == 0
    hnsw = json_lines(capsys.readouterr().out)[0]["hits"]
    assert [h["id"] for h in hnsw] == [h["id"] for h in flat]
    assert search(tmp_path / "ivf", "--query", rx_texts[3], "--nprobe", "2", "-k", "3") == 0
    assert json_lines(capsys.readouterr().out)[0]["hits"][0]["id"] == 3
    assert search(tmp_path / "flat", "--query", "x", "--nprobe", "2") == 2
    assert "IVF" in capsys.readouterr().err


def test_build_from_task_corpus(rx_model_dir, rx_spec_file, rx_texts, tmp_path, capsys):
    out = tmp_path / "idx"
    assert main(["index", "build", "--model", str(rx_model_dir), "--corpus-task",
                 f"{rx_spec_file}:test", "--out", str(out), "--post", "pca:k=4"]) == 0
    assert "indexed 40 texts" in capsys.readouterr().out
    meta = json.loads((out / "index.json").read_text())
    assert meta["ntotal"] == 40 and meta["dim"] == 4
    corpus = meta["recipe"]["corpus"][0]
    assert corpus["source"] == "tasks" and corpus["tasks"]["rx-pairs"]["test"]["n_pairs"] == 20


def test_eval_quality(rx_model_dir, rx_spec_file, tmp_path, capsys):
    out, md = tmp_path / "eval.json", tmp_path / "eval.md"
    argv = ["index", "eval", "--model", str(rx_model_dir), "--pooling", "cls", "--tasks",
            str(rx_spec_file), "--post", "whiten:beta=1,gamma=1,k=all", "--post",
            "whiten:beta=1,gamma=1,k=8", "--output", str(out), "--markdown", str(md)]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert "whiten:beta=1,gamma=1,k=8" in stdout and "rx-pairs/test" in stdout
    rec = json.loads(out.read_text(encoding="utf-8"))
    rows = rec["quality"]
    assert [r["post"] for r in rows] == [None, "whiten:beta=1,gamma=1,k=all",
                                         "whiten:beta=1,gamma=1,k=8"]
    for r in rows:
        for key in ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10"):
            assert 0.0 <= r[key] <= 1.0
        assert r["recall@1"] <= r["recall@5"] <= r["recall@10"]
        assert (r["n_queries"], r["n_corpus"]) == (10, 40)
    assert rows[1]["fit"]["on"] == "task:rx-pairs:test" and rows[2]["dim"] == 8
    d = rec["data"]["quality"]["rx-pairs"]["test"]
    assert d["threshold"] == 1.0
    assert d["sha256"] == hashlib.sha256((rx_spec_file.parent / "pairs.tsv").read_bytes()).hexdigest()
    assert rec["model"]["identity"].startswith("sha256:") and "faiss-cpu" in rec["versions"]
    assert rec["command"] == shlex.join(["embedkit", *argv]) and rec["cost"] is None
    text = md.read_text(encoding="utf-8")
    assert text.startswith(f"# embedkit index eval: {rx_model_dir} [torch float32]\n")
    assert stdout.startswith(f"{rx_model_dir} [torch float32]: retrieval quality x 100")
    assert "Regenerate with:" in text and rec["command"] in text and "Versions:" in text


def test_eval_cost(rx_model_dir, rx_spec_file, tmp_path, capsys):
    out = tmp_path / "cost.json"
    assert main(["index", "eval", "--model", str(rx_model_dir), "--cost-corpus-tasks",
                 f"{rx_spec_file}:test", "--factories", "IVF4,Flat,HNSW8", "--factory", "Flat",
                 "--nprobe", "1,4", "--ef-search", "16", "--queries", "15",
                 "--single-queries", "3", "--cost-post", "pca:k=16", "--output",
                 str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "approximate index" in stdout
    cost = json.loads(out.read_text(encoding="utf-8"))["cost"]
    rows = cost["rows"]
    assert [(r["factory"], r["param"]) for r in rows] == [
        ("Flat", ""), ("IVF4,Flat", "nprobe=1"), ("IVF4,Flat", "nprobe=4"),
        ("HNSW8", "efSearch=16")]
    assert rows[0]["recall@10"] == 1.0 and not rows[0]["meets_target"]
    assert rows[2]["recall@10"] == pytest.approx(1.0)  # every list probed: exact
    assert cost["n_corpus"] == 40 and cost["n_queries"] == 15 and cost["post"] == "pca:k=16"
    for r in rows:
        assert r["qps_batch"] > 0 and r["disk_bytes"] > 0 and isinstance(r["meets_target"], bool)
        assert r["meets_target"] == (r is not rows[0] and r["recall@10"] >= 0.95
                                     and r["speedup"] >= 5)
    if cost["best"] is not None:
        assert any(r["meets_target"] and r["factory"] == cost["best"]["factory"] for r in rows)


def test_eval_needs_a_part(rx_model_dir, capsys):
    assert main(["index", "eval", "--model", str(rx_model_dir)]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err


@pytest.mark.reliability("9.tb", "embedkit index eval --post none: the raw row, no traceback")
def test_eval_post_none_is_the_raw_row(rx_model_dir, rx_spec_file, tmp_path, capsys):
    """--post none used to end in an AttributeError traceback; none is the raw row."""
    out = tmp_path / "eval.json"
    assert main(["index", "eval", "--model", str(rx_model_dir), "--pooling", "cls", "--tasks",
                 str(rx_spec_file), "--post", "none", "--post", "pca:k=4", "--cost-corpus-tasks",
                 f"{rx_spec_file}:test", "--factories", "Flat", "--queries", "5",
                 "--single-queries", "1", "--cost-post", "none", "--output", str(out)]) == 0
    assert "Traceback" not in capsys.readouterr().err
    rec = json.loads(out.read_text(encoding="utf-8"))
    assert [r["post"] for r in rec["quality"]] == [None, "pca:k=4"]
    assert rec["cost"]["post"] is None


def test_eval_threads_and_protocol(rx_model_dir, rx_encoder, rx_spec_file, tmp_path, capsys):
    import faiss

    before = faiss.omp_get_max_threads()
    out = tmp_path / "eval.json"
    assert main(["index", "eval", "--model", str(rx_model_dir), "--cost-corpus-tasks",
                 f"{rx_spec_file}:test", "--factories", "Flat", "--queries", "5",
                 "--single-queries", "1", "--threads", "1", "--faiss-threads", "2",
                 "--protocol", "cmteb",
                 "--output", str(out)]) == 0
    rec = json.loads(out.read_text(encoding="utf-8"))
    # --faiss-threads is FAISS's; --threads (1) the encoder's only
    assert rec["settings"]["faiss_threads"] == 2 and rec["settings"]["protocol"] == "cmteb"
    assert rec["cost"]["max_length"] == rx_encoder.model_max_length()  # cmteb: the model's
    assert faiss.omp_get_max_threads() == before  # restored after the run


def test_factory_and_int_lists():
    assert split_factories(["Flat", "IVF1024,PQ32", "PCA64,IVF256,Flat,HNSW32,SQ8"]) == [
        "Flat", "IVF1024,PQ32", "PCA64,IVF256,Flat", "HNSW32,SQ8"]
    assert split_factories("HNSW32,Flat") == ["HNSW32", "Flat"]
    assert split_factories(None) == []
    with pytest.raises(ConfigError, match="--nprobe"):
        parse_int_list("1,x", "--nprobe")
    with pytest.raises(ConfigError, match=">= 1"):
        parse_int_list("0", "--ef-search")


def test_eval_bad_nprobe_is_one_line(rx_model_dir, capsys):
    assert main(["index", "eval", "--model", str(rx_model_dir), "--cost-corpus-tasks", "x",
                 "--nprobe", "1,x"]) == 2
    err = errors(capsys.readouterr().err)
    assert len(err) == 1 and "--nprobe" in err[0]


def test_ivf_build_stores_a_default_nprobe_that_search_uses(rx_model_dir, rx_corpus_file,
                                                            rx_texts, tmp_path, capsys):
    out = tmp_path / "ivf"
    assert build(rx_model_dir, rx_corpus_file, out, "--factory", "IVF4,Flat") == 0
    said = capsys.readouterr().out
    meta = json.loads((out / "index.json").read_text(encoding="utf-8"))
    d = meta["recipe"]["search_defaults"]
    assert d["nprobe"] in (1, 2, 4) and (d["target"], d["k"]) == (0.95, 10)
    assert d["recall_at_10"] >= 0.95 and d["queries"] == len(rx_texts)
    assert (f"searches use --nprobe {d['nprobe']} unless given: recall@10 {d['recall_at_10']} "
            f"against exact search on {len(rx_texts)} sampled vectors") in said

    def ids(*extra):
        assert search(out, "--query", rx_texts[5], "-k", "8", *extra) == 0
        return [h["id"] for h in json_lines(capsys.readouterr().out)[0]["hits"]]

    assert ids() == ids("--nprobe", str(d["nprobe"]))  # the default, unless given
    assert ids("--nprobe", "4") == ids("--nprobe", "4")
    # a folder from before defaults were stored searches with FAISS's nprobe=1
    flat = tmp_path / "flat"
    assert build(rx_model_dir, rx_corpus_file, flat) == 0
    assert "searches use" not in capsys.readouterr().out
    assert "search_defaults" not in json.loads((flat / "index.json").read_text())["recipe"]
