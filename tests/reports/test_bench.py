"""Text and Markdown tables and reports from bench records."""

from __future__ import annotations

from embedkit.reports.bench import (
    format_table,
    markdown_report,
    provenance_lines,
    run_description,
    run_title,
    table_rows,
)


def record(command="embedkit bench --tasks A,B"):
    nan = float("nan")
    return {
        "command": command,
        "machine": {"cpu": "Test CPU", "cores": 2, "os": "Linux 6"},
        "versions": {"embedkit": "0.1.0", "python": "3.11.7", "torch": "2.13.0", "other": "1"},
        "model": {"name": "tiny", "identity": "sha256:abc", "num_layers": 2, "hidden_size": 32},
        "settings": {"tasks": ["A", "B"], "splits": {"A": ["test", "valid"], "B": ["test"]},
                     "dtype": "float32", "device": "cpu", "lowercase": False,
                     "protocol": "whitening", "max_length": {"A": 64, "B": 128},
                     "batch_size": 64, "post": []},
        "results": {
            "cls": {"A": {"valid": {"spearman": 0.5, "pearson": 0.4},
                          "test": {"spearman": 0.123456, "pearson": 0.1}},
                    "B": {"test": {"spearman": nan, "pearson": None}},
                    "avg": {"spearman": 0.31, "pearson": 0.25}},
            "last-avg": {"A": {"valid": {"spearman": -0.05, "pearson": 0.0},
                               "test": {"spearman": 1.0, "pearson": 1.0}},
                         "B": {"test": {"spearman": 0.7, "pearson": 0.7}},
                         "avg": {"spearman": 0.6125, "pearson": 0.6}}},
        "data": {"A": {"test": {"n_pairs": 10, "skipped": 1, "sha256": "f" * 64,
                                "source": "/d/senteval_cn/A/A.test.data"},
                       "valid": {"n_pairs": 5, "skipped": 0, "sha256": "e" * 64, "source": "x"}},
                 "B": {"test": {"n_pairs": 3, "skipped": 0, "sha256": "0" * 64,
                                "source": "hub:C-MTEB/B@r/test"}}},
        "timings": {"unique_sentences": 30, "cache_hits": 10, "encoded": 20,
                    "seconds_encoding": 1.25, "sentences_per_second": 16.0, "seconds_total": 2.5},
    }


def test_table_rows_order_and_cells():
    header, rows = table_rows(record())
    assert header == ["row", "A/valid", "A/test", "B/test", "avg"]  # valid before test
    assert rows == [["cls", "50.00", "12.35", "-", "31.00"],
                    ["last-avg", "-5.00", "100.00", "70.00", "61.25"]]
    _, prow = table_rows(record(), "pearson")
    assert prow[0] == ["cls", "40.00", "10.00", "-", "25.00"]


def test_text_table_is_aligned():
    lines = format_table(record()).splitlines()
    assert lines == [
        "row       A/valid  A/test  B/test    avg",
        "cls         50.00   12.35       -  31.00",
        "last-avg    -5.00  100.00   70.00  61.25",
    ]


def test_markdown_table():
    lines = format_table(record(), markdown=True).splitlines()
    assert lines[0] == "| row | A/valid | A/test | B/test | avg |"
    assert lines[1] == "|---|---:|---:|---:|---:|"
    assert lines[2] == "| cls | 50.00 | 12.35 | - | 31.00 |"


def test_provenance_lines():
    lines = provenance_lines(record())
    assert lines[:6] == ["Regenerate with:", "", "```", "embedkit bench --tasks A,B", "```", ""]
    assert lines[6] == "- Machine: Test CPU, 2 cores, Linux 6"
    assert lines[7] == "- Versions: embedkit 0.1.0, python 3.11.7, torch 2.13.0"
    assert provenance_lines(record(command=None))[3] == "(Python API)"


def test_markdown_report():
    text = markdown_report(record())
    lines = text.splitlines()
    assert lines[0] == "# embedkit bench: tiny [torch float32]" and lines[2] == "Regenerate with:"
    assert "- Model: `tiny` (identity `sha256:abc`), 2 layers, hidden 32; dtype float32, " \
           "device cpu, lowercase False" in lines
    assert "- Protocol: whitening; max length A 64, B 128; batch size 64" in lines
    assert "| A | test | 10 | 1 | `ffffffffffffffff` | A.test.data |" in lines
    assert "| B | test | 3 | 0 | `0000000000000000` | test |" in lines
    assert ("- 30 unique sentences asked for, 10 from the cache, 20 encoded in 1.2 s "
            "(16.0 sentences/s); total 2.5 s") in lines
    assert markdown_report(record(), title="Custom").startswith("# Custom\n")


def test_truncation_note():
    from embedkit.reports.bench import truncation_note

    rec = {**record(), "truncated": {"A": {"test": 2, "valid": 0}, "B": {"test": 1}},
           "truncated_of": {"A": {"test": 20, "valid": 10}, "B": {"test": 6}}}
    note = "3 of 36 sentences truncated at the max length (A 64, B 128) (A test: 2, B test: 1)"
    assert truncation_note(rec) == note
    assert format_table(rec).splitlines()[-1] == note
    assert format_table(rec, markdown=True).splitlines()[-1] == f"- {note}"
    none = {**rec, "truncated": {"A": {"test": 0}}, "truncated_of": {"A": {"test": 20}}}
    assert truncation_note(none) is None and truncation_note(record()) is None
    assert truncation_note(none, always=True) == (
        "0 of 20 sentences truncated at the max length (A 64, B 128)")
    assert "- Truncation: " + note in markdown_report(rec).splitlines()


def test_several_models_table():
    second = record()
    second["model"] = {**second["model"], "name": "other"}
    rec = {"kind": "bench-models", "command": "embedkit bench", "machine": {}, "versions": {},
           "models": [{**record(), "kind": "bench"}, {**second, "kind": "bench"}]}
    header, rows = table_rows(rec)
    assert header == ["model", "row", "A/valid", "A/test", "B/test", "avg"]
    assert [r[:2] for r in rows] == [["tiny", "cls"], ["", "last-avg"], ["other", "cls"],
                                     ["", "last-avg"]]
    lines = format_table(rec).splitlines()
    assert lines[0] == "model  row       A/valid  A/test  B/test    avg"
    assert lines[3] == "other  cls         50.00   12.35       -  31.00"
    md = markdown_report(rec).splitlines()
    assert md[0] == "# embedkit bench: tiny [torch float32], other [torch float32]"
    assert "|---|---|---:|---:|---:|---:|" in md
    assert "| other | cls | 50.00 | 12.35 | - | 31.00 |" in md
    assert sum(line.startswith("- Model: ") for line in md) == 2
    assert md[-2].startswith("- tiny: 30 unique sentences")
    assert md[-1].startswith("- other: 30 unique sentences")


def test_run_title_tells_backend_precision_prompt_and_revision_apart():
    """Every table title names how the model ran: an int8 or ONNX/OpenVINO run no longer reads
    as the float32 torch one (issue 18.3)."""
    base = record()
    titles = {run_title({**base, "settings": {**base["settings"], **extra}})
              for extra in ({}, {"backend": "onnx"}, {"backend": "onnx", "quantize": "int8"},
                            {"backend": "openvino", "quantize": "int8"}, {"dtype": "float16"})}
    assert titles == {"tiny [torch float32]", "tiny [onnx float32]", "tiny [onnx int8]",
                      "tiny [openvino int8]", "tiny [torch float16]"}
    hub = {"name": "org/m", "identity": "org/m@0123456789abcdef"}
    assert run_description({"prompt": "查询: ", "query_prompt": "q: "}, hub) == (
        'torch float32, prompt "查询: ", query prompt "q: ", revision 0123456789ab')
    assert run_description({"revision": "v2", "query_prompt": None}, hub) == (
        "torch float32, revision v2")


def test_markdown_report_title_and_escaped_rows():
    rec = record()
    rec["settings"].update(backend="onnx", quantize="int8")
    rec["results"]["a|b <i>"] = rec["results"].pop("last-avg")
    md = markdown_report(rec)
    assert md.startswith("# embedkit bench: tiny [onnx int8]\n")
    assert "| a\\|b &lt;i&gt; | -5.00 | 100.00 | 70.00 | 61.25 |" in md
