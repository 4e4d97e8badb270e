"""``embedkit diagnose`` end to end on the tiny model and the small pair file.

Until ``cli/main.py`` lists the command, the tests add it to ``COMMANDS`` for their own run, so
they go through the real ``main`` (argument parsing, error lines, exit codes).
"""

from __future__ import annotations

import argparse
import json
import math
import shlex

import numpy as np
import pytest

from embedkit.cli import diagnose_cmd
from embedkit.cli import main as cli_main
from embedkit.evaluation import pair_scores
from embedkit.runs.diagnose import RETRIEVAL_K


@pytest.fixture
def main(monkeypatch):
    monkeypatch.setitem(cli_main.COMMANDS, "diagnose", "embedkit.cli.diagnose_cmd")
    return cli_main.main


def diagnose_args(model, spec, *extra):
    return ["diagnose", "--model", str(model), "--tasks", str(spec), "--pooling", "cls,last-avg",
            "--k", "5", "--pairs", "500", "--jl-dims", "8,16", *extra]


def test_diagnose_end_to_end(main, tiny_model_dir, spec_file, tiny_encoder, tmp_path, capsys):
    out, md, plots = tmp_path / "d.json", tmp_path / "d.md", tmp_path / "plots"
    argv = diagnose_args(tiny_model_dir, spec_file, "--post", "whiten:k=16", "--post",
                         "pca:k=8", "--retrieval", "--output", str(out), "--markdown", str(md),
                         "--plots", str(plots))
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert stdout.splitlines()[0].startswith(f"{tiny_model_dir} [torch float32]: diagnostics (k = 5")

    rec = json.loads(out.read_text(encoding="utf-8"))
    assert rec["kind"] == "diagnose" and rec["command"] == shlex.join(["embedkit", *argv])
    assert {"embedkit", "numpy", "faiss-cpu"} <= set(rec["versions"])
    labels = [r["row"] for r in rec["rows"]]
    assert labels == ["cls", "cls + whiten:beta=1,gamma=1,k=16", "cls + pca:k=8",
                      "last-avg", "last-avg + whiten:beta=1,gamma=1,k=16", "last-avg + pca:k=8"]
    from embedkit.data import load_task

    split = load_task(str(spec_file))["test"]
    for r in rec["rows"]:
        assert r["task"] == "tiny-sts"
        assert all(v is not None and math.isfinite(v) for v in r["columns"].values()), r["row"]
        assert r["dim"] == {None: 32, "whiten:beta=1,gamma=1,k=16": 16, "pca:k=8": 8}[r["post"]]
        assert math.isfinite(r["spearman_avg"])
        assert r["spearman"]["test"]["n_pairs"] == 40
        ret = r["retrieval"]["test"]
        assert 0 <= ret["raw"][f"recall@{RETRIEVAL_K}"] <= 1
        assert 0 <= ret["csls"][f"recall@{RETRIEVAL_K}"] <= 1
        if r["post"] is None:  # the raw rows score as bench scores them
            ref = pair_scores(tiny_encoder.encode(split.sentences1, r["pooling"]),
                              tiny_encoder.encode(split.sentences2, r["pooling"]), split.labels)
            assert r["spearman_avg"] == pytest.approx(ref["spearman"], abs=1e-6)
    assert [s["row"] for s in rec["summary"]] == labels
    # the record keeps numbers only; the printed and Markdown conclusions come from them
    assert "conclusions" not in rec
    answers = [ln for ln in stdout.splitlines() if ln.startswith("- Does whitening reduce")]
    assert len(answers) == 1 and answers[0][2:] in md.read_text(encoding="utf-8")

    # plots: per pooling a spectrum and an N_k histogram, one JL plot for the task
    names = sorted(p.name for p in plots.iterdir())
    assert names == ["hubness-tiny-sts-cls.png", "hubness-tiny-sts-last-avg.png",
                     "jl-tiny-sts.png", "spectrum-tiny-sts-cls.png",
                     "spectrum-tiny-sts-last-avg.png"]
    assert all((plots / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in names)
    assert sorted(rec["plots"]) == sorted(str(plots / n) for n in names)

    text = md.read_text(encoding="utf-8")
    assert text.startswith(f"# embedkit diagnose: {tiny_model_dir} [torch float32]\n")
    assert shlex.join(["embedkit", *argv]) in text.split("```")[1]
    assert "- Machine: " in text and "## Measured answers" in text
    assert "## Retrieval: plain cosine vs CSLS" in text and "plots/jl-tiny-sts.png" in text


def test_diagnose_corpus_file(main, tiny_model_dir, sentences, tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    out = tmp_path / "c.json"
    argv = ["diagnose", "--model", str(tiny_model_dir), "--corpus", str(corpus), "--pooling",
            "cls", "--post", "rp:k=8", "--k", "3", "--sample", "40", "--output", str(out)]
    assert main(argv) == 0
    rec = json.loads(out.read_text(encoding="utf-8"))
    assert [r["row"] for r in rec["rows"]] == ["cls", "cls + rp:k=8,kind=gaussian,seed=0"]
    assert rec["settings"]["fit_on"] == "corpus"
    for r in rec["rows"]:
        assert r["spearman"] is None and r["retrieval"] is None
        assert r["diagnostics"]["n_sample"] == 40
        assert r["diagnostics"]["n_vectors"] == len(set(sentences))


@pytest.mark.parametrize("extra, message", [
    (["--k", "0"], "embedkit: error: --k: k must be an integer >= 1; got 0"),
    (["--pooling", "nosuch"], "embedkit: error: --pooling: unknown pooling 'nosuch'"),
    (["--sample", "3"], "embedkit: error: --sample: sample must be larger than k (10)"),
    (["--jl-dims", "8,0"], "embedkit: error: --jl-dims: values must be >= 1, got 0"),
    (["--sweep", "/nonexistent/s.json"], "embedkit: error: --sweep: /nonexistent/s.json"),
])
def test_bad_input_is_one_line(main, tiny_model_dir, spec_file, capsys, extra, message):
    argv = ["diagnose", "--model", str(tiny_model_dir), "--tasks", str(spec_file), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(message)


def test_corpus_and_retrieval_conflict(main, tiny_model_dir, tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text("a\nb\n", encoding="utf-8")
    assert main(["diagnose", "--model", str(tiny_model_dir), "--corpus", str(corpus),
                 "--retrieval"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("embedkit: error: --retrieval: retrieval needs STS tasks")


def test_plots_without_matplotlib_is_a_clear_error(main, tiny_model_dir, spec_file, tmp_path,
                                                   capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    argv = ["diagnose", "--model", str(tiny_model_dir), "--tasks", str(spec_file),
            "--plots", str(tmp_path / "p")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("embedkit: error: --plots: the diagnostics plots need matplotlib: "
                   "pip install 'embedkit[plot]'")


def test_parser_without_main(tiny_model_dir, spec_file, tmp_path):
    """The command module alone, through a parser built here (how a lead wires it up)."""
    p = argparse.ArgumentParser()
    sub = p.add_subparsers()
    diagnose_cmd.add_parser(sub)
    args = p.parse_args(diagnose_args(tiny_model_dir, spec_file, "--output",
                                      str(tmp_path / "x.json")))
    args.command_line = "embedkit diagnose ..."
    assert args.func is diagnose_cmd.run
    assert diagnose_cmd.run(args) == 0
    rec = json.loads((tmp_path / "x.json").read_text(encoding="utf-8"))
    assert rec["command"] == "embedkit diagnose ..." and len(rec["rows"]) == 2


@pytest.fixture
def encode_folder(tiny_model_dir, tmp_path):
    """The distinct real sentences encoded by ``embedkit encode`` (cls, shards of 20): the
    folder and the texts."""
    pytest.importorskip("pyarrow")
    from embedkit.encoders import EncoderConfig
    from embedkit.runs.encode import EncodeSettings, run_encode
    from tests.conftest import source_sentences

    texts = list(dict.fromkeys(source_sentences()))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
    folder = tmp_path / "emb"
    run_encode(EncoderConfig(str(tiny_model_dir), pooling="cls", cache=False), corpus, folder,
               EncodeSettings(shard_size=20, max_length=32))
    return folder, texts


def test_diagnose_an_encode_folder(main, encode_folder, tiny_model_dir, tmp_path, capsys):
    """--embeddings DIR: the folder's vectors, its pooling, chains fitted on them; equal to
    diagnosing the same vectors directly, and no model is loaded."""
    pytest.importorskip("pyarrow")
    from embedkit.diagnostics import profile
    from embedkit.store.encode_folder import EncodeFolder

    folder, texts = encode_folder
    out = tmp_path / "d.json"
    argv = ["diagnose", "--model", str(tmp_path / "no-such-model"), "--embeddings",
            str(folder), "--post", "pca:k=8", "--k", "5", "--pairs", "300", "--jl-dims", "8",
            "--output", str(out)]
    assert main(argv) == 0
    rec = json.loads(out.read_text(encoding="utf-8"))
    assert [r["row"] for r in rec["rows"]] == ["cls", "cls + pca:k=8"]
    assert rec["model"]["name"] == str(tiny_model_dir)
    emb = rec["data"]["embeddings"]
    assert emb["rows_read"] == len(texts)
    # fitted on a seeded half, every row measured on the other half (issue 18)
    half = len(texts) // 2
    assert (emb["rows_fitted"], emb["rows_measured"]) == (half, len(texts) - half)
    assert rec["settings"]["fit_on"] == (f"embeddings: {half} of the rows read (seed 0); every "
                                         f"row measured on the other {len(texts) - half}")
    x = EncodeFolder.open(folder).sample(len(texts)).astype(np.float64)
    measured = np.sort(np.random.default_rng(0).permutation(len(texts))[half:])
    ref = profile(x[measured], k=5, n_pairs=300, jl_dims=(8,))
    got = rec["rows"][0]["diagnostics"]
    assert got["anisotropy"]["mean_cosine"] == pytest.approx(ref["anisotropy"]["mean_cosine"])
    assert got["hubness"]["skewness"] == pytest.approx(ref["hubness"]["skewness"])
    capsys.readouterr()
    assert main(["diagnose", "--embeddings", str(folder), "--pooling", "cls"]) == 2
    assert "--pooling: with --embeddings" in capsys.readouterr().err
    assert main(["diagnose", "--embeddings", str(folder), "--retrieval"]) == 2
    assert "encode folder has none" in capsys.readouterr().err


def test_diagnose_embeddings_measures_a_map_on_vectors_it_was_not_fitted_on(main, encode_folder,
                                                                             tmp_path):
    """Whitening measured on the vectors it was fitted on is isotropic by construction
    (IsoScore 1.000); diagnose --embeddings measures it on a held-out half instead."""
    pytest.importorskip("pyarrow")
    folder, _ = encode_folder
    out = tmp_path / "d.json"
    assert main(["diagnose", "--embeddings", str(folder), "--post", "whiten:k=8", "--k", "5",
                 "--pairs", "300", "--jl-dims", "8", "--output", str(out)]) == 0
    rows = json.loads(out.read_text(encoding="utf-8"))["rows"]
    iso = rows[1]["diagnostics"]["spectrum"]["isoscore"]
    assert rows[1]["row"] == "cls + whiten:beta=1,gamma=1,k=8" and 0 < iso < 0.99
