"""The sweep report's tables from hand-made records."""

from __future__ import annotations

import pytest

from embedkit.reports.sweep import summary_rows


@pytest.mark.reliability("9.7", "sweep: the across-task average is NaN when a task's score is")
def test_sweep_average_is_nan_when_a_task_is():
    def result(score):
        s = {"post": "whiten:beta=1,gamma=1,k=all", "select": score, "report": score}
        return {"cls": {"raw": {"report": score, "select": score}, "best": s, "classic": s}}

    record = {"settings": {"select_on": "valid", "report_on": "test"},
              "results": {"A": result(0.5), "B": result(float("nan"))}}
    avg = summary_rows(record)[1][-1]
    assert avg[0] == "avg" and avg[2] == avg[5] == avg[6] == "-"
