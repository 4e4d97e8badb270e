"""The compare pages: Markdown escaped, HTML sorted best first, bars near the data, long labels
wrapped, the best comparable value of each column highlighted (issue 18.3)."""

from __future__ import annotations

import re

from embedkit.reports.compare import (
    _JS,
    bar_chart_svg,
    board_rows,
    comparison_table,
    html_report,
    markdown_report,
)
from embedkit.runs.compare import compare_records


def _bench(name: str, scores: dict[str, float], sha: str = "b" * 64) -> dict:
    return {"kind": "bench", "model": {"name": name, "identity": "sha256:" + "1" * 64},
            "settings": {"protocol": "cmteb", "max_length": {t: 512 for t in scores}},
            "data": {t: {"test": {"sha256": sha}} for t in scores},
            "results": {"cls": {**{t: {"test": {"spearman": s}} for t, s in scores.items()},
                                "pooling": "cls"}}}


def _cmp():
    """a ranked 1, b ranked 2, c's ATEC on other data (the highest ATEC, flagged)."""
    c = _bench("c", {"ATEC": 0.95, "BQ": 0.10})
    c["data"]["ATEC"]["test"]["sha256"] = "c" * 64
    return compare_records([("a.json", _bench("a", {"ATEC": 0.78, "BQ": 0.72})),
                            ("b.json", _bench("b", {"ATEC": 0.71, "BQ": 0.74})),
                            ("c.json", c)])


def test_markdown_escapes_every_cell_and_note():
    evil = "<script>alert(1)</script>|`x`&"
    cmp = compare_records([("a.json", _bench(evil, {"ATEC": 0.5})),
                           ("b.json", _bench("b", {"ATEC": 0.4}, sha="c" * 64)),
                           ("c.json", _bench(evil, {"ATEC": 0.6}, sha="c" * 64))])
    md = markdown_report(cmp, title="T <b>")
    assert "<script>" not in md and "<b>" not in md
    safe = r"&lt;script&gt;alert(1)&lt;/script&gt;\|\`x\`&amp; · cls"
    assert f"| 1 | {safe} |" in md or f"| - | {safe} |" in md
    assert f"- {safe} / ATEC: data bbbbbbbbbbbb (column: cccccccccccc)" in md  # notes too
    assert md.startswith("# T &lt;b&gt;\n")
    # the leaderboard's rows still have as many cells as its header (the pipe is escaped)
    board = [line for line in md.splitlines() if line.startswith("| ")][:4]
    assert board[0].startswith("| rank |")
    assert {len(re.findall(r"(?<!\\)\|", line)) for line in board} == {7}
    assert "<script>" in comparison_table(cmp)  # plain text is shown as it is


def test_html_first_click_sorts_best_first():
    page = html_report(_cmp())
    assert '<th data-best="asc" data-num>rank</th>' in page
    assert '<th data-best="desc" data-num>ATEC</th>' in page
    assert '<th data-best="desc" data-num>avg</th>' in page
    assert '<th data-best="asc">model</th>' in page
    # the first click takes the header's data-best; a second one reverses it
    assert 'th.classList.contains("desc")?"asc":th.classList.contains("asc")?"desc":' in _JS
    assert '(th.getAttribute("data-best")||"asc")' in _JS
    # flagged and unranked cells sort after the comparable ones, missing ones last
    assert "!td.hasAttribute(\"data-v\")?2:td.hasAttribute(\"data-g\")?1:0" in _JS


def test_html_highlights_the_best_comparable_value_per_column():
    page = html_report(_cmp())
    board = page[page.index('id="board"'):page.index("</table>", page.index('id="board"'))]
    best = re.findall(r'<td class="num best" data-v="([\d.]+)"', board)
    assert best == ["78.000000", "75.000000", "74.000000"]  # a: ATEC, avg; b: BQ
    # c's 95.00 is the highest ATEC, but on other data: flagged, sorted after, not best
    assert '<td class="num flag" data-v="95.000000" data-g="1"' in board
    assert re.search(r'<td class="num unranked" data-v="10\.000000" data-g="1" title="mean '
                     r'over 1 of 2 tasks: not ranked">10\.00 \(1/2\)</td>', board)


def test_bars_start_near_the_data():
    svg = bar_chart_svg("ATEC", [("a", 80.0, False), ("b", 70.0, False)])
    assert 'data-axis-min="65"' in svg and 'data-axis-max="80"' in svg
    widths = [float(w) for w in re.findall(r'<rect x="[\d.]+" y="\d+" width="([\d.]+)"', svg)]
    assert abs(widths[0] / widths[1] - (80 - 65) / (70 - 65)) < 0.01  # not 80 / 70
    assert ">65</text>" in svg  # the axis start is written under the bars
    # values that reach 0 keep the axis at 0; negative ones extend it
    assert 'data-axis-min="0"' in bar_chart_svg("T", [("a", 3.0, False), ("b", 0.5, False)])
    assert 'data-axis-min="-20"' in bar_chart_svg("T", [("a", 30.0, False), ("b", -10.0, False)])


def test_long_labels_wrap_instead_of_being_cut():
    label = "moka-ai/m3e-small · last-avg + whiten:beta=1,gamma=1,k=256 (best on valid)"
    svg = bar_chart_svg("T", [(label, 70.0, False), ("short", 60.0, False)])
    spans = re.findall(r"<tspan[^>]*>([^<]*)</tspan>", svg)
    assert len(spans) == 4 and " ".join(spans[:3]) == label  # three lines, then "short"
    assert "…" not in svg and f"<title>{label}</title>" in svg
    page = html_report(_cmp())
    assert "overflow-wrap:anywhere" in page  # table cells wrap too


def _timed(rec: dict, rate, hardware: str = "a" * 12) -> dict:
    return {**rec, "speed": {"sentences_per_second": rate, "status": "measured" if rate else
                             "cached", "seconds_encoding": 1.0, "encoded": 40 if rate else 0,
                             "cache_hits": 0 if rate else 40, "backend": "onnx",
                             "precision": "int8", "threads": 2, "device": "cpu",
                             "hardware": hardware}}


def test_no_speed_column_without_a_speed_block():
    header, _ = board_rows(_cmp())  # records written before the block
    assert "sentences/s" not in header
    assert "sentences/s" not in html_report(_cmp()) and "†" not in comparison_table(_cmp())


def test_speed_column_in_text_markdown_and_html():
    cmp = compare_records([("a.json", _timed(_bench("a", {"ATEC": 0.78}), 483.4)),
                           ("b.json", _timed(_bench("b", {"ATEC": 0.71}), 2500.0, "b" * 12)),
                           ("c.json", _timed(_bench("c", {"ATEC": 0.70}), None)),
                           ("d.json", _timed(_bench("d", {"ATEC": 0.69}), 900.0))])
    header, rows = board_rows(cmp)
    assert header == ["rank", "model", "ATEC", "avg", "sentences/s", "protocol", "settings"]
    assert [r[4] for r in rows] == ["483", "2,500†", "cached", "900"]
    md = comparison_table(cmp, markdown=True)
    assert "| 1 | a · cls | 78.00 | 78.00 | 483 | cmteb |" in md
    assert ("- † b · cls: measured on other hardware or threads (fingerprint bbbbbbbbbbbb, 2 "
            "threads) than the rest of the column (aaaaaaaaaaaa): its speed is not comparable"
            ) in md
    board = html_report(cmp)
    assert '<th data-best="desc" data-num>sentences/s</th>' in board
    assert re.search(r'<td class="num" data-v="2500\.000000" title="onnx int8, 2 threads, '
                     r'hardware bbbbbbbbbbbb; 40 sentences encoded, 0 from the cache">'
                     r"2,500†</td>", board)
    assert "<h2>Encoding speed</h2>" in board


def test_speed_plot_written(tmp_path):
    from embedkit.reports.compare_speed import save_speed_plot

    cmp = compare_records([("a.json", _timed(_bench("a", {"ATEC": 0.78}), 483.4)),
                           ("b.json", _timed(_bench("b", {"ATEC": 0.71}), 2500.0, "b" * 12)),
                           ("c.json", _bench("c", {"ATEC": 0.70}))])
    out = save_speed_plot(cmp, tmp_path / "plots" / "speed.png")
    assert out.read_bytes()[:4] == b"\x89PNG" and out.stat().st_size > 1000
