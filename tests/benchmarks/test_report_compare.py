"""The compare report end to end on a tiny model: embedkit bench and mteb's own evaluator on the
same local pairs (offline), both as mteb folders, compared with records beside them."""

from __future__ import annotations

import json
import logging

import pytest

pytest.importorskip("mteb")

from report_compare import CompareReportOptions, run_compare_report  # noqa: E402

from embedkit.integrations.mteb import evaluate_encoder  # noqa: E402
from embedkit.runs.bench import run_bench  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


@pytest.fixture(scope="module")
def spread_model(make_tiny_bert, sentences):
    """A tiny BERT whose cosines spread over 0.84..0.99 (the default tiny model's all lie within
    1e-5 of 1, where float32 cannot order them; see tests/integrations/test_mteb.py)."""
    return make_tiny_bert("tiny-spread-report", sentences, initializer_range=0.2)


@pytest.fixture()
def stsb_spec(pairs_file, tmp_path):
    """The tiny pairs under STS-B's name, so that mteb scores them as its STSB task."""
    spec = tmp_path / "stsb-tiny.json"
    spec.write_text(json.dumps({"name": "STS-B", "format": "tsv", "files": {
        "test": str(pairs_file)}, "label_range": [0, 5], "label_type": "int",
        "max_length": 64}))
    return spec


@pytest.fixture()
def records(spread_model, stsb_spec, tmp_path):
    """A bench record (whitening protocol, two poolings) and a SimCSE report record in the
    report's older layout (no kind), as eval/ holds them."""
    bench = run_bench(str(spread_model), ["cls", "last-avg"], [str(stsb_spec)])
    paths = {"bench": tmp_path / "eval" / "bench.json", "simcse": tmp_path / "eval" / "simcse.json"}
    paths["bench"].parent.mkdir()
    paths["bench"].write_text(json.dumps(bench))
    simcse = {"command": "python benchmarks/report_simcse.py", "model": bench["model"], "pooling": "cls",
              "unsupervised": [{"task": "STS-B", "raw": 0.5, "whiten": 0.45, "whiten256": 0.46,
                                "simcse": 0.55, "out_dir": "runs/simcse/x"}],
              "supervised": [{"run": "CoSENT on the 0-5 labels", "task": "STS-B",
                              "simcse": 0.6, "out_dir": "runs/simcse/y"}]}
    paths["simcse"].write_text(json.dumps(simcse))
    return paths


def _fake_screenshot(shots):
    def shoot(html, png):
        shots.append((html, png))
        png.write_bytes(PNG)
        return True
    return shoot


def test_report_end_to_end(spread_model, stsb_spec, records, tmp_path, caplog, monkeypatch):
    # a CLI run earlier in the session (main() in a module-scoped fixture) may have left the
    # embedkit logger not propagating to caplog's root handler
    monkeypatch.setattr(logging.getLogger("embedkit"), "propagate", True)
    out = tmp_path / "eval" / "compare.md"
    work = tmp_path / "eval" / "compare-mteb"
    stale = work / "embedkit-bench" / "old-model" / "STSB.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    missing = tmp_path / "eval" / "nope.json"
    opts = CompareReportOptions(model=str(spread_model), tasks=(str(stsb_spec),),
                                records=(str(records["bench"]), str(missing),
                                         str(records["simcse"])), pooling="cls")
    shots: list = []
    with caplog.at_level(logging.INFO, logger="embedkit"):
        rec = run_compare_report(out, opts, mteb_evaluate=evaluate_encoder,
                                 screenshot=_fake_screenshot(shots), command="python benchmarks/report_compare.py x")
    assert f"{missing}: not found; left out of the comparison" in caplog.text

    # both mteb folders, in mteb's layout; the stale file of an earlier run is gone
    bench_files = sorted((work / "embedkit-bench" / "results").rglob("STSB-local-*.json"))
    mteb_files = sorted((work / "mteb-evaluate" / "results").rglob("STSB-local-*.json"))
    assert len(bench_files) == 1 and len(mteb_files) == 1
    assert not stale.exists()
    assert bench_files[0].name == mteb_files[0].name  # the same local data
    assert bench_files[0].relative_to(work / "embedkit-bench") == mteb_files[0] \
        .relative_to(work / "mteb-evaluate")  # the same model name and revision

    # the two evaluators agree to well under 0.02 points of Spearman x 100
    (row,) = rec["agreement"]
    assert row["task"] == "STS-B" and row["same_data"]
    assert abs(row["difference"]) < 0.02
    assert row["embedkit_bench"] == pytest.approx(
        rec["bench"]["results"]["cls"]["STS-B"]["test"]["spearman"], abs=1e-6)
    assert rec["settings"]["records"] == [str(records["bench"]), str(records["simcse"])]
    assert rec["settings"]["missing"] == [str(missing)]
    assert rec["settings"]["protocol"] == "cmteb" and rec["settings"]["pooling"] == "cls"
    assert "mteb" in rec["versions"]

    md = out.read_text(encoding="utf-8")
    page = out.with_suffix(".html").read_text(encoding="utf-8")
    lines = md.splitlines()
    assert lines[0].startswith("# Model comparison: ")
    assert lines[2:6] == ["Regenerate with:", "", "```", "python benchmarks/report_compare.py x"]
    assert "- Machine: " in md and f"mteb {rec['versions']['mteb']}" in md
    assert "## embedkit bench vs mteb's evaluator" in md and "## Every model" in md
    assert (f"| STS-B | {100 * row['embedkit_bench']:.4f} | {100 * row['mteb_evaluate']:.4f} | "
            f"{row['difference']:+.4f} |") in md
    assert "differ by at most" in md and "Same configuration, two evaluators" in md
    assert "![compare.html in a headless browser](compare.png)" in md
    assert shots == [(out.with_suffix(".html"), out.with_suffix(".png"))]
    # 2 bench rows; SimCSE report: raw, 2 whitened, unsupervised, supervised; 2 mteb folders
    assert len(rec["entries"]) == 9
    for label in rec["entries"]:
        assert label in md, label
    import html as _html
    for label in rec["entries"]:
        assert _html.escape(label, quote=True) in page, label
    assert rec["compared_tasks"] == ["STS-B"]
    assert "STS-B" in md and "STS-B" in page
    assert "[mteb]" in md and "Regenerate with: <code>python benchmarks/report_compare.py x</code>" in page
    saved = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert saved["kind"] == "compare-report" and saved["files"]["png"] == str(
        out.with_suffix(".png"))


def test_no_screenshot_no_picture(spread_model, stsb_spec, tmp_path):
    out = tmp_path / "r" / "compare.md"
    opts = CompareReportOptions(model=str(spread_model), tasks=(str(stsb_spec),), records=())
    rec = run_compare_report(out, opts, mteb_evaluate=evaluate_encoder,
                             screenshot=lambda html, png: False)
    md = out.read_text(encoding="utf-8")
    assert rec["files"]["png"] is None and "![" not in md
    assert (tmp_path / "r" / "compare-mteb" / "mteb-evaluate" / "results").is_dir()
    # the model's own pooling (cls for the tiny model) on both sides
    assert rec["settings"]["pooling"] == "cls" and len(rec["entries"]) == 2
    assert abs(rec["agreement"][0]["difference"]) < 0.02
    assert "Records compared: none" in md
