"""The one copy of the small formatters every report uses."""

from __future__ import annotations

import math

from embedkit.reports._format import fmt, mean, num, slug, table, x100


def test_numbers_as_cells():
    assert [x100(v) for v in (0.123456, -0.5, None, float("nan"))] == ["12.35", "-50.00", "-", "-"]
    assert [fmt(v, d) for v, d in ((1.23456, 3), (2.5, 0), (3.5, 0), (None, 2), (math.nan, 1))] \
        == ["1.235", "2", "4", "-", "-"]
    assert [num(v, d) for v, d in ((1234567.891, 1), (0.5, 0), (None, 1))] == [
        "1,234,567.9", "0", "-"]


def test_slug_is_a_file_name_piece():
    assert [slug(t) for t in ("STS-B", "first-last-avg", "a b//c", "__x__", "中文", "")] == [
        "STS-B", "first-last-avg", "a_b_c", "x", "x", "x"]


def test_mean_of_all_or_nothing():
    assert mean([0.25, 0.75]) == 0.5
    assert all(math.isnan(mean(xs)) for xs in ([], [0.5, None], [0.5, math.nan]))


def test_table_alignment():
    header, rows = ["task", "pooling", "raw", "best", "score"], [["A", "cls", "1.00", "w", "10.00"]]
    assert table(header, rows) == ("task  pooling   raw  best  score\n"
                                   "A     cls      1.00  w     10.00")
    assert table(header, rows, markdown=True).splitlines()[:2] == [
        "| task | pooling | raw | best | score |", "|---|---|---:|---|---:|"]
    assert table(["a", "b"], [["x", "1"]], left=(0,)) == "a  b\nx  1"
