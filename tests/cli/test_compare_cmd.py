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
from embedkit.integrations.mteb_results import write_mteb_results
from embedkit.reports.compare import board_rows
from embedkit.runs.compare import compare


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


def _record(name: str, score, protocol: str = "cmteb") -> dict:
    return {"kind": "bench", "model": {"name": name, "identity": "sha256:" + "1" * 64},
            "settings": {"protocol": protocol, "max_length": {"ATEC": 512}},
            "data": {"ATEC": {"test": {"sha256": "b" * 64}}},
            "results": {"cls": {"ATEC": {"test": {"spearman": score}}, "pooling": "cls"}}}


@pytest.mark.parametrize("score, says", [("0.5", '"0.5", not a number'),
                                         (1e300, "1e+300: impossible for a correlation")])
def test_impossible_score_is_one_error_line(tmp_path, capsys, score, says):
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(_record("g", 0.3)))
    bad.write_text(json.dumps(_record("b", score)))
    assert main(["compare", str(good), str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"embedkit: error: {bad}: results.cls.ATEC.test.spearman is {says} (files keep it as a "
        "fraction in [-1, 1], x 100 only when shown); fix or regenerate the file"
        if "impossible" in says else
        f"embedkit: error: {bad}: results.cls.ATEC.test.spearman is {says}; a score must be a "
        "JSON number: fix or regenerate the file"]


def test_record_without_results_is_named(tmp_path, capsys):
    good, empty = tmp_path / "good.json", tmp_path / "empty.json"
    good.write_text(json.dumps(_record("g", 0.3)))
    empty.write_text(json.dumps({**_record("e", 0.3), "results": {}}))
    assert main(["compare", str(good), str(empty)]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == ("Spearman x 100 on the test split (1 models, 1 tasks; 1 input(s) left "
                        "out, see below)")
    assert f"  {empty}: no spearman scores on the test split" in lines
    assert captured.err.splitlines() == [
        f"embedkit: {empty}: no spearman scores on the test split; left out of the comparison"]


def test_markdown_escapes_names(tmp_path, capsys):
    rec = tmp_path / "r.json"
    rec.write_text(json.dumps(_record("<script>alert(1)</script>|x", 0.3)))
    md = tmp_path / "c.md"
    assert main(["compare", str(rec), "--markdown", str(md)]) == 0
    text = md.read_text()
    assert "<script>" not in text
    assert r"| 1 | &lt;script&gt;alert(1)&lt;/script&gt;\|x · cls | 30.00 | 30.00 |" in text
    assert "torch float32, max_length=512 |" in text


def _speed(rate, hardware: str = "aaaaaaaaaaaa", status: str = "measured") -> dict:
    return {"sentences_per_second": rate, "status": status, "seconds_encoding": 1.0,
            "encoded": 100, "cache_hits": 0, "backend": "torch", "precision": "fp32",
            "threads": 2, "device": "cpu", "hardware": hardware}


def test_sentences_per_second_column_marked_on_other_hardware(tmp_path, capsys):
    paths = []
    for name, score, speed in [("a", 0.5, _speed(483.4)), ("b", 0.4, _speed(1520.0)),
                               ("c", 0.6, _speed(90.25, hardware="bbbbbbbbbbbb")),
                               ("d", 0.3, _speed(None, status="cached")), ("e", 0.2, None)]:
        rec = _record(name, score)
        if speed is not None:
            rec["speed"] = speed
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(rec))
    png = tmp_path / "speed.png"
    assert main(["compare", *map(str, paths), "--speed-plot", str(png)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[1]: line.split() for line in out.splitlines()[2:7]}
    assert out.splitlines()[1].split()[:5] == ["rank", "model", "ATEC", "avg", "sentences/s"]
    assert {n: rows[n][6] for n in "abcde"} == {"a": "483", "b": "1,520", "c": "90.2†",
                                                "d": "cached", "e": "-"}
    assert ("  † c · cls: measured on other hardware or threads (fingerprint bbbbbbbbbbbb, "
            "2 threads) than the rest of the column (aaaaaaaaaaaa): its speed is not "
            "comparable") in out.splitlines()
    assert f"[speed plot: {png}]" in out
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 1000


def test_speed_plot_without_any_speed_is_one_error_line(tmp_path, capsys):
    old = tmp_path / "old.json"
    old.write_text(json.dumps(_record("o", 0.3)))  # written before the speed block
    assert main(["compare", str(old), "--speed-plot", str(tmp_path / "s.png")]) == 2
    captured = capsys.readouterr()
    assert "sentences/s" not in captured.out  # no column without a speed block
    assert captured.err.splitlines() == [
        "embedkit: error: --speed-plot: no input records a measured encoding speed (records "
        "written before the speed block, mteb folders and runs whose vectors all came from the "
        "cache have none): nothing to plot"]
    assert not (tmp_path / "s.png").exists()


def test_speed_plot_of_real_bench_records(records, tmp_path, capsys):
    capsys.readouterr()
    png = tmp_path / "q-vs-speed.png"
    argv = ["compare", str(records / "cmteb.json"), str(records / "whitening.json"),
            str(records / "mteb"), "--speed-plot", str(png)]
    assert _run(argv) == 0
    out = capsys.readouterr().out
    assert "sentences/s" in out.splitlines()[1].split()
    header, rows = board_rows(compare(argv[1:4]))
    rates = [r[header.index("sentences/s")] for r in rows]
    assert len(rates) == 6 and rates.count("-") == 2  # the mteb folder's rows say no speed
    assert all(float(r.replace(",", "")) > 0 for r in rates if r != "-")
    assert "†" not in out  # one machine
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 1000
