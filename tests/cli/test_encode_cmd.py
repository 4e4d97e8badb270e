"""``embedkit encode`` and the commands that read its folders, on the command line: shards and
manifest, a rerun of a finished folder, ``index build --embeddings`` (Flat equal to an index
built from text; IVF with the lists on disk), ``whiten --embeddings`` (equal to a fit in
memory), and one-line errors (the scale benchmark: tests/benchmarks/test_bench_scale.py)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from embedkit.cli.main import main
from embedkit.postprocess import RankDeficientWarning, Whitening, load_transform
from embedkit.retrieval.persistence import IVFDATA_FILE
from embedkit.runs import encode as encode_mod
from embedkit.store.encode_folder import EncodeFolder
from tests.conftest import source_sentences

pytest.importorskip("pyarrow")
pytestmark = pytest.mark.filterwarnings("ignore::embedkit.postprocess.RankDeficientWarning")

N_QUERIES = 6


def corpus_texts() -> list[str]:
    base = list(dict.fromkeys(source_sentences()))
    return base + [s[::-1] for s in base]


@pytest.fixture(scope="session")
def spread_model_dir(make_tiny_bert) -> Path:
    """A tiny BERT whose [CLS] vectors differ enough between texts that hit orders are stable
    (with the default initializer_range 0.02 nearly every cosine is 0.99999)."""
    return make_tiny_bert("encode-bert", source_sentences(), initializer_range=0.5)


@pytest.fixture(autouse=True)
def _flush_every_shard(monkeypatch):
    monkeypatch.setattr(encode_mod, "FLUSH_SECONDS", 0.0)


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(corpus_texts()) + "\n", encoding="utf-8")
    return path


def encode_argv(model, corpus, out, *extra) -> list[str]:
    return ["encode", "--model", str(model), "--pooling", "cls", "--corpus", str(corpus),
            "--out", str(out), "--shard-size", "50", "--max-length", "32", "--no-cache",
            *map(str, extra)]


@pytest.fixture
def encoded(tmp_path, spread_model_dir, corpus, capsys) -> Path:
    out = tmp_path / "emb"
    assert main(encode_argv(spread_model_dir, corpus, out)) == 0
    capsys.readouterr()
    return out


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("embedkit: error: ")
    return err[0]


def search_hits(index, queries_file, capsys, *extra) -> list[list[str]]:
    """The hit texts of each query, in order."""
    capsys.readouterr()
    assert main(["index", "search", "--index", str(index), "--queries", str(queries_file),
                 "-k", "5", "--no-cache", *map(str, extra)]) == 0
    lines = capsys.readouterr().out.splitlines()
    return [[h["text"] for h in json.loads(line)["hits"]] for line in lines]


@pytest.fixture
def queries_file(tmp_path) -> Path:
    path = tmp_path / "queries.txt"
    path.write_text("\n".join(corpus_texts()[:N_QUERIES]) + "\n", encoding="utf-8")
    return path


def test_encode_writes_shards_and_a_rerun_is_a_no_op(tmp_path, spread_model_dir, corpus,
                                                     capsys):
    out = tmp_path / "emb"
    n = len(corpus_texts())
    assert main(encode_argv(spread_model_dir, corpus, out)) == 0
    cap = capsys.readouterr()
    assert cap.out.startswith(f"wrote {out}: {n} rows in 3 shards (3 encoded this run")
    assert "cls, max length 32, d=32" in cap.out
    assert f"embedkit index build --embeddings {out}" in cap.err
    man = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert man["complete"] and man["total_rows"] == n and man["dim"] == 32
    assert [e["rows"] for e in man["shards"]] == [50, 50, n - 100]
    assert all((out / e["file"]).is_file() for e in man["shards"])
    assert man["recipe"]["pooling"] == "cls" and man["recipe"]["max_length"] == 32
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.parquet")}
    assert main(encode_argv(spread_model_dir, corpus, out)) == 0
    assert capsys.readouterr().out.strip() == (
        f"{out}: already complete ({n} rows in 3 shards); nothing to do")
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.parquet")} == before


def test_index_from_embeddings_equals_index_from_text(tmp_path, spread_model_dir, corpus,
                                                      encoded,
                                                      queries_file, capsys):
    a, b = tmp_path / "from-shards", tmp_path / "from-text"
    assert main(["index", "build", "--embeddings", str(encoded), "--out", str(a)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"indexed {len(corpus_texts())} texts from {encoded} into {a}: Flat")
    assert main(["index", "build", "--model", str(spread_model_dir), "--pooling", "cls",
                 "--corpus", str(corpus), "--max-length", "32", "--no-cache", "--out",
                 str(b)]) == 0
    hits_a = search_hits(a, queries_file, capsys)
    hits_b = search_hits(b, queries_file, capsys)
    texts = set(corpus_texts())
    assert len(hits_a) == N_QUERIES and all(len(h) == 5 and set(h) <= texts for h in hits_a)
    assert [h[0] for h in hits_a] == corpus_texts()[:N_QUERIES]
    assert hits_a == hits_b
    capsys.readouterr()
    query = corpus_texts()[2]
    assert main(["index", "search", "--index", str(a), "--query", query, "-k", "3",
                 "--no-cache"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["query"] == query and res["hits"][0]["text"] == query
    assert res["hits"][0]["user_id"] == "2"  # the shards' ids: row numbers


def test_ivf_on_disk_round_trip(tmp_path, encoded, queries_file, capsys):
    flat, disk = tmp_path / "flat", tmp_path / "disk"
    assert main(["index", "build", "--embeddings", str(encoded), "--out", str(flat)]) == 0
    assert main(["index", "build", "--embeddings", str(encoded), "--factory", "IVF4,Flat",
                 "--on-disk", "--seed", "1", "--out", str(disk)]) == 0
    built, defaults = capsys.readouterr().out.splitlines()[-2:]
    assert built.split("; ")[0].endswith("IVF4,Flat, cosine, 32 -> 32 dims, lists on disk")
    assert defaults.startswith("searches use --nprobe ")
    assert (disk / IVFDATA_FILE).is_file()
    assert json.loads((disk / "index.json").read_text(encoding="utf-8"))["on_disk"] is True
    hits = search_hits(disk, queries_file, capsys, "--nprobe", "4")  # every list: exact
    assert [h[0] for h in hits] == corpus_texts()[:N_QUERIES]
    assert hits == search_hits(flat, queries_file, capsys)


def test_whiten_from_embeddings_equals_fit_in_memory(tmp_path, encoded, capsys):
    out = tmp_path / "w.safetensors"
    assert main(["whiten", "--embeddings", str(encoded), "--out", str(out)]) == 0
    n = len(corpus_texts())
    assert capsys.readouterr().out.strip().endswith(
        f"max length 32; fitted on {n} vectors of {encoded}")
    x = np.concatenate([v for _, _, v in EncodeFolder.open(encoded).shards(texts=False)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficientWarning)
        whole = Whitening().fit(x.astype(np.float64))
    t = load_transform(out)
    assert t.metadata["pooling"] == "cls" and t.metadata["max_length"] == 32
    assert t.metadata["n_samples"] == n
    assert t.kernel.shape == whole.kernel_.shape == (32, 32)
    np.testing.assert_allclose(t.kernel, whole.kernel_.astype(np.float32), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(t.bias, whole.bias_.astype(np.float32), rtol=1e-6, atol=1e-6)


def test_whiten_from_embeddings_k_and_format(tmp_path, encoded, capsys):
    out = tmp_path / "w.npz"
    assert main(["whiten", "--embeddings", str(encoded), "--k", "8", "--fit-unique",
                 "--out", str(out)]) == 0
    assert "d=32 -> k=8" in capsys.readouterr().out
    assert load_transform(out).kernel.shape == (32, 8)


@pytest.mark.parametrize("argv, message", [
    (["index", "build", "--corpus", "{corpus}", "--on-disk", "--out", "{tmp}/i"],
     "--on-disk: on-disk inverted lists need an IVF factory, not 'Flat'"),
    (["index", "build", "--embeddings", "{emb}", "--pooling", "cls", "--out", "{tmp}/i"],
     "with --embeddings the pooling comes from the encode folder's manifest (and the ids from "
     "its shards): drop --pooling and --ids"),
    (["index", "build", "--embeddings", "{emb}", "--post", "whiten:k=8", "--out", "{tmp}/i"],
     "--post: post 'whiten:k=8' has steps to fit, and an index built from shards fits nothing: "
     "give a transform file fitted on them (embedkit whiten with {emb} as embeddings)"),
    (["index", "build", "--embeddings", "{tmp}/nothing", "--out", "{tmp}/i"],
     "--embeddings: {tmp}/nothing/manifest.json: missing"),
    (["index", "build", "--embeddings", "{emb}", "--corpus", "{corpus}", "--out", "{tmp}/i"],
     "argument --corpus: not allowed with argument --embeddings"),
    (["index", "build", "--out", "{tmp}/i"],
     "one of the arguments --corpus --corpus-task --embeddings is required"),
    (["whiten", "--out", "{tmp}/w.safetensors"],
     "give one of --fit-on WHAT or --embeddings DIR"),
    (["whiten", "--fit-on", "{corpus}", "--embeddings", "{emb}", "--out", "{tmp}/w.npz"],
     "give one of --fit-on WHAT or --embeddings DIR"),
    (["whiten", "--embeddings", "{emb}", "--pooling", "cls", "--out", "{tmp}/w.npz"],
     "--pooling: with --embeddings the pooling comes from"),
    (["whiten", "--embeddings", "{emb}", "--max-length", "64", "--out", "{tmp}/w.npz"],
     "--max-length: the vectors were encoded with max_length=32"),
    (["whiten", "--embeddings", "{emb}", "--format", "sentence-transformers", "--out",
      "{tmp}/st"], "--format: whitening from embeddings exports"),
])
def test_bad_input_is_one_line(tmp_path, encoded, corpus, capsys, argv, message):
    fill = {"tmp": str(tmp_path), "emb": str(encoded), "corpus": str(corpus)}
    argv = [a.format(**fill) for a in argv]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse
        code = exit_.code
    assert code == 2
    assert message.format(**fill) in one_error_line(capsys)
    assert not (tmp_path / "i").exists() and not list(tmp_path.glob("w.*"))


def test_whitened_index_from_embeddings_equals_one_from_text(tmp_path, spread_model_dir, corpus,
                                                           encoded, queries_file, capsys):
    """encode -> whiten --embeddings -> index build --embeddings --post -> search: the same
    neighbours as an index built from the texts with the same map."""
    w = tmp_path / "w.safetensors"
    assert main(["whiten", "--embeddings", str(encoded), "--k", "16", "--out", str(w)]) == 0
    a, b = tmp_path / "from-shards", tmp_path / "from-text"
    capsys.readouterr()
    assert main(["index", "build", "--embeddings", str(encoded), "--post", str(w), "--out",
                 str(a)]) == 0
    out = capsys.readouterr().out
    assert f"Flat, cosine, 32 -> 16 dims, post file:{w.resolve()}" in out
    assert main(["index", "build", "--model", str(spread_model_dir), "--pooling", "cls",
                 "--corpus", str(corpus), "--max-length", "32", "--no-cache", "--post", str(w),
                 "--out", str(b)]) == 0
    hits_a = search_hits(a, queries_file, capsys)
    assert hits_a == search_hits(b, queries_file, capsys)
    assert [h[0] for h in hits_a] == corpus_texts()[:N_QUERIES]
    raw = tmp_path / "raw"  # the map is applied: without it the neighbours differ
    assert main(["index", "build", "--embeddings", str(encoded), "--out", str(raw)]) == 0
    assert search_hits(raw, queries_file, capsys) != hits_a
    recipe = json.loads((a / "index.json").read_text(encoding="utf-8"))["recipe"]
    assert recipe["post"] == f"file:{w.resolve()}" and recipe["post_file"] == "post.safetensors"
    assert load_transform(a / "post.safetensors").kernel.shape == (32, 16)
    # a search that names the map gets the index's own
    assert search_hits(a, queries_file, capsys, "--post", str(w)) == hits_a


@pytest.fixture
def other_maps(tmp_path, spread_model_dir, tiny_model_dir, corpus, encoded, capsys
               ) -> dict[str, Path]:
    """Maps fitted on other vectors than ``encoded``'s (model, pooling, max length)."""
    maps = {}
    for name, model, extra in [("model", tiny_model_dir, ["--pooling", "cls"]),
                               ("pooling", spread_model_dir, ["--pooling", "last-avg"]),
                               ("max_length", spread_model_dir, ["--pooling", "cls"])]:
        maps[name] = tmp_path / f"w-{name}.safetensors"
        length = "16" if name == "max_length" else "32"
        assert main(["whiten", "--model", str(model), "--fit-on", str(corpus), *extra,
                     "--max-length", length, "--no-cache", "--out", str(maps[name])]) == 0
    normalized = tmp_path / "emb-normalized"
    assert main(encode_argv(spread_model_dir, corpus, normalized, "--normalize")) == 0
    maps["normalized"] = tmp_path / "w-normalized.safetensors"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["whiten", "--embeddings", str(normalized), "--out",
                     str(maps["normalized"])]) == 0
    capsys.readouterr()
    return maps


@pytest.mark.parametrize("which, message", [
    ("model", "error: {map}: transform file was fitted for model 'sha256:"),
    ("pooling", "error: {map}: transform file was fitted for pooling 'last-avg' but is being "
                "used with pooling 'cls'; use --force to use it anyway"),
    ("max_length", "--post: {map}: transform file was fitted on vectors with max_length=16 but "
                   "the shards of {emb} hold max_length=32; fit it on these shards (embedkit "
                   "whiten with the folder as embeddings) or use --force"),
    ("normalized", "--post: {map}: transform file was fitted on vectors with "
                   "vectors=L2-normalised but the shards of {emb} hold vectors=raw;"),
])
def test_post_fitted_on_other_vectors_is_refused(tmp_path, encoded, other_maps, capsys, which,
                                                 message):
    out = tmp_path / "i"
    assert main(["index", "build", "--embeddings", str(encoded), "--post",
                 str(other_maps[which]), "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert message.format(map=other_maps[which], emb=encoded) in line, line
    assert not out.exists()


def test_post_on_normalized_shards_is_refused(tmp_path, spread_model_dir, corpus, encoded,
                                              capsys):
    w = tmp_path / "w.safetensors"
    assert main(["whiten", "--embeddings", str(encoded), "--out", str(w)]) == 0
    normalized = tmp_path / "emb-normalized"
    assert main(encode_argv(spread_model_dir, corpus, normalized, "--normalize")) == 0
    capsys.readouterr()
    assert main(["index", "build", "--embeddings", str(normalized), "--post", str(w),
                 "--out", str(tmp_path / "i")]) == 2
    assert one_error_line(capsys) == (
        f"embedkit: error: --post: {normalized} holds L2-normalised vectors but queries are "
        "encoded raw, and a post-processor maps both before the cosine normalises: encode "
        "without normalize to index with one")


def test_encode_refuses_a_folder_of_other_settings(tmp_path, spread_model_dir, corpus, encoded,
                                                   capsys):
    assert main(encode_argv(spread_model_dir, corpus, encoded, "--shard-size", "20")) == 2
    assert "--overwrite" in one_error_line(capsys)
    assert main(encode_argv(spread_model_dir, corpus, encoded, "--shard-size", "20",
                            "--overwrite")) == 0
    man = json.loads((encoded / "manifest.json").read_text(encoding="utf-8"))
    assert man["shard_size"] == 20 and len(man["shards"]) == 7


def test_normalized_float16_shards_recorded_and_read(tmp_path, spread_model_dir, corpus,
                                                     encoded, queries_file, capsys):
    """--normalize --precision float16: float16 unit vectors in the shards, recorded in the
    manifest; index build and whiten read them upcast; whitening on them warns and records
    it; an index over them needs the cosine metric."""
    import pyarrow.parquet as pq

    out = tmp_path / "emb16"
    assert main(encode_argv(spread_model_dir, corpus, out, "--normalize",
                            "--precision", "float16")) == 0
    assert "vectors float16, L2-normalised" in capsys.readouterr().out
    man = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert man["vectors"] == {"dtype": "float16", "normalized": True}
    assert (man["settings"]["normalize"], man["settings"]["precision"]) == (True, "float16")
    col = pq.read_table(out / man["shards"][0]["file"]).column("embedding")
    assert str(col.type.value_type) == "halffloat"
    raw = np.concatenate([v for _, _, v in EncodeFolder.open(encoded).shards(texts=False)])
    half = np.concatenate([v for _, _, v in EncodeFolder.open(out).shards(texts=False)])
    assert half.dtype == np.float32  # upcast on read
    unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    np.testing.assert_allclose(half, unit.astype(np.float16).astype(np.float32), atol=0)
    assert (tmp_path / "emb16" / man["shards"][0]["file"]).stat().st_size < (
        encoded / man["shards"][0]["file"]).stat().st_size
    default = json.loads((encoded / "manifest.json").read_text(encoding="utf-8"))
    assert default["vectors"] == {"dtype": "float32", "normalized": False}

    # an index over them: the same hits as over the raw float32 shards (cosine)
    assert main(["index", "build", "--embeddings", str(out), "--out", str(tmp_path / "i16")]) == 0
    assert main(["index", "build", "--embeddings", str(encoded), "--out",
                 str(tmp_path / "i32")]) == 0
    assert search_hits(tmp_path / "i16", queries_file, capsys) == search_hits(
        tmp_path / "i32", queries_file, capsys)
    assert main(["index", "build", "--embeddings", str(out), "--out", str(tmp_path / "ip"),
                 "--metric", "ip"]) == 2
    assert "L2-normalised vectors" in one_error_line(capsys)

    # whitening fitted on normalised vectors: a warning, and the map says so
    w = tmp_path / "w.safetensors"
    with pytest.warns(UserWarning, match="L2-normalised vectors"):
        assert main(["whiten", "--embeddings", str(out), "--out", str(w)]) == 0
    assert load_transform(w).metadata["fit_vectors"] == {"dtype": "float16", "normalized": True}

    # resuming with other storage settings is refused; a post map with normalize too
    assert main(encode_argv(spread_model_dir, corpus, out)) == 2
    assert "other settings" in one_error_line(capsys)
    assert main(encode_argv(spread_model_dir, corpus, tmp_path / "x", "--normalize",
                            "--post", w)) == 2
    assert "normalize stores L2-normalised raw vectors" in one_error_line(capsys)
