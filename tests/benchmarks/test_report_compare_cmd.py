"""``python benchmarks/report_compare.py`` on the command line: the tiny model, a fake chromium on the PATH."""

from __future__ import annotations

import json
import os
import stat

import pytest

pytest.importorskip("mteb")

from report_compare import main  # noqa: E402

from embedkit.cli.main import main as embedkit  # noqa: E402

FAKE_CHROMIUM = """#!/bin/sh
# records its arguments, writes a tiny PNG where --screenshot= says
echo "$@" > "$(dirname "$0")/args.txt"
for a in "$@"; do
  case "$a" in --screenshot=*) printf '\\211PNG\\r\\n\\032\\n' > "${a#--screenshot=}";; esac
done
"""


@pytest.fixture(scope="module")
def spread_model(make_tiny_bert, sentences):
    return make_tiny_bert("tiny-spread-cli", sentences, initializer_range=0.2)


@pytest.fixture()
def setup(spread_model, pairs_file, tmp_path):
    spec = tmp_path / "stsb-tiny.json"
    spec.write_text(json.dumps({"name": "STS-B", "format": "tsv", "files": {
        "test": str(pairs_file)}, "label_range": [0, 5], "label_type": "int", "max_length": 64}))
    rec = tmp_path / "eval" / "bench.json"
    assert embedkit(["bench", "--model", str(spread_model), "--tasks", str(spec), "--pooling",
                 "cls", "--output", str(rec)]) == 0
    return spec, rec


def _argv(model, spec, rec, out, *extra):
    return ["--model", str(model), "--tasks", str(spec), "--records",
            f"{rec},{rec.parent / 'missing.json'}", "--out", str(out), *extra]


def test_report_compare_with_chromium(spread_model, setup, tmp_path, capsys, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "chromium"
    exe.write_text(FAKE_CHROMIUM)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    spec, rec = setup
    out = tmp_path / "eval" / "compare.md"
    capsys.readouterr()
    assert main(_argv(spread_model, spec, rec, out)) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].endswith("cls, cmteb protocol: embedkit bench vs mteb evaluate (Spearman x 100)")
    task, ours, theirs, diff = lines[1].split()
    assert task == "STS-B" and abs(float(diff)) < 0.02
    assert abs(float(ours) - float(theirs)) < 0.02
    assert "missing.json: not found; left out of the comparison" in captured.err
    args = (bin_dir / "args.txt").read_text().split()
    assert args[:4] == ["--headless", "--no-sandbox", "--disable-gpu",
                        f"--screenshot={out.with_suffix('.png')}"]
    assert args[4:] == ["--window-size=1400,1000", out.with_suffix(".html").resolve().as_uri()]
    assert out.with_suffix(".png").is_file()
    md = out.read_text(encoding="utf-8")
    assert "![compare.html in a headless browser](compare.png)" in md
    assert md.splitlines()[5] == ("python benchmarks/report_compare.py "
                                 + " ".join(_argv(spread_model, spec, rec, out)))
    assert (tmp_path / "eval" / "compare-mteb" / "embedkit-bench").is_dir()
    assert (tmp_path / "eval" / "compare-mteb" / "mteb-evaluate" / "results").is_dir()

    # re-rendered from its record elsewhere: the same pages, the screenshot taken again
    again = tmp_path / "again" / "compare.md"
    (bin_dir / "args.txt").unlink()
    assert main(["--from-record", str(out.with_suffix(".json")), "--out", str(again)]) == 0
    assert again.read_text(encoding="utf-8") == md
    assert again.with_suffix(".html").read_text(encoding="utf-8") == \
        out.with_suffix(".html").read_text(encoding="utf-8")
    assert again.with_suffix(".png").is_file() and (bin_dir / "args.txt").is_file()
    rec, rec2 = (json.loads(p.with_suffix(".json").read_text(encoding="utf-8"))
                 for p in (out, again))
    assert rec2.pop("files") == {"markdown": str(again), "html": str(again.with_suffix(".html")),
                                 "png": str(again.with_suffix(".png")),
                                 "json": str(again.with_suffix(".json"))}
    rec.pop("files")
    assert rec2 == rec


def test_report_compare_without_screenshot(spread_model, setup, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no chromium either way
    spec, rec = setup
    out = tmp_path / "eval" / "compare.md"
    assert main(_argv(spread_model, spec, rec, out, "--no-screenshot",
                      "--work-dir", str(tmp_path / "w"))) == 0
    assert not out.with_suffix(".png").exists() and "![" not in out.read_text(encoding="utf-8")
    assert (tmp_path / "w" / "mteb-evaluate").is_dir()
    assert json.loads(out.with_suffix(".json").read_text())["files"]["png"] is None


def test_out_is_a_folder(spread_model, setup, tmp_path, capsys):
    spec, rec = setup
    capsys.readouterr()
    assert main(_argv(spread_model, spec, rec, tmp_path)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a folder; give a file path" in err[0] and "--out" in err[0]
