"""The tables and the Markdown report of ``embedkit index eval`` (records of
:func:`embedkit.runs.index_eval.run_index_eval`)."""

from __future__ import annotations

from typing import Any

from embedkit.io.tables import text_table
from embedkit.reports._format import num
from embedkit.reports.bench import provenance_lines, run_title, speed_line
from embedkit.runs.record import IndexEvalRecord

__all__ = ["format_cost_table", "format_quality_table", "markdown_eval_report"]


def _quality_table(rows: list[dict[str, Any]], k: int = 10) -> tuple[list[str], list[list[str]]]:
    cuts = [c for c in (1, 5, 10) if c < k] + [k]
    keys = [f"recall@{c}" for c in cuts] + [f"mrr@{k}", f"ndcg@{k}"]
    if any(f"map@{k}" in r for r in rows):  # retrieval tasks read from files (graded)
        keys.append(f"map@{k}")
    header = ["task/split", "row"] + [key.replace("recall", "R") for key in keys] + [
        "queries", "corpus"]
    body = []
    for r in rows:
        body.append([f"{r['task']}/{r['split']}", r["row"]]
                    + [f"{100 * r[key]:.2f}" if key in r else "-" for key in keys]
                    + [str(r["n_queries"]), str(r["n_corpus"])])
    return header, body


def format_quality_table(rows: list[dict[str, Any]], k: int = 10, markdown: bool = False) -> str:
    """Recall / MRR / nDCG x 100, one line per task/split and row (raw, then each post)."""
    header, body = _quality_table(rows, k)
    return text_table(header, body, markdown=markdown, left=2, right_align=True)


def _cost_table(cost: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The cost rows; a ``bytes/vector`` column where the record has it (records written before
    quantised indexes have not, and render as they did)."""
    k = cost["target"]["k"]
    per_vector = any("bytes_per_vector" in r for r in cost["rows"])
    header = ["factory", "param", f"recall@{k}", "QPS batch", "QPS single", "speedup",
              "build s", "size MB", *(["bytes/vector"] if per_vector else []), "target"]
    body = []
    for i, r in enumerate(cost["rows"]):
        body.append([r["factory"], r["param"] or "-", f"{r[f'recall@{k}']:.4f}",
                     num(r["qps_batch"], 0), num(r["qps_single"], 0),
                     f"{r['speedup']:.1f}x" if r["speedup"] is not None else "-",
                     f"{r['build_seconds']:.2f}", f"{r['disk_bytes'] / 2**20:.1f}",
                     *([num(r.get("bytes_per_vector"), 1)] if per_vector else []),
                     "exact" if i == 0 else ("yes" if r["meets_target"] else "no")])
    return header, body


def _best_line(cost: dict[str, Any]) -> str:
    """One sentence: the fastest approximate index meeting the target, or that none does."""
    k = cost["target"]["k"]
    what = (f"recall@{k} >= {cost['target']['recall']} of Flat at >= "
            f"{cost['target']['speedup']:g}x Flat's batch QPS")
    b = cost["best"]
    if b is None:
        return f"No approximate index meets {what}."
    param = f" ({b['param']})" if b["param"] else ""
    return (f"Best approximate index meeting {what}: {b['factory']}{param}, recall@{k} "
            f"{b[f'recall@{k}']:.4f}, {b['speedup']:.1f}x Flat ({b['qps_batch']:,.0f} QPS).")


def format_cost_table(cost: dict[str, Any], markdown: bool = False) -> str:
    """One line per factory and search setting; then the best approximate index."""
    header, body = _cost_table(cost)
    table = text_table(header, body, markdown=markdown, left=2, right_align=True)
    return table + "\n\n" + _best_line(cost)


def _quality_section(record: IndexEvalRecord) -> list[str]:
    s = record["settings"]
    data = [(task, split, d) for task, splits in record["data"]["quality"].items()
            for split, d in splits.items()]
    files = [d.get("kind") == "retrieval" for _, _, d in data]
    about = []
    if any(files):  # a retrieval task read from files: its own queries, corpus and qrels
        about.append("Retrieval tasks from files: the task's queries, corpus and relevance "
                     "judgements (graded gains in nDCG; ties broken by id, as trec_eval); "
                     "'pairs' counts the judgements.")
    if not all(files):
        about.append(f"STS pairs as retrieval: positives have label >= the task's threshold; "
                     f"corpus = all unique sentences of the split; both directions: "
                     f"{s['both_directions']}.")
    out = ["", f"## Retrieval quality (x 100, exact search, k = {s['k']})", "",
           " ".join(about) + f" Postprocessors fitted on: {s['fit_on'] or '-'}.", "",
           format_quality_table(record["quality"], s["k"], markdown=True), "",
           "| task | split | pairs | threshold | queries | corpus | sha256 |",
           "|---|---|---:|---:|---:|---:|---|"]
    for task, split, d in data:
        threshold = "-" if d.get("kind") == "retrieval" else f"{d['threshold']:g}"
        out.append(f"| {task} | {split} | {d['n_pairs']} | {threshold} | "
                   f"{d['n_queries']} | {d['n_corpus']} | `{d['sha256'][:16]}` |")
    return out


def _cost_section(record: IndexEvalRecord) -> list[str]:
    s, c = record["settings"], record["cost"]
    return ["", "## Cost of approximate search", "",
            f"Corpus: {c['n_corpus']} unique sentences of {s['cost_corpus_tasks']}; "
            f"{c['n_queries']} of them (seed {s['seed']}) as queries; post: "
            f"{c['post'] or 'none'}; FAISS threads: {s['faiss_threads']}. recall@"
            f"{c['target']['k']} is the overlap with exact (Flat) search.", "",
            format_cost_table(c, markdown=True)]


def markdown_eval_report(record: IndexEvalRecord) -> str:
    """The Markdown report: provenance (regenerate command, machine, versions), then tables."""
    model = record["model"]
    s = record["settings"]
    out = [f"# embedkit index eval: {run_title(record)}", ""]
    out += provenance_lines(record)
    out += [f"- Model: `{model['name']}` (identity `{model['identity']}`), pooling "
            f"{s['pooling']}, metric {s['metric']}, dtype {s['dtype']}, device {s['device']}"]
    out += [line for line in (speed_line(record),) if line]
    if record.get("quality"):
        out += _quality_section(record)
    if record.get("cost"):
        out += _cost_section(record)
    t = record.get("timings") or {}
    if t:
        out += ["", "## Timings", "",
                f"- {t.get('unique_sentences', 0)} unique sentences asked for, "
                f"{t.get('cache_hits', 0)} from the cache, {t.get('encoded', 0)} encoded in "
                f"{t.get('seconds_encoding', 0):.1f} s; total {t.get('seconds_total', 0):.1f} s"]
    return "\n".join(out) + "\n"
