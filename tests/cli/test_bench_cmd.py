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
    assert stdout[0] == f"{tiny_model_dir} [torch float32]: Spearman x 100 (whitening protocol)"
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
    assert lines[0] == f"# embedkit bench: {tiny_model_dir} [torch float32]"
    assert lines[2:6] == ["Regenerate with:", "", "```", shlex.join(["embedkit", *argv])]
    text = "\n".join(lines)
    assert "| row | tiny-sts/test | avg |" in text and "## Pearson x 100" in text
    assert "| tiny-sts | test | 40 | 0 |" in text


def test_markdown_to_stdout(tiny_model_dir, spec_file, capsys):
    assert main(bench_args(tiny_model_dir, spec_file, "--markdown")) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# embedkit bench: {tiny_model_dir} [torch float32]\n\nRegenerate with:")


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
    from embedkit.runs.predictions import read_predictions

    # DIR is mteb's cache folder: ResultCache(cache_path=DIR) reads DIR/results
    out, res, pred = tmp_path / "b.json", tmp_path / "mteb", tmp_path / "pred"
    assert main(bench_args(tiny_model_dir, spec_file, "--protocol", "cmteb", "--output", str(out),
                           "--mteb-results", str(res), "--predictions", str(pred),
                           "--predictions-format", "jsonl")) == 0
    err = capsys.readouterr().err
    assert (f"embedkit: mteb results: 2 task files in 2 model folders under {res / 'results'} "
            f"(mteb.ResultCache(cache_path={str(res)!r}))") in err
    assert f"embedkit: predictions: 2 files under {pred}" in err
    rec = json.loads(out.read_text(encoding="utf-8"))
    assert rec["timings"]["encoded"] > 0

    sha = rec["data"]["tiny-sts"]["test"]["sha256"]
    files = sorted(res.rglob("tiny-sts*.json"))
    assert len(files) == 2
    for path in files:
        tr = mteb.TaskResult.from_disk(path)
        pooling = "last-avg" if "pooling=last-avg" in str(path) else "cls"
        want = rec["results"][pooling]["tiny-sts"]["test"]["spearman"]
        assert tr.task_name == f"tiny-sts-local-{sha[:8]}"
        assert tr.dataset_revision == f"local-sha256-{sha}"
        assert tr.get_score(splits=["test"]) == pytest.approx(want, abs=1e-6)
        # mteb stores 0..1; the table prints x 100
        assert 100 * tr.scores["test"][0]["cosine_spearman"] == pytest.approx(100 * want,
                                                                              abs=1e-4)
    loaded = mteb.ResultCache(cache_path=res).load_results(include_remote=False)  # defaults
    assert len(loaded.model_results) == 2
    assert len(loaded.to_dataframe().columns) == 4  # task, is_public, one column per pooling

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


def test_random_projection_is_seeded_and_recorded(tiny_model_dir, spec_file, tmp_path, capsys):
    """rp without a seed uses the fixed default 0: the same scores twice; seed=1 differs; the
    record's seed fields are the seeds the fits used."""
    def run(post, name):
        out = tmp_path / name
        assert main(["bench", "--model", str(tiny_model_dir), "--tasks", str(spec_file),
                     "--pooling", "cls", "--post", post, "--output", str(out)]) == 0
        return json.loads(out.read_text(encoding="utf-8"))

    a, b, c = run("rp:k=8", "a.json"), run("rp:k=8", "b.json"), run("rp:k=8,seed=1", "c.json")
    row0, row1 = "cls + rp:k=8,kind=gaussian,seed=0", "cls + rp:k=8,kind=gaussian,seed=1"
    score = a["results"][row0]["tiny-sts"]["test"]["spearman"]
    assert b["results"][row0]["tiny-sts"]["test"]["spearman"] == score
    assert c["results"][row1]["tiny-sts"]["test"]["spearman"] != score
    assert a["settings"]["seed"] == 0 and c["settings"]["seed"] == 1
    assert a["settings"]["seeds"] == {"rp:k=8,kind=gaussian,seed=0": {
        "rp:k=8,kind=gaussian,seed=0": 0}}
    assert row0 in capsys.readouterr().out
    plain = run("pca:k=4", "d.json")["settings"]
    assert (plain["seed"], plain["seeds"]) == (None, {})


@pytest.fixture(scope="module")
def second_model_dir(make_tiny_bert):
    from tests.conftest import source_sentences

    return make_tiny_bert("tiny-bert-b", source_sentences(), seed=1)


@pytest.mark.parametrize("how", ["repeated", "comma"])
def test_several_models_one_record(how, tiny_model_dir, second_model_dir, spec_file, tmp_path,
                                   capsys):
    """--model A --model B (or --model A,B): one record with one complete bench block per model,
    each equal to that model's own bench; one table with one block of rows per model."""
    a, b = str(tiny_model_dir), str(second_model_dir)
    models = ["--model", a, "--model", b] if how == "repeated" else ["--model", f"{a},{b}"]
    out = tmp_path / "both.json"
    argv = ["bench", *models, "--tasks", str(spec_file), "--pooling", "cls,last-avg",
            "--output", str(out)]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    rec = json.loads(out.read_text(encoding="utf-8"))
    assert rec["kind"] == "bench-models" and rec["settings"]["models"] == [a, b]
    assert rec["command"] == shlex.join(["embedkit", *argv]) and "model" not in rec
    blocks = rec["models"]
    assert [blk["kind"] for blk in blocks] == ["bench", "bench"]
    assert [blk["model"]["name"] for blk in blocks] == [a, b]
    assert blocks[0]["model"]["identity"] != blocks[1]["model"]["identity"]
    assert blocks[0]["results"]["cls"] != blocks[1]["results"]["cls"]
    for name, blk in zip((a, b), blocks, strict=True):
        single = tmp_path / "single.json"
        assert main(bench_args(name, spec_file, "--output", str(single))) == 0
        assert json.loads(single.read_text(encoding="utf-8"))["results"] == blk["results"]
    capsys.readouterr()

    assert lines[0] == f"Spearman x 100 (whitening protocol): {a} [torch float32], {b} [torch float32]"
    assert lines[1].split() == ["model", "row", "tiny-sts/test", "avg"]
    def cell(i, row):
        return f"{100 * blocks[i]['results'][row]['tiny-sts']['test']['spearman']:.2f}"

    rows = [line.split() for line in lines[2:6]]  # the model named on its block's first row
    assert rows == [[a, "cls", cell(0, "cls"), cell(0, "cls")],
                    ["last-avg", cell(0, "last-avg"), cell(0, "last-avg")],
                    [b, "cls", cell(1, "cls"), cell(1, "cls")],
                    ["last-avg", cell(1, "last-avg"), cell(1, "last-avg")]]
    assert lines[-3].startswith(f"[{a}: ") and lines[-2].startswith(f"[{b}: ")
    assert lines[-1].startswith("[data: local ")  # then where the data came from


def test_several_models_markdown_mteb_and_compare(tiny_model_dir, second_model_dir, spec_file,
                                                  tmp_path, capsys):
    a, b = str(tiny_model_dir), str(second_model_dir)
    out, md, mteb = tmp_path / "r.json", tmp_path / "r.md", tmp_path / "mteb"
    assert main(["bench", "--model", a, "--model", b, "--tasks", str(spec_file), "--pooling",
                 "cls", "--output", str(out), "--markdown", str(md), "--mteb-results",
                 str(mteb), "--predictions", str(tmp_path / "pred")]) == 0
    err = capsys.readouterr().err
    assert "mteb results: 2 task files in 2 model folders" in err
    assert "predictions: 2 files under" in err
    for name in (a, b):
        from embedkit.runs.predictions import row_folder

        assert (tmp_path / "pred" / row_folder(name) / "predictions.json").is_file()
    text = md.read_text(encoding="utf-8")
    assert text.startswith(f"# embedkit bench: {a} [torch float32], {b} [torch float32]\n")
    assert "| model | row | tiny-sts/test | avg |" in text and "|---|---|---:|---:|" in text
    assert f"| {a} | cls |" in text and f"| {b} | cls |" in text
    assert text.count("- Model: `") == 2 and f"- {b}: " in text  # one timings line per model
    assert main(["compare", str(out)]) == 0
    board = capsys.readouterr().out
    assert f"{a} · cls" in board and f"{b} · cls" in board


def test_several_models_check_names_before_encoding(tiny_model_dir, spec_file, tmp_path, capsys):
    missing = str(tmp_path / "no" / "such-model")
    assert main(["bench", "--model", str(tiny_model_dir), "--model", missing, "--tasks",
                 str(spec_file)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("embedkit: error: --model: ")
    assert f"model '{missing}': no such folder" in err[0]
    # a comma list whose parts are not all models stays one name, and is said to be neither
    assert main(["bench", "--model", f"{tiny_model_dir},{missing}", "--tasks",
                 str(spec_file)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a folder, and not a comma list of models" in err[0]
    assert not (tmp_path / "embedkit-cache").exists()  # nothing was encoded


def test_several_models_dedupe(tiny_model_dir, spec_file, capsys):
    a = str(tiny_model_dir)
    assert main(["bench", "--model", a, "--model", a, "--tasks", str(spec_file)]) == 0
    assert capsys.readouterr().out.startswith(f"{a} [torch float32]: Spearman x 100")  # one block


def _n_tokens(tokenizer, sentence):
    return len(tokenizer(sentence)["input_ids"])  # [CLS] ... [SEP], not truncated


@pytest.fixture
def counting_encoder(monkeypatch):
    """The encoder's ``count_truncated``: the real one when the encoder has it, else a stand-in
    that counts as it should (tokens with [CLS] and [SEP] above the max length)."""
    from embedkit.encoders import TransformerEncoder

    if not hasattr(TransformerEncoder, "count_truncated"):
        def count_truncated(self, sentences, max_length):
            return sum(_n_tokens(self.tokenizer, s) > max_length for s in sentences)

        monkeypatch.setattr(TransformerEncoder, "count_truncated", count_truncated,
                            raising=False)


def test_truncated_sentences_counted(counting_encoder, tiny_model_dir, spec_file, tmp_path,
                                     capsys):
    """--max-length 8: the record counts, per task and split, the distinct sentences longer
    than 8 tokens; the table's footer says how many of how many."""
    import transformers

    from embedkit.data import load_task

    tok = transformers.AutoTokenizer.from_pretrained(str(tiny_model_dir))
    unique = load_task(str(spec_file))["test"].unique_sentences()
    expected = sum(_n_tokens(tok, s) > 8 for s in unique)
    assert 0 < expected < len(unique)
    out = tmp_path / "t.json"
    assert main(bench_args(tiny_model_dir, spec_file, "--max-length", "8", "--output",
                           str(out))) == 0
    lines = capsys.readouterr().out.splitlines()
    rec = json.loads(out.read_text(encoding="utf-8"))
    assert rec["truncated"] == {"tiny-sts": {"test": expected}}
    assert rec["truncated_of"] == {"tiny-sts": {"test": len(unique)}}
    assert (f"{expected} of {len(unique)} sentences truncated at max length 8 "
            f"(tiny-sts test: {expected})") in lines
    md = tmp_path / "t.md"
    assert main(bench_args(tiny_model_dir, spec_file, "--max-length", "8", "--markdown",
                           str(md))) == 0
    assert (f"- Truncation: {expected} of {len(unique)} sentences truncated at max length 8 "
            f"(tiny-sts test: {expected})") in md.read_text(encoding="utf-8").splitlines()

    # at the default max length (64) nothing is truncated: recorded as 0, no footer line
    capsys.readouterr()
    assert main(bench_args(tiny_model_dir, spec_file, "--output", str(out))) == 0
    assert "truncated" not in capsys.readouterr().out
    assert json.loads(out.read_text(encoding="utf-8"))["truncated"] == {"tiny-sts": {"test": 0}}


def test_sweep_counts_truncated(counting_encoder, tiny_model_dir, spec_file, tmp_path, capsys):
    out = tmp_path / "s.json"
    assert main(["sweep", "--model", str(tiny_model_dir), "--tasks", str(spec_file),
                 "--pooling", "cls", "--k", "4,8", "--max-length", "8", "--select-on", "test",
                 "--report-on", "test", "--fit-on", "test", "--output", str(out)]) == 0
    rec = json.loads(out.read_text(encoding="utf-8"))
    n = rec["truncated"]["tiny-sts"]["test"]
    m = rec["truncated_of"]["tiny-sts"]["test"]
    assert 0 < n < m
    assert f"{n} of {m} sentences truncated at max length 8 (tiny-sts test: {n})" in (
        capsys.readouterr().out.splitlines())


def test_record_table_and_markdown_say_where_the_data_came_from(tiny_model_dir, spec_file,
                                                                 pairs_file, tmp_path, capsys):
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    assert main(bench_args(tiny_model_dir, spec_file, "--output", str(out))) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"[data: local {pairs_file.parent}]"
    record = json.loads(out.read_text(encoding="utf-8"))
    assert record["data_source"] == {"kind": "local", "local": [str(pairs_file.parent)],
                                     "hub": []}
    assert main(bench_args(tiny_model_dir, spec_file, "--markdown", str(md))) == 0
    assert f"- Data: local {pairs_file.parent}" in md.read_text(encoding="utf-8").splitlines()


def test_post_takes_a_transform_file_path(tiny_model_dir, spec_file, tmp_path, capsys):
    """bench --post PATH.safetensors, as index build --post takes it: the same row as
    --post file:PATH (the file's normalize flag adds norm)."""
    w = tmp_path / "w.safetensors"
    assert main(["whiten", "--model", str(tiny_model_dir), "--fit-on", str(spec_file),
                 "--pooling", "cls", "--k", "8", "--out", str(w)]) == 0
    recs = []
    for post in (str(w), f"file:{w}"):
        out = tmp_path / "r.json"
        assert main(["bench", "--model", str(tiny_model_dir), "--tasks", str(spec_file),
                     "--pooling", "cls", "--post", post, "--output", str(out)]) == 0
        recs.append(json.loads(out.read_text(encoding="utf-8")))
    bare, step = ({k: v for k, v in r["results"].items() if k != "cls"} for r in recs)
    assert len(bare) == 1 and list(bare) == list(step)
    assert list(bare.values())[0]["tiny-sts"] == list(step.values())[0]["tiny-sts"]
    assert str(w) in list(bare)[0] and str(w) in recs[0]["settings"]["post_files"]
