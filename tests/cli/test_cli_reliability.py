"""Reliability of the command line (issue 9): bad input ends in one ``embedkit: error: ...`` line
and exit status 2, before any work; undefined scores are said, not averaged away."""

from __future__ import annotations

import json

import pytest

from embedkit.cli.main import main
from tests.conftest import cli_error

R = pytest.mark.reliability


# -- 9.tb: --batch-size 0 and negative, on every command that takes it -------------------------

def _batch_commands(tmp_path):
    sents = tmp_path / "s.txt"
    sents.write_text("你好\n再见\n", encoding="utf-8")
    idx = tmp_path / "idx"
    return {
        "bench": ["bench", "--no-cache"],
        "sweep": ["sweep", "--no-cache"],
        "whiten": ["whiten", "--fit-on", str(sents), "--out", str(tmp_path / "w.safetensors")],
        "train": ["train", "simcse", "--corpus", str(sents), "--out", str(tmp_path / "m")],
        "index build": ["index", "build", "--corpus", str(sents), "--out", str(idx)],
        "index add": ["index", "add", "--index", str(idx), "--corpus", str(sents)],
        "index search": ["index", "search", "--index", str(idx), "--query", "你好"],
    }


BATCH_CASES = [pytest.param(cmd, value, marks=R("9.tb", f"{cmd} --batch-size {value}: one line"))
               for cmd in ("bench", "sweep", "whiten", "train", "index build", "index add",
                           "index search")
               for value in ("0", "-3")]


@pytest.mark.parametrize("cmd,value", BATCH_CASES)
def test_batch_size_below_one(tmp_path, capsys, cmd, value):
    argv = _batch_commands(tmp_path)[cmd] + ["--batch-size", value]
    msg = cli_error(capsys, argv)
    assert "batch-size" in msg or "batch_size" in msg, msg


# -- 9.tb: an output path that is a folder, found before any work -----------------------------

def _output_cases():
    cases = [
        ("bench --output", ["bench", "--output", "{dir}"], "--output"),
        ("bench --markdown", ["bench", "--markdown", "{dir}"], "--markdown"),
        ("sweep --output", ["sweep", "--output", "{dir}"], "--output"),
        ("sweep --markdown", ["sweep", "--markdown", "{dir}"], "--markdown"),
        ("whiten --out", ["whiten", "--fit-on", "{sents}", "--out", "{dir}"], "--out"),
        ("whiten --out (npz)", ["whiten", "--fit-on", "{sents}", "--out", "{dir}.npz"], "--out"),
    ]
    return [pytest.param(argv, flag, marks=R("9.tb", f"{name} is a folder: one line before "
                                                     "loading the model"))
            for name, argv, flag in cases]


@pytest.mark.parametrize("argv,flag", _output_cases())
def test_output_path_is_a_folder(tmp_path, capsys, argv, flag):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "out.npz").mkdir()
    sents = tmp_path / "s.txt"
    sents.write_text("你好\n再见\n", encoding="utf-8")
    argv = [a.format(dir=out, sents=sents) for a in argv]
    # a model that does not exist: were the output checked after loading it, the error would
    # be about the model
    msg = cli_error(capsys, [*argv, "--model", str(tmp_path / "no-model"), "--no-cache"])
    target = argv[argv.index(flag) + 1]
    assert msg == f"{flag}: {target} is a folder; give a file path", msg


@pytest.mark.reliability("9.tb", "an output path below a file: one line before any work")
def test_output_path_below_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    msg = cli_error(capsys, ["bench", "--model", str(tmp_path / "no-model"),
                                  "--output", str(f / "r.json")])
    assert msg == f"--output: cannot write {f / 'r.json'}: {f} is not a folder"


@pytest.mark.reliability("9.tb", "sweep --plots naming a file: one line before any work")
def test_sweep_plots_is_a_file(tmp_path, capsys):
    f = tmp_path / "plots"
    f.write_text("x")
    msg = cli_error(capsys, ["sweep", "--model", str(tmp_path / "no-model"),
                                  "--plots", str(f)])
    assert msg == f"--plots: {f} is a file; give a folder"


# -- 9.tb / 9.13: task specs with wrong types, or a spec path that is a folder ----------------

SPEC_CASES = [
    ("files", ["a.tsv"]), ("fields", "label"), ("columns", "s1,s2,label"),
    ("label_range", [5, 0]), ("default_splits", "test"), ("encoding", 8), ("header", "no"),
]


@pytest.mark.parametrize("key,value", [
    pytest.param(k, v, marks=R("9.tb", f"spec {k}: {json.dumps(v)} is one line naming file and "
                                       "key")) for k, v in SPEC_CASES])
def test_spec_wrong_type_one_line(tmp_path, capsys, key, value):
    (tmp_path / "pairs.tsv").write_text("a\tb\t1\n", encoding="utf-8")
    spec = tmp_path / "my.json"
    spec.write_text(json.dumps({"name": "t", "files": {"test": "pairs.tsv"}, key: value}))
    msg = cli_error(capsys, ["datasets", "--tasks", str(spec)])
    assert msg.startswith(f"{spec}: {key}: ") and f"got {json.dumps(value)}" in msg


@pytest.mark.reliability("9.tb", "a --tasks spec path that is a folder: one line")
def test_spec_path_is_a_folder(tmp_path, capsys):
    d = tmp_path / "spec.json"
    d.mkdir()
    msg = cli_error(capsys, ["datasets", "--tasks", str(d)])
    assert msg == f"{d}: cannot read the task spec file (Is a directory)"


# -- 9.11: an empty data file is an error naming the file --------------------------------------

@pytest.mark.parametrize("cmd", [
    pytest.param("datasets", marks=R("9.11", "datasets: an empty pair file exits 2 naming it")),
    pytest.param("bench", marks=R("9.11", "bench: an empty pair file exits 2 naming it, not '-'")),
])
def test_empty_pair_file(tmp_path, capsys, tiny_model_dir, cmd):
    (tmp_path / "empty.tsv").write_bytes(b"")
    spec = tmp_path / "e.json"
    spec.write_text(json.dumps({"name": "e", "files": {"test": "empty.tsv"}}))
    argv = ["datasets", "--tasks", str(spec)] if cmd == "datasets" else [
        "bench", "--model", str(tiny_model_dir), "--tasks", str(spec), "--no-cache"]
    assert cli_error(capsys, argv) == (
        f"{tmp_path / 'empty.tsv'}: no sentence pairs (the file is empty)")


# -- 9.7: an undefined Spearman is said and makes the average undefined ------------------------

@pytest.mark.reliability("9.7", "bench CLI: constant labels -> warning line, '-' avg, footer, "
                                "record flag")
def test_bench_constant_labels(tmp_path, capsys, tiny_model_dir, pairs_file, spec_file):
    lines = [ln.rsplit("\t", 1)[0] + "\t2" for ln in pairs_file.read_text("utf-8").splitlines()]
    (tmp_path / "flat.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps({"name": "flat", "files": {"test": "flat.tsv"}}))
    out = tmp_path / "r.json"
    assert main(["bench", "--model", str(tiny_model_dir), "--tasks", f"{spec_file},{flat}",
                 "--pooling", "cls", "--no-cache", "--output", str(out)]) == 0
    stdout, stderr = capsys.readouterr()
    assert stderr.strip().splitlines() == [
        "embedkit: warning: flat/test: Spearman is undefined (constant labels); the averages "
        "that include it are undefined (shown as -)"]
    table = stdout.splitlines()
    assert table[1].split() == ["row", "tiny-sts/test", "flat/test", "avg"]
    row = table[2].split()
    assert row[0] == "cls" and float(row[1]) > -100 and row[2:] == ["-", "-"]
    assert table[4].startswith("-: undefined. flat/test: Spearman is undefined (constant labels)")
    rec = json.loads(out.read_text(encoding="utf-8").replace("NaN", "null"))
    assert rec["undefined"] == [{"row": "cls", "task": "flat", "split": "test",
                                 "reason": "constant labels"}]
    assert rec["results"]["cls"]["avg"]["spearman"] is None  # NaN in the file


# -- 9.data-dir and 9.msg at the command line ------------------------------------------------

@pytest.mark.reliability("9.data-dir", "datasets --data-dir a folder holding LCQMC/ directly")
def test_data_dir_of_task_folders(tmp_path, capsys):
    d = tmp_path / "whatever"
    (d / "LCQMC").mkdir(parents=True)
    (d / "LCQMC" / "LCQMC.test.data").write_text("一\t二\t1\n三\t四\t0\n", encoding="utf-8")
    (d / "LCQMC" / "LCQMC.valid.data").write_text("一\t二\t1\n", encoding="utf-8")
    assert main(["datasets", "--tasks", "LCQMC", "--data-dir", str(d), "--json", "-"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["split"], r["rows"]) for r in rows] == [("valid", 1), ("test", 2)]
    assert rows[1]["source"] == str(d / "LCQMC" / "LCQMC.test.data")


@pytest.mark.reliability("9.msg", "whiten --fit-on a blank file names the file")
def test_fit_on_blank_file(tmp_path, capsys, tiny_model_dir):
    blank = tmp_path / "blank.txt"
    blank.write_text("\n \n", encoding="utf-8")
    msg = cli_error(capsys, ["whiten", "--model", str(tiny_model_dir), "--fit-on",
                                  str(blank), "--out", str(tmp_path / "w.safetensors")])
    assert msg == f"--fit-on: {blank}: no sentences to fit on (the file holds only blank lines)"

