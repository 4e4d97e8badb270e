"""``embedkit bench`` end to end on the tiny model and the small pair file."""

from __future__ import annotations

import hashlib
import json
import shlex

import pytest

from embedkit.cli.main import main
from embedkit.encoders import model_identity
from embedkit.evaluation import pair_scores


def bench_args(model, spec, *extra):
    return ["bench", "--model", str(model), "--tasks", str(spec), "--pooling", "cls,last-avg",
            *extra]


def test_bench_end_to_end(tiny_model_dir, spec_file, pairs_file, tiny_encoder, tmp_path, capsys):
    out = tmp_path / "out.json"
    argv = bench_args(tiny_model_dir, spec_file, "--output", str(out))
    assert main(argv) == 0
    stdout = capsys.readouterr().out.splitlines()
    assert stdout[0] == f"{tiny_model_dir}: Spearman x 100 (whitening protocol)"
    assert stdout[1].split() == ["row", "tiny-sts/test", "avg"]
    assert [line.split()[0] for line in stdout[2:4]] == ["cls", "last-avg"]
    assert stdout[4].startswith("[") and "encoded" in stdout[4]

    rec = json.loads(out.read_text(encoding="utf-8"))
    assert {"embedkit", "torch", "transformers", "python", "numpy"} <= set(rec["versions"])
    assert rec["versions"]["embedkit"] == rec["embedkit"] == "0.1.0"
    assert rec["command"] == shlex.join(["embedkit", *argv])
    assert rec["model"]["identity"] == model_identity(str(tiny_model_dir)) == tiny_encoder.identity
    assert (rec["model"]["hidden_size"], rec["model"]["num_layers"]) == (32, 2)
    s = rec["settings"]
    assert s["poolings"] == ["cls", "last-avg"] and s["tasks"] == ["tiny-sts"]
    assert s["task_specs"] == {"tiny-sts": str(spec_file)}
    assert s["splits"] == {"tiny-sts": ["test"]} and s["max_length"] == {"tiny-sts": 64}
    assert (s["protocol"], s["dtype"], s["device"], s["batch_size"]) == ("whitening", "float32",
                                                                        "cpu", 64)
    d = rec["data"]["tiny-sts"]["test"]
    assert d["sha256"] == hashlib.sha256(pairs_file.read_bytes()).hexdigest()
    assert (d["n_pairs"], d["skipped"], d["source"]) == (40, 0, str(pairs_file))

    from embedkit.data import load_task

    split = load_task(str(spec_file))["test"]
    for pooling in ("cls", "last-avg"):
        r = rec["results"][pooling]
        assert (r["pooling"], r["post"]) == (pooling, None)
        ref = pair_scores(tiny_encoder.encode(split.sentences1, pooling),
                          tiny_encoder.encode(split.sentences2, pooling), split.labels)
        t = r["tiny-sts"]["test"]
        assert t["n_pairs"] == 40
        assert t["spearman"] == pytest.approx(ref["spearman"], abs=1e-6)
        assert t["pearson"] == pytest.approx(ref["pearson"], abs=1e-5)
        assert r["tiny-sts"]["avg"]["spearman"] == r["avg"]["spearman"] == t["spearman"]
        assert r["tiny-sts"]["w-avg"]["pearson"] == pytest.approx(t["pearson"])
        assert rec["metrics"][pooling]["avg/spearman"] == t["spearman"]
        # the table shows Spearman x 100 with two decimals
        row = next(line for line in stdout if line.split()[0] == pooling)
        assert row.split()[1] == f"{100 * t['spearman']:.2f}"
    assert rec["primary_metric"] == "avg/spearman"
    n_unique = len(split.unique_sentences())
    tm = rec["timings"]
    assert (tm["sentences"], tm["unique_sentences"], tm["cache_hits"], tm["encoded"]) == (
        n_unique, n_unique, 0, n_unique)
    assert tm["seconds_total"] >= tm["seconds_encoding"] >= 0

    # again: same numbers, everything from the cache
    out2 = tmp_path / "out2.json"
    assert main(bench_args(tiny_model_dir, spec_file, "--output", str(out2))) == 0
    rec2 = json.loads(out2.read_text(encoding="utf-8"))
    assert rec2["results"] == rec["results"]
    assert rec2["timings"]["encoded"] == 0 and rec2["timings"]["cache_hits"] == n_unique
    assert "0 encoded" in capsys.readouterr().out


def test_markdown_report_file(tiny_model_dir, spec_file, tmp_path, capsys):
    md = tmp_path / "report.md"
    argv = bench_args(tiny_model_dir, spec_file, "--markdown", str(md))
    assert main(argv) == 0
    assert "tiny-sts/test" in capsys.readouterr().out  # the table is still printed
    lines = md.read_text(encoding="utf-8").splitlines()
    assert lines[0] == f"# embedkit bench: {tiny_model_dir}"
    assert lines[2:6] == ["Regenerate with:", "", "```", shlex.join(["embedkit", *argv])]
    text = "\n".join(lines)
    assert "| row | tiny-sts/test | avg |" in text and "## Pearson x 100" in text
    assert "| tiny-sts | test | 40 | 0 |" in text


def test_markdown_to_stdout(tiny_model_dir, spec_file, capsys):
    assert main(bench_args(tiny_model_dir, spec_file, "--markdown")) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# embedkit bench: {tiny_model_dir}\n\nRegenerate with:")


def test_output_to_stdout_json(tiny_model_dir, spec_file, capsys):
    assert main(bench_args(tiny_model_dir, spec_file, "--output", "-", "--markdown",
                           "-")) == 0
    out = capsys.readouterr().out
    rec = json.JSONDecoder().raw_decode(out)[0]
    assert rec["settings"]["tasks"] == ["tiny-sts"]


def test_no_cache_writes_nothing(tiny_model_dir, spec_file, tmp_path, capsys):
    cache = tmp_path / "embedkit-cache"
    assert main(bench_args(tiny_model_dir, spec_file, "--no-cache")) == 0
    assert not cache.exists()
    assert main(bench_args(tiny_model_dir, spec_file)) == 0
    assert (cache / "embeddings").is_dir()


def test_cache_dir_option(tiny_model_dir, spec_file, tmp_path, capsys):
    other = tmp_path / "other-cache"
    assert main(bench_args(tiny_model_dir, spec_file, "--cache-dir", str(other))) == 0
    assert len(list((other / "embeddings").iterdir())) == 2  # one namespace per pooling
    assert not (tmp_path / "embedkit-cache").exists()


def test_skip_invalid_reports_the_count(tiny_model_dir, tmp_path, pairs_file, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text(pairs_file.read_text(encoding="utf-8") + "一个\t两个\t9\n只有一列\n",
                   encoding="utf-8")
    spec = tmp_path / "bad.json"
    spec.write_text(json.dumps({"name": "bad", "files": {"test": "bad.tsv"},
                                "label_range": [0, 5]}))
    out = tmp_path / "o.json"
    assert main(["bench", "--model", str(tiny_model_dir), "--tasks", str(spec), "--pooling",
                 "cls", "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"embedkit: error: {bad}:41: label '9' is outside the range [0, 5]" in err
    assert not out.exists()
    assert main(["bench", "--model", str(tiny_model_dir), "--tasks", str(spec), "--pooling",
                 "cls", "--skip-invalid", "--output", str(out)]) == 0
    assert "embedkit: bad/test: skipped 2 invalid rows" in capsys.readouterr().err
    rec = json.loads(out.read_text())
    assert rec["data"]["bad"]["test"]["n_pairs"] == 40 and rec["data"]["bad"]["test"]["skipped"] == 2
    assert rec["settings"]["skip_invalid"] is True


def test_layers_avg_pooling_option(tiny_model_dir, spec_file, tmp_path, capsys):
    out = tmp_path / "o.json"
    assert main(["bench", "--model", str(tiny_model_dir), "--tasks", str(spec_file),
                 "--pooling", "layers-avg:1,-1", "--pooling", "mean", "--output", str(out)]) == 0
    assert json.loads(out.read_text())["settings"]["poolings"] == ["layers-avg:1,-1", "last-avg"]


def test_default_pooling_is_the_models(tiny_model_dir, spec_file, tmp_path, capsys):
    out = tmp_path / "o.json"
    assert main(["bench", "--model", str(tiny_model_dir), "--tasks", str(spec_file),
                 "--output", str(out)]) == 0
    assert json.loads(out.read_text())["settings"]["poolings"] == ["cls"]


# -- --mteb-results and --predictions ----------------------------------------------------------

def test_mteb_results_and_predictions(tiny_model_dir, spec_file, tmp_path, capsys):
    """The mteb files load with mteb's own loader and hold the bench's Spearman; the predictions
    have one row per pair, the gold labels, and cosines whose Spearman is the bench's."""
    mteb = pytest.importorskip("mteb")
    from embedkit.data import load_task
    from embedkit.evaluation.metrics import spearman
    from embedkit.experiments.predictions import read_predictions

    # DIR plays mteb's results folder: ResultCache(cache_path=P) reads P/results
    out, res, pred = tmp_path / "b.json", tmp_path / "mteb" / "results", tmp_path / "pred"
    assert main(bench_args(tiny_model_dir, spec_file, "--protocol", "cmteb", "--output", str(out),
                           "--mteb-results", str(res), "--predictions", str(pred),
                           "--predictions-format", "jsonl")) == 0
    err = capsys.readouterr().err
    assert f"embedkit: mteb results: 2 task files in 2 experiment folders under {res}" in err
    assert f"embedkit: predictions: 2 files under {pred}" in err
    rec = json.loads(out.read_text(encoding="utf-8"))
    assert rec["timings"]["encoded"] > 0

    files = sorted(res.rglob("tiny-sts.json"))
    assert len(files) == 2
    for path in files:
        tr = mteb.TaskResult.from_disk(path)
        pooling = "cls" if "pooling_cls" in str(path) else "last-avg"
        want = rec["results"][pooling]["tiny-sts"]["test"]["spearman"]
        assert tr.task_name == "tiny-sts"
        assert tr.get_score(splits=["test"]) == pytest.approx(want, abs=1e-6)
        # mteb stores 0..1; the table prints x 100
        assert 100 * tr.scores["test"][0]["cosine_spearman"] == pytest.approx(100 * want,
                                                                              abs=1e-4)
    cache = mteb.ResultCache(cache_path=tmp_path / "mteb")
    loaded = cache.load_results(include_remote=False, load_experiments="match_name")
    assert len(loaded.model_results) == 2

    split = load_task(str(spec_file))["test"]
    index = json.loads((pred / "predictions.json").read_text(encoding="utf-8"))
    assert set(index["rows"]) == {"cls", "last-avg"}
    for pooling in ("cls", "last-avg"):
        info = index["rows"][pooling]["tiny-sts"]["test"]
        cols = read_predictions(info["path"])
        assert info["path"] == str(pred / pooling / "tiny-sts" / "test.jsonl")
        assert cols["i"] == list(range(split.n_pairs)) == list(range(40))
        assert cols["label"] == split.labels.tolist()
        assert cols["sentence1"] == split.sentences1 and cols["sentence2"] == split.sentences2
        want = rec["results"][pooling]["tiny-sts"]["test"]["spearman"]
        assert spearman(cols["cosine"], cols["label"]) == pytest.approx(want, abs=1e-12)
        assert info["record_spearman"] == want


def test_predictions_reuse_the_cache(tiny_model_dir, spec_file, tmp_path, capsys, monkeypatch):
    """--predictions encodes nothing again: every vector it needs comes from the cache the
    bench just filled (one encoder for both)."""
    from embedkit.encoders.wrappers import MeteredEncoder

    calls = []
    real = MeteredEncoder.encode_multi

    def counting(self, sentences, poolings, **kw):
        calls.append(len(sentences))
        return real(self, sentences, poolings, **kw)

    monkeypatch.setattr(MeteredEncoder, "encode_multi", counting)
    assert main(bench_args(tiny_model_dir, spec_file)) == 0
    before = sum(calls)
    assert before > 0
    assert main(bench_args(tiny_model_dir, spec_file, "--predictions",
                           str(tmp_path / "p"))) == 0
    assert sum(calls) == before  # the second bench and its predictions: all from the cache
    assert (tmp_path / "p" / "predictions.json").is_file()


@pytest.mark.parametrize("flag", ["--mteb-results", "--predictions"])
def test_output_folder_that_is_a_file(tiny_model_dir, spec_file, tmp_path, capsys, flag):
    f = tmp_path / "taken"
    f.write_text("x")
    assert main(bench_args(tiny_model_dir, spec_file, flag, str(f))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{f} is a file; give a folder" in err[0] and flag in err[0]
