"""Tables and Markdown reports from bench records (Spearman x 100, two decimals), and the
name every report gives a run (:func:`run_title`).

>>> rec = {"settings": {"tasks": ["T"], "splits": {"T": ["test"]}},
...        "results": {"cls": {"T": {"test": {"spearman": 0.51234}}, "avg": {"spearman": 0.51234}}}}
>>> print(format_table(rec))
row  T/test    avg
cls   51.23  51.23
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from embedkit.aliases import JSONDict, StrPath
from embedkit.io.tables import text_table
from embedkit.reports._format import x100
from embedkit.runs.record import BenchRecord, RunRecord, SweepRecord, run_revision


def run_description(settings: Mapping[str, Any] | None,
                    model: Mapping[str, Any] | None = None) -> str:
    """How the encoder ran, compactly: backend and precision always (``torch float32``,
    ``onnx int8``, ``torch bfloat16``), then the prompt (and the queries' own, when it
    differs), the instruction (or that each task has its own) and the revision when there are
    any. Records written before these settings read as torch float32.

    >>> run_description({"backend": "onnx", "quantize": "int8", "prompt": "q: "})
    'onnx int8, prompt "q: "'
    >>> run_description({"backend": "openvino", "quantize": "int8-static"})
    'openvino int8-static'
    >>> run_description({}, {"identity": "org/m@abc"})
    'torch float32, revision abc'
    >>> run_description({"dtype": "bfloat16", "instructions": {"A": "Find it.", "B": "Find it."}})
    'torch bfloat16, instruction "Find it."'
    >>> run_description({"instructions": {"A": "x", "B": "y"}})
    'torch float32, instructions per task'
    >>> run_description({"backend": "openvino", "quantize": "int8-static"})
    'openvino int8-static'
    """
    s = settings or {}
    quantize = s.get("quantize")
    precision = str(quantize if quantize and quantize != "none" else s.get("dtype") or "float32")
    parts = [f"{s.get('backend') or 'torch'} {precision}"]
    prompt = s.get("prompt") or ""
    if prompt:
        parts.append(f"prompt {json.dumps(prompt, ensure_ascii=False)}")
    query = s.get("query_prompt")
    if query is not None and query != prompt:
        parts.append(f"query prompt {json.dumps(query, ensure_ascii=False)}")
    told = {v for v in (s.get("instructions") or {}).values() if v}
    if not told and s.get("instruction"):
        told = {s["instruction"]}
    if len(told) == 1:
        parts.append(f"instruction {json.dumps(told.pop(), ensure_ascii=False)}")
    elif told:
        parts.append("instructions per task")
    rev = run_revision(s, model)
    if rev:
        parts.append(f"revision {rev}")
    return ", ".join(parts)


def run_title(record: RunRecord) -> str:
    """The name every table title gives a run: the model and how it ran
    (:func:`run_description`), e.g. ``m3e-small [onnx int8, prompt "q: "]``.

    >>> run_title({"model": {"name": "m"}, "settings": {"backend": "openvino"}})
    'm [openvino float32]'
    """
    model = record.get("model") or {}
    return f"{model.get('name', '?')} [{run_description(record.get('settings'), model)}]"


def _blocks(record: BenchRecord) -> list[BenchRecord]:
    """The per-model records of a ``bench-models`` record, else the record itself."""
    return list(record["models"]) if record.get("kind") == "bench-models" else [record]


def table_rows(record: BenchRecord, metric: str = "spearman") -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per result label, one column per task/split, then avg. A
    ``bench-models`` record (several models) has a first ``model`` column and one block of
    rows per model, the model named on its first row."""
    if record.get("kind") == "bench-models":
        header: list[str] = []
        rows: list[list[str]] = []
        for block in _blocks(record):
            header, block_rows = table_rows(block, metric)
            name = block["model"]["name"]  # the title line gives each run_title
            rows += [[name if i == 0 else "", *r] for i, r in enumerate(block_rows)]
        return ["model", *header], rows
    tasks = record["settings"]["tasks"]
    splits = record["settings"]["splits"]
    order = ("train", "valid", "test")
    cols = [(t, s) for t in tasks for s in sorted(splits[t], key=lambda x: (
        order.index(x) if x in order else 9, x))]
    header = ["row"] + [f"{t}/{s}" for t, s in cols] + ["avg"]
    rows = []
    for label, res in record["results"].items():
        rows.append([label] + [x100(res[t][s][metric]) + _pm(res[t][s], metric)
                               for t, s in cols] + [x100(res["avg"][metric])])
    return header, rows


def _pm(scores: JSONDict, metric: str) -> str:
    """`` ±0.9``: half the width of the score's bootstrap interval x 100, when it has one.

    >>> _pm({"ci": {"spearman": {"low": 0.72, "high": 0.738}}}, "spearman")
    ' ±0.9'
    """
    ci = (scores.get("ci") or {}).get(metric)
    return f" ±{50 * (ci['high'] - ci['low']):.1f}" if ci else ""


def classification_rows(record: BenchRecord, similarity: str = "cosine"
                        ) -> tuple[list[str], list[list[str]]]:
    """One line per row and binary task/split: the accuracy and F1 of the thresholds chosen
    on the selection split, precision, recall, AP (x 100) and the two thresholds."""
    header = ["row", "task/split", *_CLASSIFICATION_COLUMNS]
    rows = []
    for label, res in record["results"].items():
        for task, splits in res.items():
            if not isinstance(splits, dict) or task == "avg":
                continue
            for split, sc in splits.items():
                c = (sc.get("classification") or {}) if isinstance(sc, dict) else {}
                if similarity in c:
                    rows.append([label, f"{task}/{split}",
                                 *_classification_cells(c, sc, similarity)])
    return header, rows


_CLASSIFICATION_COLUMNS = ("acc", "acc thr", "F1", "P", "R", "F1 thr", "AP", "oracle acc",
                           "selected on")


def _classification_cells(c: JSONDict, sc: JSONDict, similarity: str) -> list[str]:
    """The cells of :data:`_CLASSIFICATION_COLUMNS` of one ``classification`` entry ``c``
    (``sc``: the scores it sits in, for bootstrap intervals)."""
    m = c[similarity]
    return [x100(m["accuracy"]) + _pm(sc, "accuracy"), f"{m['accuracy_threshold']:.4f}",
            x100(m["f1"]), x100(m["precision"]), x100(m["recall"]),
            f"{m['f1_threshold']:.4f}", x100(m["ap"]) + _pm(sc, "ap"),
            x100(m["oracle"]["accuracy"]), c["selected_on"]]


def sweep_classification_rows(record: SweepRecord, similarity: str = "cosine"
                              ) -> tuple[list[str], list[list[str]]]:
    """A sweep record's pair classification (``SweepOptions.classify``): one line per binary task
    and pooling, the best setting's metrics on the report split (x 100), thresholds chosen on
    the selection split; the columns of :func:`classification_rows`."""
    header = ["task", "pooling", "setting", *_CLASSIFICATION_COLUMNS]
    rows = []
    for task, by_pool in record["results"].items():
        for pooling, r in by_pool.items():
            best = r.get("best") or {}
            c = best.get("classification") or {}
            if similarity in c:
                rows.append([task, pooling, best["post"],
                             *_classification_cells(c, best, similarity)])
    return header, rows


def sweep_classification_section(record: SweepRecord) -> list[str]:
    """The Markdown section of :func:`sweep_classification_rows` (none without rows)."""
    header, rows = sweep_classification_rows(record)
    if not rows:
        return []
    s = record["settings"]
    return [f"## Pair classification x 100 (cosine; the best setting, thresholds chosen on "
            f"{s['select_on']}, reported on {s['report_on']})", "",
            text_table(header, rows, markdown=True, left=3), ""]


def mteb_rows(record: BenchRecord) -> tuple[list[str], list[list[str]]]:
    """The mteb tasks of a bench record (its ``mteb`` entry): one line per row, per task
    mteb's main score x 100 (the task's main metric in the header).

    >>> mteb_rows({"mteb": {"tasks": {"T": {"main_metric": "accuracy"}},
    ...                     "results": {"cls": {"T": {"main_score": 0.5}}}}})
    (['row', 'T (accuracy)'], [['cls', '50.00']])
    """
    section = record.get("mteb") or {}
    tasks = section.get("tasks") or {}
    header = ["row", *(f"{t} ({m['main_metric']})" for t, m in tasks.items())]
    rows = [[label, *(x100(by_task[t]["main_score"]) if t in by_task else "-" for t in tasks)]
            for label, by_task in (section.get("results") or {}).items()]
    return header, rows


def _undefined_notes(record: BenchRecord, metric: str = "spearman") -> list[str]:
    """One line per task/split whose score is undefined (the record's ``undefined`` flag: constant
    labels or cosines), saying why and that the averages including it are undefined too.

    >>> _undefined_notes({"undefined": [{"row": "cls", "task": "B", "split": "test",
    ...                                  "reason": "constant labels"}]})
    ['B/test: Spearman is undefined (constant labels); the averages that include it are undefined too (rows: cls)']
    """
    rows: dict[tuple[str, str, str], list[str]] = {}
    for u in record.get("undefined") or ():
        rows.setdefault((u["task"], u["split"], u["reason"]), []).append(u["row"])
    name = metric.capitalize()
    return [f"{task}/{split}: {name} is undefined ({reason}); the averages that include it are "
            f"undefined too (rows: {', '.join(labels)})"
            for (task, split, reason), labels in rows.items()]


def truncation_note(record: Mapping[str, Any], *, always: bool = False) -> str | None:
    """``N of M sentences truncated at max length L (task split: n, ...)`` from a bench record's
    ``truncated`` counts (distinct sentences per task and split); None when the record has no
    counts, or (unless ``always``) when nothing was truncated.

    >>> truncation_note({"settings": {"max_length": {"A": 64, "B": 64}},
    ...                  "truncated": {"A": {"test": 3}, "B": {"test": 0}},
    ...                  "truncated_of": {"A": {"test": 40}, "B": {"test": 60}}})
    '3 of 100 sentences truncated at max length 64 (A test: 3)'
    """
    truncated = record.get("truncated")
    if not isinstance(truncated, dict):
        return None
    of = record.get("truncated_of") or {}
    n = sum(v for by in truncated.values() for v in by.values())
    if not n and not always:
        return None
    m = sum(v for by in of.values() for v in by.values())
    lengths = (record.get("settings") or {}).get("max_length")
    by_task = lengths if isinstance(lengths, dict) else {t: lengths for t in truncated}
    if len(set(by_task.values())) == 1:
        at = f"max length {next(iter(by_task.values()))}"
    else:
        at = "the max length (" + ", ".join(f"{t} {v}" for t, v in by_task.items()) + ")"
    parts = [f"{t} {s}: {v}" for t, by in truncated.items() for s, v in by.items() if v]
    return f"{n} of {m} sentences truncated at {at}" + (f" ({', '.join(parts)})" if parts else "")


def _notes(record: BenchRecord, metric: str) -> tuple[list[str], list[str]]:
    """What is said below a table, per model: undefined scores, and truncated sentences."""
    several = record.get("kind") == "bench-models"
    undefined: list[str] = []
    truncated: list[str] = []
    for block in _blocks(record):
        prefix = f"{block['model']['name']}: " if several else ""
        note = truncation_note(block)
        undefined += [f"{prefix}{n}" for n in _undefined_notes(block, metric)]
        truncated += [f"{prefix}{note}"] if note else []
    return undefined, truncated


def format_table(record: BenchRecord, metric: str = "spearman", markdown: bool = False) -> str:
    """The results as an aligned text table or a Markdown table (one block of rows per model
    for several models); undefined scores (``-``) are explained below it
    (:func:`_undefined_notes`), and truncated sentences counted (:func:`truncation_note`)."""
    header, rows = table_rows(record, metric)
    undefined, truncated = _notes(record, metric)
    labels = 2 if header[0] == "model" else 1  # left-aligned columns
    if markdown:
        lines = [text_table(header, rows, markdown=True, left=labels)]
        if undefined:
            lines += ["", "`-`: undefined.", ""] + [f"- {n}" for n in undefined]
        if truncated:
            lines += [""] + [f"- {n}" for n in truncated]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) if i < labels else c.rjust(w)  # noqa: E731
                              for i, (c, w) in enumerate(zip(r, widths, strict=True)))
    lines = [fmt(r).rstrip() for r in [header, *rows]]
    if undefined or truncated:
        lines += [""] + [f"-: undefined. {n}" for n in undefined] + truncated
    return "\n".join(lines)


def provenance_lines(record: RunRecord) -> list[str]:
    """The Markdown header every report starts with: command, machine, versions."""
    m = record.get("machine", {})
    v = record.get("versions", {})
    keep = ("embedkit", "python", "torch", "transformers", "tokenizers", "numpy", "scipy",
            "scikit-learn", "faiss-cpu", "sentence-transformers")
    lines = [
        "Regenerate with:",
        "",
        "```",
        record.get("command") or "(Python API)",
        "```",
        "",
        f"- Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('os', '?')}",
        "- Versions: " + ", ".join(f"{k} {v[k]}" for k in keep if k in v),
    ]
    data = data_line(record)
    if data:
        lines.append(f"- Data: {data.removeprefix('data: ')}")
    return lines


def rate_text(value: float) -> str:
    """Sentences per second as reports show them: whole numbers with thousands separators from
    100 on, one decimal below.

    >>> rate_text(76545.3), rate_text(483.4), rate_text(12.34)
    ('76,545', '483', '12.3')
    """
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def shown_flags(flags: Any) -> list[str]:
    """The CPU flags a report names: the ones beyond AVX2 and AVX-512F (int8 dot products,
    bfloat16, matrix units) when there are any, else those two.

    >>> shown_flags(["avx2", "avx512f", "avx512_vnni", "avx512_bf16"]), shown_flags(["avx2"])
    (['avx512_vnni', 'avx512_bf16'], ['avx2'])
    """
    flags = [str(f) for f in flags or ()]
    return [f for f in flags if f not in ("avx2", "avx512f")] or flags


def speed_line(record: Mapping[str, Any]) -> str | None:
    """The Markdown line that says how fast a run encoded, from its ``speed`` block and
    ``machine`` (None for a record written before the block):
    ``- Encoding: 483 sentences/s, openvino fp32, AMD EPYC (avx512_vnni), 2 threads``, or
    ``- Encoding: vectors from the cache (no speed), ...`` when nothing was encoded.

    >>> speed_line({"speed": {"sentences_per_second": 483.2, "status": "measured",
    ...     "backend": "openvino", "precision": "fp32", "threads": 2, "device": "cpu"},
    ...     "machine": {"cpu": "AMD EPYC", "cpu_flags": ["avx2", "avx512_vnni"]}})
    '- Encoding: 483 sentences/s, openvino fp32, AMD EPYC (avx512_vnni), 2 threads'
    """
    speed = record.get("speed")
    if not isinstance(speed, Mapping):
        return None
    machine = record.get("machine") or {}
    rate = speed.get("sentences_per_second")
    head = (f"{rate_text(float(rate))} sentences/s" if rate is not None
            else "vectors from the cache (no speed)" if speed.get("status") == "cached"
            else f"no speed ({speed.get('status') or 'not measured'})")
    flags = shown_flags(machine.get("cpu_flags"))
    hardware = str(machine.get("cpu") or "?") + (f" ({', '.join(flags)})" if flags else "")
    if machine.get("gpu"):
        hardware = f"{machine['gpu']} on {hardware}"
    threads = speed.get("threads")
    return (f"- Encoding: {head}, {speed.get('backend') or 'torch'} "
            f"{speed.get('precision') or 'fp32'}, {hardware}"
            + (f", {threads} thread{'s' if threads != 1 else ''}" if threads else ""))


def data_line(record: Mapping[str, Any]) -> str:
    """Where a record's task data came from, as one footer line (``data: local DIR``,
    ``data: hub ID@REV``; "" when it read none); a ``bench-models`` record: its first model's.

    >>> data_line({"data_source": {"kind": "local", "local": ["/d"], "hub": []}})
    'data: local /d'
    """
    from embedkit.data import data_source_line

    source = record.get("data_source")
    if (not source or source.get("kind") == "none") and record.get("models"):
        source = record["models"][0].get("data_source")
    return data_source_line(source)


def _model_lines(record: RunRecord) -> list[str]:
    """The bullet lines that state how one model ran: model, protocol, truncation, fitting."""
    model, s = record["model"], record["settings"]
    out = [
        f"- Model: `{model['name']}` (identity `{model['identity']}`), {model.get('num_layers')} "
        f"layers, hidden {model.get('hidden_size')}; dtype {s['dtype']}, device {s['device']}, "
        f"lowercase {s['lowercase']}",
        f"- Protocol: {s['protocol']}; max length " + ", ".join(
            f"{k} {v}" for k, v in s["max_length"].items()) + f"; batch size {s['batch_size']}",
    ]
    truncated = truncation_note(record, always=True)
    if truncated:
        out.append(f"- Truncation: {truncated}")
    if s.get("post") and not s.get("fit_on"):
        out.append("- Postprocessors: saved maps only (file:), nothing fitted")
    elif s.get("post"):
        fits = {k: v["fit"]["on"] + f" ({v['fit']['n_sentences']} sentences)"
                for k, v in record["data"].items() if "fit" in v}
        out.append(f"- Postprocessors fitted on: {s['fit_on']} "
                   f"({'unique sentences' if s['fit_unique'] else 'every occurrence'}): "
                   + "; ".join(f"{k}: {v}" for k, v in fits.items()))
    return out


def _timing_line(record: RunRecord, prefix: str = "") -> str:
    t = record["timings"]
    return (f"- {prefix}{t['unique_sentences']} unique sentences asked for, {t['cache_hits']} "
            f"from the cache, {t['encoded']} encoded in {t['seconds_encoding']:.1f} s "
            f"({t['sentences_per_second']:.1f} sentences/s); total {t['seconds_total']:.1f} s")


def markdown_report(record: BenchRecord, title: str | None = None) -> str:
    """A complete Markdown report of a bench record (or of a ``bench-models`` record: one
    block of rows per model in each table, each model's settings and timings)."""
    blocks = _blocks(record)
    several = len(blocks) > 1 or record.get("kind") == "bench-models"
    names = ", ".join(run_title(b) for b in blocks)
    out = [f"# {title or 'embedkit bench: ' + names}", ""]
    out += provenance_lines(record)
    for block in blocks:
        out += _model_lines(block)
        out += [line for line in (speed_line(block),) if line]
    if any(b["settings"].get("tasks") or not b.get("mteb") for b in blocks):  # STS tasks ran
        out += ["", "## Spearman x 100 (cosine similarity)", "", _markdown_scores(record), "",
                "## Pearson x 100", "", _markdown_scores(record, "pearson"), ""]
    out += _classification_section(blocks)
    for block in (b for b in blocks if b.get("mteb")):
        header, rows = mteb_rows(block)
        out += ["", f"## mteb tasks: main score x 100 ({block['model']['name']})", "",
                text_table(header, rows, markdown=True), ""]
    out += [
            "## Data", "", "| task | split | pairs | skipped | sha256 | source |",
            "|---|---|---:|---:|---|---|"]
    for task, splits in blocks[0]["data"].items():  # the same tasks and splits for every model
        for split, d in splits.items():
            if split in ("fit", "selection"):
                continue
            out.append(f"| {task} | {split} | {d['n_pairs']} | {d['skipped']} | "
                       f"`{d['sha256'][:16]}` | {d['source'].split('/')[-1]} |")
    out += ["", "## Timings", ""]
    out += [_timing_line(b, f"{b['model']['name']}: " if several else "") for b in blocks]
    return "\n".join([*out, ""])


def _classification_section(blocks: list[BenchRecord]) -> list[str]:
    """The pair-classification table of each block that has one."""
    out = []
    for b in blocks:
        header, rows = classification_rows(b)
        if rows:
            out += [f"## Pair classification x 100 ({b['model']['name']}, cosine; thresholds "
                    "chosen on the selection split, reported on the evaluated one)", "",
                    text_table(header, rows, markdown=True), ""]
    return out


def _markdown_scores(record: BenchRecord, metric: str = "spearman") -> str:
    """A Markdown table without the truncation footer (the report states it above)."""
    blocks = [cast(BenchRecord, {k: v for k, v in b.items() if k != "truncated"})
              for b in _blocks(record)]
    if record.get("kind") == "bench-models":
        return format_table(cast(BenchRecord, {**record, "models": blocks}), metric,
                            markdown=True)
    return format_table(blocks[0], metric, markdown=True)


def histogram_plots(record: BenchRecord, pred_dir: StrPath,
                    out_dir: StrPath) -> list[Path]:
    """One PNG per binary task/split of a bench record (``OUT/<task>_<split>.png``): the
    cosine histograms by label of every row, read from the predictions files under
    ``pred_dir``, with each row's calibrated threshold (bench's classify option)."""
    import numpy as np

    from embedkit.diagnostics.plots import plot_cosine_histograms
    from embedkit.runs.predictions import read_predictions, row_folder
    from embedkit.runs.significance import SUFFIXES

    out: list[Path] = []
    results = record["results"]
    first = next(iter(results.values()))
    for task, splits in first.items():
        if not isinstance(splits, dict) or task == "avg":
            continue
        for split in (s for s, v in splits.items() if isinstance(v, dict) and "spearman" in v):
            panels = {}
            for label, res in results.items():
                base = Path(pred_dir) / row_folder(label) / task
                f = next((base / f"{split}{x}" for x in SUFFIXES
                          if (base / f"{split}{x}").is_file()), None)
                if f is None:
                    continue
                cols = read_predictions(f)
                c = ((res[task][split].get("classification") or {}).get("cosine") or {})
                panels[label] = (cols["cosine"], cols["label"], c.get("accuracy_threshold"))
            if panels and set(np.unique(next(iter(panels.values()))[1])) <= {0, 1}:
                path = Path(out_dir) / f"{task}_{split}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                out.append(plot_cosine_histograms(path, f"{task}/{split}: cosine by label",
                                                  panels))
    return out
