"""``embedkit compare`` end to end: bench records of the tiny model and an mteb results folder.

The command is tested through its own module (``add_parser`` / ``run``) and, once it is listed
in ``cli/main.py``'s COMMANDS, through ``embedkit.cli.main.main`` as a user calls it."""

from __future__ import annotations

import argparse
import json

import pytest

from embedkit.cli import compare_cmd
from embedkit.cli.main import COMMANDS, error_message, main
from embedkit.errors import EmbedkitError
from embedkit.experiments.mteb_results import write_mteb_results


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="embedkit")
    sub = parser.add_subparsers(dest="command")
    compare_cmd.add_parser(sub)
    return parser


def _run(argv: list[str]) -> int:
    if "compare" in COMMANDS:
        return main(argv)
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except EmbedkitError as e:
        print(error_message(parser, argv, e))
        return e.exit_code


@pytest.fixture(scope="module")
def records(tiny_model_dir, spec_file, tmp_path_factory):
    """Two bench records of the tiny model (cmteb and whitening protocol), the cmteb one also
    as mteb result files."""
    out = tmp_path_factory.mktemp("records")
    for protocol in ("cmteb", "whitening"):
        args = ["bench", "--model", str(tiny_model_dir), "--tasks", str(spec_file),
                "--pooling", "cls,last-avg", "--protocol", protocol, "--no-cache",
                "--output", str(out / f"{protocol}.json")]
        assert main(args) == 0
    write_mteb_results(json.loads((out / "cmteb.json").read_text()), out / "mteb")
    return out


def test_compare_end_to_end(records, tmp_path, capsys):
    capsys.readouterr()
    md, page, png = tmp_path / "c.md", tmp_path / "c.html", tmp_path / "c.png"
    argv = ["compare", str(records / "cmteb.json"), str(records / "whitening.json"),
            str(records / "mteb"), "--markdown", str(md), "--html", str(page), "--plot", str(png)]
    assert _run(argv) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "Spearman x 100 on the test split (6 models, 1 tasks)"
    assert lines[1].split()[:4] == ["rank", "model", "tiny-sts", "avg"]
    assert "protocol whitening (column: cmteb)" in out
    assert out.count("*") >= 2
    assert md.read_text().startswith("# Model comparison")
    assert "tiny-sts" in page.read_text() and png.read_bytes()[:4] == b"\x89PNG"


def test_compare_errors(records, tmp_path, capsys):
    capsys.readouterr()
    assert _run(["compare", str(tmp_path / "missing.json")]) == 2
    captured = capsys.readouterr()
    assert "missing.json: no such record or folder" in captured.out + captured.err
    assert _run(["compare", str(records / "cmteb.json"), "--split", "train"]) == 2
    captured = capsys.readouterr()
    assert "--split: no spearman scores on split train" in captured.out + captured.err
    with pytest.raises(SystemExit):
        _parser().parse_args(["compare", "x", "--metric", "kendall"])
