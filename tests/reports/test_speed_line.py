"""The encoding-speed line of the bench, sweep and index eval reports (issue 23.5): one line
under the settings, and a committed record without a speed block rendered as it always was
(its byte-identical rendering is tests/reports/test_eval_rerender.py)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from embedkit.reports.bench import markdown_report, speed_line
from embedkit.reports.index_eval import markdown_eval_report
from embedkit.reports.sweep import sweep_markdown
from tests.reports.test_eval_rerender import ROOT, _expected, _record

SPEED = {"sentences_per_second": 483.4, "status": "measured", "seconds_encoding": 48.7,
         "encoded": 23557, "cache_hits": 0, "backend": "openvino", "precision": "fp32",
         "threads": 2, "device": "cpu", "hardware": "0123456789ab"}
MACHINE = {"cpu_flags": ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"],
           "cores_available": 2, "threads": 2, "gpu": None, "fingerprint": "0123456789ab"}


def _with_speed(rec: dict, **speed) -> dict:
    out = copy.deepcopy(rec)
    out["speed"] = {**SPEED, **speed}
    out["machine"] = {**out["machine"], **MACHINE}
    return out


def _inserted(text: str, after: str, line: str) -> str:
    """``text`` with ``line`` inserted after its first line starting with ``after``."""
    lines = text.split("\n")
    at = next(i for i, x in enumerate(lines) if x.startswith(after))
    return "\n".join([*lines[:at + 1], line, *lines[at + 1:]])


@pytest.fixture(autouse=True)
def _in_checkout(monkeypatch):
    monkeypatch.chdir(ROOT)


def test_the_line_names_rate_backend_precision_cpu_flags_and_threads():
    rec = _with_speed(_record("m3e-small"))
    assert speed_line(rec) == ("- Encoding: 483 sentences/s, openvino fp32, AMD EPYC "
                               "(avx512_vnni, avx512_bf16), 2 threads")
    cached = _with_speed(_record("m3e-small"), sentences_per_second=None, status="cached")
    assert speed_line(cached) == ("- Encoding: vectors from the cache (no speed), openvino "
                                  "fp32, AMD EPYC (avx512_vnni, avx512_bf16), 2 threads")
    assert speed_line(_record("m3e-small")) is None  # written before the block


def test_bench_report_has_the_line_under_the_settings():
    rec = _with_speed(_record("m3e-small"))
    assert markdown_report(rec) == _inserted(_expected("m3e-small"), "- Truncation:",
                                             speed_line(rec))


def test_sweep_report_has_the_line_under_the_settings():
    rec = _with_speed(_record("whitening-m3e-small"), sentences_per_second=None,
                      status="cached", backend="torch")
    plots = [Path(p) for p in rec["plots"]]
    line = ("- Encoding: vectors from the cache (no speed), torch fp32, Intel(R) Xeon(R) "
            "Processor (avx512_vnni, avx512_bf16), 2 threads")
    assert sweep_markdown(rec, plots, "eval/whitening-m3e-small.md") == _inserted(
        _expected("whitening-m3e-small"), "- Max length:", line)


def test_index_eval_report_has_the_line_under_the_settings():
    rec = _with_speed(_record("retrieval-m3e-small"), precision="int8-static")
    line = ("- Encoding: 483 sentences/s, openvino int8-static, AMD EPYC (avx512_vnni, "
            "avx512_bf16), 2 threads")
    assert markdown_eval_report(rec) == _inserted(_expected("retrieval-m3e-small"),
                                                  "- Model:", line)
