"""``--from-record``: every driver re-renders its report from the JSON record it wrote, measuring
nothing. The reports of ``eval/`` come back byte for byte from their records; a record made by
``embedkit report`` (before the drivers left the package) gets this script's command with the
same options; bad records are one line, and nothing is written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import bench_scale
import bench_speed
import pytest
import report_compare
import report_compression
import report_simcse

from embedkit.cli.main import build_parser
from embedkit.cli.main import main as embedkit

REPO = Path(__file__).resolve().parents[2]
DRIVERS = {"speed": bench_speed, "scale": bench_scale, "simcse-m3e-small": report_simcse,
           "compare": report_compare, "compression-m3e-small": report_compression}
SCRIPTS = {"speed": "bench_speed.py", "scale": "bench_scale.py",
           "simcse-m3e-small": "report_simcse.py", "compare": "report_compare.py",
           "compression-m3e-small": "report_compression.py"}


@pytest.mark.parametrize("name", sorted(DRIVERS))
def test_the_eval_reports_come_back_from_their_records(name, tmp_path, monkeypatch, capsys):
    """eval/NAME.md (and compare's .html) re-rendered from eval/NAME.json is the file in the
    repository, byte for byte; the record written beside it is the same record."""
    monkeypatch.chdir(REPO)  # the compare record names eval/'s records relative to the root
    out = tmp_path / f"{name}.md"
    assert DRIVERS[name].main(["--from-record", f"eval/{name}.json", "--out", str(out)]) == 0
    md = (REPO / "eval" / f"{name}.md").read_text(encoding="utf-8")
    assert out.read_text(encoding="utf-8") == md
    assert f"python benchmarks/{SCRIPTS[name]} " in md.split("\n## ")[0]
    saved = json.loads((REPO / "eval" / f"{name}.json").read_text(encoding="utf-8"))
    again = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    if name == "compare":
        html = (REPO / "eval" / "compare.html").read_text(encoding="utf-8")
        assert out.with_suffix(".html").read_text(encoding="utf-8") == html
        assert again.pop("files")["html"] == str(out.with_suffix(".html"))
        saved.pop("files")
    assert again == saved



def _legacy(tmp_path: Path, name: str, command: str) -> Path:
    """eval/NAME.json as `embedkit report` (or the first SimCSE script) recorded it."""
    rec = json.loads((REPO / "eval" / f"{name}.json").read_text(encoding="utf-8"))
    rec["command"] = command
    path = tmp_path / f"old-{name}.json"
    path.write_text(json.dumps(rec, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(("name", "old"), [
    ("speed", "embedkit report speed --data-dir ../shared/data "
              "--st-python .venv-st/bin/python --out eval/speed.md"),
    ("scale", "embedkit report scale --model m3e-small --data-dir ../shared/data "
              "--out eval/scale.md"),
    ("simcse-m3e-small", "python -m embedkit.benchmarks.simcse --model m3e-small --data-dir "
                         "../shared/data --out eval/simcse-m3e-small.md"),
])
def test_a_record_of_embedkit_report_gets_the_script_command(name, old, tmp_path, capsys):
    """Only the command changes: the options stay, the program becomes the script."""
    out = tmp_path / f"{name}.md"
    path = _legacy(tmp_path, name, old)
    assert DRIVERS[name].main(["--from-record", str(path), "--out", str(out)]) == 0
    new = "python benchmarks/" + SCRIPTS[name] + " --" + old.split(" --", 1)[1]
    md = out.read_text(encoding="utf-8")
    assert old not in md and new in md
    assert md == (REPO / "eval" / f"{name}.md").read_text(encoding="utf-8")
    rec = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert rec["command"] == new
    assert rec == {**json.loads(path.read_text(encoding="utf-8")), "command": new}


def test_the_simcse_report_renders_both_layouts_alike():
    """The first layout (pooling, seed, seconds_total at the top; no kind) and today's
    (settings, timings) give the same Markdown."""
    model = {"name": "tiny", "identity": "sha256:0"}
    rows = {"unsupervised": [{"task": "STS-B", "raw": 0.5, "whiten": 0.45, "whiten256": 0.46,
                              "simcse": 0.55, "steps": 3, "sentences": 30,
                              "seconds_per_step": 1.5, "final_loss": 0.25}],
            "supervised": []}
    first = {"command": "python benchmarks/report_simcse.py --out x.md", "model": model,
             "pooling": "cls", "seed": 7, "seconds_total": 12.0, **rows}
    today = {"kind": "simcse-report", "command": first["command"], "model": model,
             "settings": {"pooling": "cls", "seed": 7}, "timings": {"seconds_total": 12.0},
             **rows}
    md = report_simcse.render(first)
    assert md == report_simcse.render(today)
    assert "| STS-B | 50.00 | 45.00 | 46.00 | 55.00 | 3 | 30 | 1.50 | 0.2500 |" in md
    assert "seed 7" in md and "total 12 s" in md


def test_a_python_api_record_keeps_no_command(tmp_path, capsys):
    path = _legacy(tmp_path, "scale", "")
    rec = json.loads(path.read_text(encoding="utf-8"))
    rec["command"] = None
    path.write_text(json.dumps(rec), encoding="utf-8")
    out = tmp_path / "s.md"
    assert bench_scale.main(["--from-record", str(path), "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8").startswith("# Scale report\n\nCommand: `make bench-scale`")
    assert json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))["command"] is None


def _refused(driver, argv, capsys, out: Path) -> str:
    """The one error line of a driver that must refuse; nothing written."""
    capsys.readouterr()
    assert driver.main([*argv, "--out", str(out)]) == 2
    assert not out.exists() and not out.with_suffix(".json").exists()
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_bad_records_are_one_line(tmp_path, capsys):
    out = tmp_path / "r.md"
    err = _refused(bench_scale, ["--from-record", str(tmp_path / "nope.json")], capsys, out)
    assert err == f"embedkit: error: --from-record: {tmp_path / 'nope.json'}: record file not found"

    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    err = _refused(bench_speed, ["--from-record", str(bad)], capsys, out)
    assert err.startswith(f"embedkit: error: --from-record: {bad}: not readable JSON (")

    other = str(REPO / "eval" / "speed.json")
    err = _refused(bench_scale, ["--from-record", other], capsys, out)
    assert err == (f"embedkit: error: --from-record: {other}: a speed record; "
                   "benchmarks/bench_scale.py re-renders its own (scale)")

    err = _refused(report_simcse, ["--from-record", str(REPO / "eval" / "m3e-small.json")],
                   capsys, out)
    assert "a bench record; benchmarks/report_simcse.py re-renders its own (simcse-report)" in err


def test_a_recorded_command_the_script_does_not_take_is_refused(tmp_path, capsys):
    out = tmp_path / "r.md"
    path = _legacy(tmp_path, "scale", "embedkit report scale --bogus 1 --out eval/scale.md")
    err = _refused(bench_scale, ["--from-record", str(path)], capsys, out)
    assert err == (f"embedkit: error: --from-record: {path}: its command 'embedkit report scale "
                   "--bogus 1 --out eval/scale.md' does not run as benchmarks/bench_scale.py "
                   "(unrecognized arguments: --bogus 1); rerun the benchmark")
    for other in ("embedkit bench --model m3e-small", "python benchmarks/bench_speed.py",
                  "embedkit report 'scale"):
        path = _legacy(tmp_path, "scale", other)
        err = _refused(bench_scale, ["--from-record", str(path)], capsys, out)
        assert err == (f"embedkit: error: --from-record: {path}: its command {other!r} is not "
                       "one of benchmarks/bench_scale.py's; give a record this script wrote")


def test_the_compare_report_refuses_when_its_inputs_changed(tmp_path, monkeypatch, capsys):
    """Its pages show the comparison of the files it names, read again: when they no longer
    give the record's agreement and entries, re-rendering would mix two runs."""
    monkeypatch.chdir(REPO)
    rec = json.loads((REPO / "eval" / "compare.json").read_text(encoding="utf-8"))
    rec["agreement"][0]["difference"] = 0.5
    rec["entries"] = rec["entries"][:-1]
    path = tmp_path / "compare.json"
    path.write_text(json.dumps(rec), encoding="utf-8")
    err = _refused(report_compare, ["--from-record", str(path)], capsys, tmp_path / "c.md")
    assert err == (f"embedkit: error: --from-record: {path}: the files it compares changed "
                   "since the report was made (agreement, entries differ); rerun the report "
                   "without --from-record")
    assert not (tmp_path / "c.html").exists()


def test_the_compare_report_is_rerendered_with_its_files(tmp_path, monkeypatch, capsys):
    """A copy of eval/ elsewhere (the compare record, the records and plots it compares, its
    mteb folders), its pages removed: the same pages come back."""
    shutil.copytree(REPO / "eval", tmp_path / "eval")
    for suffix in (".md", ".html"):
        (tmp_path / "eval" / f"compare{suffix}").unlink()
    monkeypatch.chdir(tmp_path)
    assert report_compare.main(["--from-record", "eval/compare.json"]) == 0
    assert capsys.readouterr().out == ("wrote eval/compare.md, eval/compare.html, "
                                       "eval/compare.json\n")
    for suffix in (".md", ".html", ".json"):
        assert (tmp_path / "eval" / f"compare{suffix}").read_bytes() == (
            REPO / "eval" / f"compare{suffix}").read_bytes(), suffix


def test_report_is_no_longer_an_embedkit_command(capsys):
    """`embedkit report` went to benchmarks/: not listed, an unknown command."""
    top = build_parser().format_help()
    assert "report" not in top and "compare" in top  # compare --html stays a user feature
    with pytest.raises(SystemExit) as e:
        embedkit(["report", "speed"])
    assert e.value.code == 2
    assert "invalid choice: 'report'" in capsys.readouterr().err
