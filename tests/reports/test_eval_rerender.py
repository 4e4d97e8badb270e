"""The committed eval records re-rendered: each report drawn from its JSON alone gives the
Markdown the Makefile target wrote (``eval/*.md``), so moving or changing a renderer cannot
change a report unnoticed (``make eval-*`` re-encodes for minutes; this takes a second).

Three committed reports were written before later renderer changes (the run title's
``[torch float32]``, the escaped ``->`` of the diagnose sweep table, the retrieval setup
sentence); their expected text is ``tests/reports/expected/``, rendered from the same JSON by
the renderers as they stood before the move into :mod:`embedkit.reports`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedkit.reports.bench import markdown_report
from embedkit.reports.diagnose import conclusions, diagnose_markdown
from embedkit.reports.index_eval import markdown_eval_report
from embedkit.reports.sweep import sweep_markdown
from tests.reliability_report import render as reliability_markdown

ROOT = Path(__file__).resolve().parents[2]
EVAL = ROOT / "eval"
EXPECTED = Path(__file__).with_name("expected")


def _record(name: str) -> dict:
    return json.loads((EVAL / f"{name}.json").read_text(encoding="utf-8"))


def _expected(name: str) -> str:
    where = EXPECTED if (EXPECTED / f"{name}.md").is_file() else EVAL
    return (where / f"{name}.md").read_text(encoding="utf-8")


@pytest.fixture(autouse=True)
def _in_checkout(monkeypatch):
    """Plot links are written relative to the Markdown file, from the record's relative paths."""
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize("name", ["m3e-small", "pairs-m3e-small"])
def test_bench_markdown_is_the_committed_one(name):
    assert markdown_report(_record(name)) == _expected(name)


@pytest.mark.parametrize("name", ["retrieval-m3e-small", "lcqmc-retrieval-m3e-small"])
def test_index_eval_markdown_is_the_committed_one(name):
    assert markdown_eval_report(_record(name)) == _expected(name)


def test_sweep_markdown_is_the_committed_one():
    rec = _record("whitening-m3e-small")
    plots = [Path(p) for p in rec["plots"]]
    assert len(plots) == 20
    assert sweep_markdown(rec, plots, "eval/whitening-m3e-small.md") == _expected(
        "whitening-m3e-small")


def test_diagnose_markdown_from_a_record_without_prose():
    """The record written before the split kept English conclusions; the report now derives
    them from the numbers: the same sentences, and the same Markdown without them."""
    rec = _record("diagnostics-m3e-small")
    old = rec.pop("conclusions")
    assert conclusions(rec) == old and len(old) >= 4
    md = diagnose_markdown(rec, [Path(p) for p in rec["plots"]], "eval/diagnostics-m3e-small.md")
    assert md == _expected("diagnostics-m3e-small")
    assert f"- {old[0]}\n" in md


def test_reliability_markdown_is_the_committed_one():
    rows = json.loads((EVAL / "reliability.json").read_text(encoding="utf-8"))
    assert reliability_markdown(rows, "make eval-reliability") == _expected("reliability")
