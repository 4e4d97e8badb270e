"""Input errors end as one ``embedkit: error: ...`` line and exit status 2, never a traceback."""

from __future__ import annotations

import json

import pytest

from embedkit.cli.main import command_line, main
from tests.conftest import cli_error


@pytest.mark.parametrize("content,line,problem", [
    (b"a\tb\n", 1, "expected 3 tab-separated fields (sentence1, sentence2, label), found 2"),
    (b"a\tb\t1\na\tb\tx\n", 2, "label 'x' is not a number"),
    (b"a\tb\t7\n", 1, "label '7' is outside the range [0, 5]"),
    (b"a\tb\t1.5\n", 1, "label '1.5' is not an integer"),
    (b"a\t \t1\n", 1, "sentence2 is empty"),
    (b"a\tb\t1\n\xff\tb\t1\n", 2, "invalid UTF-8 at byte 0 of the line; re-save the file as UTF-8"),
    (b"a\tb\t1\n\na\tb\t1\n", 2, "empty line (expected 3 fields: sentence1, sentence2, label)"),
])
def test_malformed_file(tmp_path, capsys, content, line, problem):
    data = tmp_path / "pairs.tsv"
    data.write_bytes(content)
    spec = tmp_path / "t.json"
    spec.write_text(json.dumps({"name": "t", "files": {"test": "pairs.tsv"},
                                "label_range": [0, 5], "label_type": "int"}))
    assert cli_error(capsys, ["datasets", "--tasks", str(spec)]) == f"{data}:{line}: {problem}"
    # skipping instead (a valid row added: a file whose every row is skipped has no pairs,
    # which is an error of its own)
    data.write_bytes(content + b"x\ty\t1\n")
    assert main(["datasets", "--tasks", str(spec), "--skip-invalid", "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["skipped"] == 1


def test_missing_data_file(tmp_path, capsys):
    spec = tmp_path / "t.json"
    spec.write_text(json.dumps({"name": "t", "files": {"test": "absent.tsv"}}))
    assert cli_error(capsys, ["datasets", "--tasks", str(spec)]) == (
        f"{tmp_path / 'absent.tsv'}: file not found")


def test_missing_builtin_data(tmp_path, capsys):
    msg = cli_error(capsys, ["datasets", "--tasks", "BQ", "--data-dir", str(tmp_path)])
    assert msg.startswith(f"{tmp_path}/senteval_cn/BQ/BQ.") and "file not found" in msg


@pytest.mark.parametrize("spec,problem", [
    ({"name": "t", "files": {"test": "x"}, "colums": []}, "unknown key(s) colums"),
    ({"files": {"test": "x"}}, "name: required (a non-empty string)"),
    ({"name": "t", "files": {"test": "x"}, "format": "xml"}, "format: must be one of"),
])
def test_bad_spec(tmp_path, capsys, spec, problem):
    p = tmp_path / "spec.json"
    p.write_text(json.dumps(spec))
    assert cli_error(capsys, ["datasets", "--tasks", str(p)]).startswith(f"{p}: {problem}")


def test_unknown_task(capsys):
    assert cli_error(capsys, ["datasets", "--tasks", "nosuch"]).startswith(
        "unknown task 'nosuch'; built-in tasks: ATEC, BQ")


def test_bench_errors(tiny_model_dir, tiny_model_no_pooler_dir, spec_file, tmp_path, capsys):
    base = ["bench", "--tasks", str(spec_file), "--no-cache"]
    assert cli_error(capsys, [*base, "--model", str(tiny_model_dir), "--pooling", "maxi"]).startswith(
        "--pooling: unknown pooling 'maxi'; valid: cls, pooler")  # the CLI names the flag
    assert "out of range" in cli_error(capsys, [*base, "--model", str(tiny_model_dir),
                                                "--pooling", "layers-avg:7"])
    assert "needs pooler weights" in cli_error(
        capsys, [*base, "--model", str(tiny_model_no_pooler_dir), "--pooling", "pooler"])
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    assert cli_error(capsys, [*base, "--model", str(empty)]).startswith(
        f"--model: cannot load model '{empty}'")


@pytest.mark.parametrize("name", ["./no/such/model", "no-such-model/", "~/no-such-model-x",
                                  "runs/a/b"])
def test_missing_model_folder_is_named(spec_file, capsys, name):
    """A path-looking model name that does not exist: "no model folder", not the hub's
    "Repo id must be in the form ..."."""
    msg = cli_error(capsys, ["bench", "--tasks", str(spec_file), "--model", name])
    assert msg.startswith(f"--model: no model folder {name}: it does not "
                          "exist (give the folder that holds config.json, a hub id")


def test_unknown_split_names_the_task_splits(tiny_model_dir, spec_file, tmp_path, capsys):
    """A spec-file task and a built-in task with local data: "no split 'train'; its splits"."""
    base = ["bench", "--model", str(tiny_model_dir), "--splits", "train"]
    assert cli_error(capsys, [*base, "--tasks", str(spec_file)]) == (
        f"--splits: task tiny-sts has no split 'train'; its splits: test (task spec {spec_file})")
    (tmp_path / "senteval_cn" / "ATEC").mkdir(parents=True)
    assert cli_error(capsys, [*base, "--tasks", "ATEC", "--data-dir", str(tmp_path)]) == (
        "--splits: task ATEC has no split 'train'; its splits: valid, test")


def test_post_file_in_the_faiss_format_whatever_its_name(tiny_model_dir, spec_file, tmp_path,
                                                         capsys):
    """whiten writes FAISS under any name; bench --post file: reads it back (not "header too
    large"), and a file in no known format says which formats file: takes."""
    for name in ("w.faiss", "w.bin"):
        assert main(["whiten", "--model", str(tiny_model_dir), "--fit-on", str(spec_file),
                     "--format", "faiss", "--out", str(tmp_path / name)]) == 0
        capsys.readouterr()
        assert main(["bench", "--model", str(tiny_model_dir), "--tasks", str(spec_file),
                     "--post", f"file:{tmp_path / name}"]) == 0
        assert f"cls + file:{tmp_path / name}" in capsys.readouterr().out
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(128, 256)))
    assert cli_error(capsys, ["bench", "--model", str(tiny_model_dir), "--tasks", str(spec_file),
                              "--post", f"file:{junk}"]) == (
        f"{junk}: not a transform file embedkit reads (it reads safetensors and .npz files "
        "written by embedkit whiten or save_transform, and FAISS VectorTransform files (.faiss, "
        "any name: the format is read from the bytes))")


@pytest.fixture
def forward_count(monkeypatch):
    """Counts the model's forward passes (every encode, through any wrapper)."""
    import embedkit.encoders.transformer as transformer

    calls = []
    real = transformer.forward_pooled

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(transformer, "forward_pooled", counted)
    return calls


@pytest.mark.parametrize("argv,message", [
    (["bench", "--post", "whiten:k=64"],
     "--post: post 'whiten:beta=1,gamma=1,k=64': step 1 (whiten) keeps k=64 dimensions, more "
     "than its input has (d=32)"),
    (["bench", "--post", "rp:k=auto"],
     "--post: post 'rp:k=auto,kind=gaussian,seed=0': step 1 (rp) k=auto asks for k="),
    (["bench", "--splits", "train"], "--splits: task tiny-sts has no split 'train'"),
    (["sweep", "--k", "64,128", "--select-on", "test", "--report-on", "test"],
     "--k: every k value is larger than the dimension d=32"),
    (["diagnose", "--post", "pca:k=48"], "--post: post 'pca:k=48': step 1 (pca) keeps k=48"),
    (["index", "eval", "--post", "whiten:k=40"], "--post: post 'whiten:k=40': step 1 (whiten)"),
    (["index", "eval", "--cost-corpus-tasks", "SPEC", "--factory", "IVF4,PQ7"],
     "--factory: FAISS cannot build factory 'IVF4,PQ7' for dimension 32"),
    (["index", "eval", "--splits", "valid"], "task tiny-sts has no split 'valid'"),  # dest split
    (["index", "build", "--corpus-task", "SPEC", "--factory", "Nonsense", "--out", "OUT"],
     "--factory: FAISS cannot build factory 'Nonsense' for dimension 32"),
    (["index", "build", "--corpus-task", "SPEC", "--post", "whiten:k=33", "--out", "OUT"],
     "--post: post 'whiten:k=33': step 1 (whiten) keeps k=33 dimensions"),
    (["whiten", "--fit-on", "SPEC", "--k", "64", "--out", "OUT"],
     "--k: k=64 is larger than the model's dimension d=32"),
])
def test_impossible_settings_are_refused_before_any_encoding(tiny_model_dir, spec_file, tmp_path,
                                                             capsys, forward_count, argv, message):
    argv = [str(spec_file) if a == "SPEC" else str(tmp_path / "out") if a == "OUT" else a
            for a in argv]
    n = 2 if argv[0] == "index" else 1
    argv = [*argv[:n], "--model", str(tiny_model_dir), *argv[n:]]
    if not {"--corpus-task", "--cost-corpus-tasks", "--fit-on"} & set(argv):
        argv += ["--tasks", str(spec_file)]
    assert cli_error(capsys, argv).startswith(message)
    assert forward_count == []  # refused before the first forward pass


def test_library_parameters_become_the_command_flags():
    """The library names parameters (param="fit_on"); the CLI prefixes the matching option."""
    from embedkit.cli.main import build_parser, error_message
    from embedkit.errors import ConfigError

    parser = build_parser()
    argv = ["bench", "--fit-on", "x"]
    assert error_message(parser, argv, ConfigError("no such split", param="fit_on")) == (
        "embedkit: error: --fit-on: no such split")
    assert error_message(parser, ["index", "search"], ConfigError("k", param="k")) == (
        "embedkit: error: -k: k")
    assert error_message(parser, argv, ConfigError("plain")) == "embedkit: error: plain"
    assert error_message(parser, argv, ConfigError("x", param="nosuch")) == "embedkit: error: x"
    assert error_message(parser, argv, ConfigError("refused; use force=True to use it")) == (
        "embedkit: error: refused; use --force to use it")


def test_debug_shows_the_traceback(tmp_path):
    from embedkit.errors import DataError

    spec = tmp_path / "t.json"
    spec.write_text(json.dumps({"name": "t", "files": {"test": "absent.tsv"}}))
    with pytest.raises(DataError):
        main(["--debug", "datasets", "--tasks", str(spec)])


def test_version_and_usage(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == "embedkit 0.1.0"
    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 2


def test_command_line_is_shell_quoted():
    assert command_line(["bench", "--tasks", "a b.json"]) == "embedkit bench --tasks 'a b.json'"


def test_log_lines_go_to_the_current_stderr(capsys):
    """The CLI's log handler writes to sys.stderr as it is at each record, so a record logged
    after an earlier command's stderr was swapped (as pytest does per test) is not lost."""
    import io
    import logging
    import sys

    from embedkit.cli.main import setup_logging

    old = sys.stderr
    sys.stderr = io.StringIO()
    try:
        setup_logging(False)
        first = sys.stderr
        sys.stderr = io.StringIO()
        first.close()  # the earlier command's stream is gone
        logging.getLogger("embedkit.test").info("hello")
        assert sys.stderr.getvalue() == "embedkit: hello\n"
    finally:
        sys.stderr = old
