"""Tables, plots, measured conclusions and the Markdown report of a diagnose record
(:func:`~embedkit.runs.diagnose.run_diagnose`). The conclusions are English sentences
computed here from the record's numbers; the record keeps only the numbers."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedkit.diagnostics import COLUMNS, jl_at
from embedkit.diagnostics.plots import plot_jl, plot_occurrence, plot_spectra, require_matplotlib
from embedkit.io.tables import text_table
from embedkit.reports._format import fmt, slug, x100
from embedkit.reports.bench import provenance_lines, run_title
from embedkit.runs.diagnose import RETRIEVAL_K, mean_present, row_recall

__all__ = ["conclusions", "format_diagnose_table", "format_summary_table",
           "format_retrieval_table", "format_jl_table", "format_stop_table",
           "write_diagnose_plots", "diagnose_markdown"]


def _pairs_with_raw(rows: list[dict[str, Any]], post: str
                    ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    raw = {(r["task"], r["pooling"]): r for r in rows if r["post"] is None}
    return [(raw[(r["task"], r["pooling"])], r) for r in rows
            if r["post"] == post and (r["task"], r["pooling"]) in raw]


def _count(pairs: list[tuple[dict, dict]], key: str, better: str) -> tuple[float, float, int]:
    """Mean of ``key`` raw and after, and in how many pairs it is lower (``better="lower"``,
    in absolute value) or higher."""
    a = [p[0]["columns"][key] for p in pairs]
    b = [p[1]["columns"][key] for p in pairs]
    ok = [x is not None and y is not None for x, y in zip(a, b, strict=True)]
    if better == "lower":
        wins = sum(abs(y) < abs(x) for x, y, o in zip(a, b, ok, strict=True) if o)
    else:
        wins = sum(y > x for x, y, o in zip(a, b, ok, strict=True) if o)
    return mean_present(a) or 0.0, mean_present(b) or 0.0, int(wins)


def _geometry_conclusions(rows: list[dict[str, Any]], k: int) -> list[str]:
    out = []
    posts = list(dict.fromkeys(r["post"] for r in rows if r["post"] is not None))
    answers = []
    for post in posts:
        pairs = _pairs_with_raw(rows, post)
        n = len(pairs)
        if not n:
            continue
        cos = _count(pairs, "mean_cosine", "lower")
        skew = _count(pairs, "nk_skewness", "lower")
        rh = _count(pairs, "robinhood", "lower")
        iso = _count(pairs, "isoscore", "higher")
        text = (f"`{post}` vs raw ({n} task x pooling cases, means): mean cosine "
                f"{cos[0]:.3f} -> {cos[1]:.3f} (closer to 0 in {cos[2]}/{n}); N_{k} skewness "
                f"{skew[0]:.2f} -> {skew[1]:.2f} (lower in {skew[2]}/{n}); Robin Hood "
                f"{rh[0]:.3f} -> {rh[1]:.3f} (lower in {rh[2]}/{n}); IsoScore {iso[0]:.3f} -> "
                f"{iso[1]:.3f}")
        sp = [(a["spearman_avg"], b["spearman_avg"]) for a, b in pairs
              if a["spearman_avg"] is not None and b["spearman_avg"] is not None]
        if sp:
            text += (f"; Spearman x 100 {100 * float(np.mean([x for x, _ in sp])):.2f} -> "
                     f"{100 * float(np.mean([y for _, y in sp])):.2f} (higher in "
                     f"{sum(y > x for x, y in sp)}/{len(sp)})")
        out.append(text + ".")
        if post.startswith("whiten"):
            answers.append(f"`{post}` lowers anisotropy (|mean cosine|) in {cos[2]}/{n} task x "
                           f"pooling cases and hubness (N_{k} skewness) in {skew[2]}/{n}")
    if answers:
        out.insert(0, "Does whitening reduce anisotropy and hubness here? " + "; ".join(answers)
                   + ".")
    return out


def _rank_correlations(rows: list[dict[str, Any]]) -> list[str]:
    """Per task, the rank correlation over its rows between a diagnostic and Spearman."""
    from scipy.stats import spearmanr

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    found: dict[str, list[float]] = {}
    for task in tasks:
        rs = [r for r in rows if r["task"] == task and r["spearman_avg"] is not None]
        if len(rs) < 4:
            continue
        score = [r["spearman_avg"] for r in rs]
        for key in ("mean_cosine", "nk_skewness", "isoscore"):
            vals = [abs(r["columns"][key]) if key == "mean_cosine" else r["columns"][key]
                    for r in rs]
            if None in vals or len(set(vals)) < 2 or len(set(score)) < 2:
                continue
            found.setdefault(key, []).append(float(spearmanr(vals, score)[0]))
    if not found:
        return []
    names = {"mean_cosine": "|mean cosine|", "nk_skewness": "N_k skewness",
             "isoscore": "IsoScore"}
    parts = [f"{names[k]} rho = {np.mean(v):+.2f} (tasks {min(v):+.2f} .. {max(v):+.2f})"
             for k, v in found.items()]
    return ["Does the geometry go with the score? Rank correlation, over the rows of each task, "
            "between a diagnostic and that row's Spearman (mean over tasks): "
            + "; ".join(parts) + "."]


def _csls_conclusions(rows: list[dict[str, Any]]) -> list[str]:
    cases = [(r, s, v) for r in rows for s, v in (r["retrieval"] or {}).items()]
    if not cases:
        return []
    key = f"recall@{RETRIEVAL_K}"
    delta = [v["csls"][key] - v["raw"][key] for _, _, v in cases]
    skew = [(v["raw"]["result_skewness"], v["csls"]["result_skewness"]) for _, _, v in cases]
    top = [(v["raw"]["result_top_share"], v["csls"]["result_top_share"]) for _, _, v in cases]
    first = cases[0][2]["csls"]
    best_raw = max(cases, key=lambda c: c[2]["raw"][key])
    best_csls = max(cases, key=lambda c: c[2]["csls"][key])
    tasks = ", ".join(dict.fromkeys(f"{r['task']}/{s}" for r, s, _ in cases))
    return [
        f"CSLS re-ranking ({tasks}; penalty over {first['k_penalty']} corpus neighbours, top "
        f"{first['candidates']} re-ranked): recall@{RETRIEVAL_K} x 100 changes by "
        f"{100 * np.mean(delta):+.2f} on average over {len(cases)} rows (range "
        f"{100 * min(delta):+.2f} .. {100 * max(delta):+.2f}; higher in "
        f"{sum(d > 0 for d in delta)}, lower in {sum(d < 0 for d in delta)}); the hubness of the "
        f"result lists (skewness of N_{RETRIEVAL_K} over the queries' top {RETRIEVAL_K}) goes "
        f"from {np.mean([a for a, _ in skew]):.2f} to {np.mean([b for _, b in skew]):.2f}, the "
        f"top-1% share from {np.mean([a for a, _ in top]):.3f} to "
        f"{np.mean([b for _, b in top]):.3f}. Best row: `{best_raw[0]['row']}` "
        f"{100 * best_raw[2]['raw'][key]:.2f} plain, `{best_csls[0]['row']}` "
        f"{100 * best_csls[2]['csls'][key]:.2f} with CSLS."]


def _jl_conclusions(sweep: dict[str, Any]) -> list[str]:
    es = [e for e in sweep["entries"] if e["pca"] or e["classic"]]
    if not es:
        return []
    prac = [e["practical_min_dim"] for e in es]
    ns = [e["n_vectors"] for e in es]
    dist = [e["distortion_p99_at_practical"] for e in es
            if e["distortion_p99_at_practical"] is not None]
    text = (f"JL estimate vs the sweep: 8.33 ln N = {min(prac)} .. {max(prac)} dimensions for "
            f"N = {min(ns)} .. {max(ns)} vectors per task (the JL bound at eps = 0.5 is "
            f"{min(b['min_dim'] for e in es for b in e['jl_min_dim'] if b['eps'] == 0.5)} .. "
            f"{max(b['min_dim'] for e in es for b in e['jl_min_dim'] if b['eps'] == 0.5)}); "
            "a Gaussian random projection to 8.33 ln N dimensions distorts the squared distance "
            f"of 1% of pairs by more than {100 * min(dist):.0f} .. {100 * max(dist):.0f}%.")
    for name, what in (("pca", "beta = gamma = 0 (PCA truncation)"),
                       ("classic", "beta = gamma = 1 (classic whitening)")):
        stops = [(e[name]["stop_dim"], e["practical_min_dim"], e["d"]) for e in es if e[name]]
        if not stops:
            continue
        grid = sorted({int(k) for e in es if e[name] for k in e[name]["spearman"]})
        counts = ", ".join(f"k = {g}{' (all)' if g == max(grid) else ''}: "
                           f"{sum(s == g for s, _, _ in stops)}" for g in grid)
        at_or_below = sum(s <= min([g for g in grid if g >= p] or [max(grid)])
                          for s, p, _ in stops)
        text += (f" Sweep, {what}: Spearman stays within {100 * sweep['tolerance']:.0f} point "
                 f"of its value at all dimensions down to {counts} (of {len(stops)} task x "
                 f"pooling cases); at or below the first grid k >= 8.33 ln N in "
                 f"{at_or_below}/{len(stops)}.")
    return [text]


def conclusions(record: dict[str, Any]) -> list[str]:
    """Short measured answers, each a sentence with its numbers, from a diagnose record."""
    rows = record["rows"]
    out = _geometry_conclusions(rows, record["settings"]["k"])
    out += _rank_correlations(rows)
    out += _csls_conclusions(rows)
    if record.get("sweep"):
        out += _jl_conclusions(record["sweep"])
    return out


def _has_retrieval(rows: list[dict[str, Any]]) -> bool:
    return any(r.get("retrieval") for r in rows)


def format_diagnose_table(record: dict[str, Any], markdown: bool = False,
                          task: str | None = None) -> str:
    """One line per row (of ``task``, or of every task) and a column per diagnostic, then
    Spearman x 100 (mean over the splits) and, when measured, recall@10 x 100 plain and CSLS."""
    rows = [r for r in record["rows"] if task is None or r["task"] == task]
    retrieval = _has_retrieval(rows)
    header = ([] if task else ["task"]) + ["row"] + [h for _, h, _ in COLUMNS] + ["Spearman"]
    header += [f"R@{RETRIEVAL_K}", f"R@{RETRIEVAL_K} CSLS"] if retrieval else []
    body = []
    for r in rows:
        line = ([] if task else [r["task"]]) + [r["row"]]
        line += [fmt(r["columns"][key], d) for key, _, d in COLUMNS]
        line.append(x100(r["spearman_avg"]))
        if retrieval:
            line += [x100(row_recall(r, "raw")), x100(row_recall(r, "csls"))]
        body.append(line)
    return text_table(header, body, markdown=markdown, left=1 if task else 2, right_align=True)


def format_summary_table(record: dict[str, Any], markdown: bool = False) -> str:
    """The summary: per row label, every column's mean over the tasks."""
    summary = record["summary"]
    retrieval = any(s["recall"] is not None for s in summary)
    header = ["row"] + [h for _, h, _ in COLUMNS] + ["Spearman avg"]
    header += [f"R@{RETRIEVAL_K}", f"R@{RETRIEVAL_K} CSLS"] if retrieval else []
    body = []
    for s in summary:
        line = [s["row"]] + [fmt(s["columns"][key], d) for key, _, d in COLUMNS]
        line.append(x100(s["spearman_avg"]))
        if retrieval:
            line += [x100(s["recall"]), x100(s["recall_csls"])]
        body.append(line)
    return text_table(header, body, markdown=markdown, right_align=True)


def format_retrieval_table(record: dict[str, Any], markdown: bool = False) -> str:
    """Plain cosine vs CSLS per task/split and row: recall@1/10, MRR@10 (x 100), and the
    skewness and top-1% share of N_10 over the result lists."""
    k = RETRIEVAL_K
    header = ["task/split", "row", "R@1", f"R@{k}", f"MRR@{k}", "R@1 CSLS", f"R@{k} CSLS",
              f"MRR@{k} CSLS", f"delta R@{k}", "result skew", "skew CSLS", "top-1%",
              "top-1% CSLS"]
    body = []
    for r in record["rows"]:
        for split, v in (r["retrieval"] or {}).items():
            a, b = v["raw"], v["csls"]
            body.append([f"{r['task']}/{split}", r["row"], x100(a["recall@1"]),
                         x100(a[f"recall@{k}"]), x100(a[f"mrr@{k}"]), x100(b["recall@1"]),
                         x100(b[f"recall@{k}"]), x100(b[f"mrr@{k}"]),
                         f"{100 * (b[f'recall@{k}'] - a[f'recall@{k}']):+.2f}",
                         fmt(a["result_skewness"], 2), fmt(b["result_skewness"], 2),
                         fmt(a["result_top_share"], 3), fmt(b["result_top_share"], 3)])
    return text_table(header, body, markdown=markdown, left=2, right_align=True)


def format_jl_table(record: dict[str, Any], markdown: bool = False) -> str:
    """Per task and raw pooling: the 99th percentile of the squared-distance distortion of a
    Gaussian random projection at each dimension, at 8.33 ln N, and the JL bounds."""
    dims = list(record["settings"]["jl_dims"])
    raw = [r for r in record["rows"] if r["post"] is None]
    eps = [b["eps"] for b in raw[0]["diagnostics"]["jl"]["jl_min_dim"]] if raw else []
    header = (["task", "pooling", "N", "d"] + [f"p99 @{m}" for m in dims]
              + ["8.33 ln N", "p99 there"] + [f"JL eps={e:g}" for e in eps])
    body = []
    for r in raw:
        jl = r["diagnostics"]["jl"]
        body.append([r["task"], r["pooling"], str(jl["n_vectors"]), str(jl["dim"])]
                    + [fmt(jl_at(r["diagnostics"], m), 3) for m in dims]
                    + [str(jl["practical_min_dim"]),
                       fmt(jl_at(r["diagnostics"], jl["practical_min_dim"]), 3)]
                    + [str(b["min_dim"]) for b in jl["jl_min_dim"]])
    return text_table(header, body, markdown=markdown, left=2, right_align=True)


def format_stop_table(record: dict[str, Any], markdown: bool = False) -> str:
    """The sweep's Spearman against k next to 8.33 ln N, per task and pooling."""
    sweep = record["sweep"]
    header = ["task", "pooling", "N", "8.33 ln N", "p99 there", "PCA (b=g=0): k -> Spearman",
              "stops falling", "classic (b=g=1): k -> Spearman", "stops falling"]

    def curve(c: dict[str, Any] | None) -> list[str]:
        if not c:
            return ["-", "-"]
        return [" / ".join(f"{k}: {100 * v:.2f}" for k, v in c["spearman"].items()),
                str(c["stop_dim"])]

    body = [[e["task"], e["pooling"], str(e["n_vectors"]), str(e["practical_min_dim"]),
             fmt(e["distortion_p99_at_practical"], 3), *curve(e["pca"]),
             *curve(e["classic"])] for e in sweep["entries"]]
    return text_table(header, body, markdown=markdown, left=2, right_align=True)


def write_diagnose_plots(record: dict[str, Any], folder: str | os.PathLike) -> list[Path]:
    """Per task and pooling: the eigenvalue spectrum and the N_k histogram of every row of that
    pooling; per task: JL distortion against the dimension for the raw rows, with the bounds.
    Needs matplotlib (the ``plot`` extra)."""
    require_matplotlib()
    folder = Path(folder)
    model = record["model"]["name"] if record.get("model") else ""
    k = record["settings"]["k"]
    written = []
    tasks = list(dict.fromkeys(r["task"] for r in record["rows"]))
    for task in tasks:
        rows = [r for r in record["rows"] if r["task"] == task]
        for pooling in dict.fromkeys(r["pooling"] for r in rows):
            profs = {r["post"] or "raw": r["diagnostics"] for r in rows
                     if r["pooling"] == pooling}
            name = f"{slug(task)}-{slug(pooling)}.png"
            written.append(plot_spectra(folder / f"spectrum-{name}",
                                        f"{task}, {pooling}: covariance spectrum ({model})",
                                        profs))
            written.append(plot_occurrence(folder / f"hubness-{name}",
                                           f"{task}, {pooling}: N_{k} histogram ({model})", profs))
        raw = {r["pooling"]: r["diagnostics"] for r in rows if r["post"] is None}
        written.append(plot_jl(folder / f"jl-{slug(task)}.png",
                               f"{task}: JL distortion of a Gaussian random projection "
                               f"({model})", raw))
    return written


def _setup_lines(record: dict[str, Any]) -> list[str]:
    s, m, t = record["settings"], record["model"], record["timings"]
    sample = (f"a seeded sample of {s['sample']} vectors per row (seed {s['seed']}; all vectors "
              "when fewer)" if s["sample"] else "all vectors")
    occurrences = "unique sentences" if s["fit_unique"] else "every occurrence"
    fit = f"fitted on {s['fit_on']} ({occurrences})" if s["fit_on"] else "nothing fitted"
    lines = [
        f"- Model: `{m['name']}` (identity `{m['identity']}`), hidden {m.get('hidden_size')}; "
        f"dtype {s['dtype']}, device {s['device']}",
        f"- Rows: poolings {', '.join(s['poolings'])} x (raw, "
        + ", ".join(f"`{p}`" for p in s["post"]) + f"); postprocessors {fit}",
        "- Max length: " + ", ".join(f"{k} {v}" for k, v in s["max_length"].items()),
        f"- Diagnostics on {sample}: anisotropy from {s['n_pairs']} random pairs; hubness at "
        f"k = {s['k']} by exact cosine search (FAISS); JL distortion of a Gaussian random "
        f"projection over {s['n_pairs']} random pairs of all vectors, at "
        f"{', '.join(map(str, s['jl_dims']))} and 8.33 ln N dimensions",
    ]
    if s.get("retrieval_tasks"):
        lines.append(f"- Retrieval: {', '.join(s['retrieval_tasks'])} (positives as relevant "
                     f"documents, as `index eval` builds them; exact search), recall@"
                     f"{s['retrieval_k']} plain and with CSLS (penalty over {s['csls_k']} "
                     f"corpus neighbours, top {s['csls_candidates']} re-ranked)")
    lines.append(f"- Timings: diagnostics {t.get('seconds_diagnostics', 0):.1f} s, retrieval "
                 f"{t.get('seconds_retrieval', 0):.1f} s; {t.get('encoded', 0)} sentences "
                 f"encoded, {t.get('cache_hits', 0)} from the cache; total "
                 f"{t.get('seconds_total', 0):.1f} s")
    return lines


def _column_notes(k: int) -> list[str]:
    return [
        "## Columns", "",
        "- mean cos: mean cosine of random pairs of distinct vectors (Ethayarajh 2019); "
        "norm(mu)/norm(x): norm of the mean vector over the mean norm.",
        "- eff. rank: exp of the entropy of the normalised singular values (Roy & Vetterli "
        "2007); IsoScore (Rudman et al. 2022): 1 isotropic, 0 one direction; d90/95/99%: "
        "principal components holding that share of the variance.",
        f"- N_k skew: skewness of the k-occurrence N_{k} (Radovanovic et al. 2010); Robin Hood "
        "index (Feldbauer et al. 2018); antihubs: share with N_k = 0; top-1% share: share of "
        "all k-NN slots taken by the 1% most frequent points.",
        "- l1/l2: ||x||_1 / (sqrt(d) ||x||_2), Hoyer: sparseness in [0, 1] (1 one-hot); means "
        "over the vectors.",
        "- Spearman: x 100, cosine similarity, mean over the scored splits (the STS evaluator); "
        f"R@{RETRIEVAL_K}: recall x 100, plain cosine and CSLS re-ranked (Conneau et al. 2018).",
        "",
    ]


def _plot_lines(record: dict[str, Any], plots: Sequence[Path],
                markdown_path: str | os.PathLike | None) -> list[str]:
    if not plots:
        return []
    base = Path(markdown_path).parent if markdown_path else None

    def rel(p: Path) -> str:
        return os.path.relpath(p, base) if base is not None else str(p)

    out = ["## Plots", "",
           "Per task: JL distortion against the dimension (raw poolings, with 8.33 ln N and the "
           "JL bounds); per task and pooling: the eigenvalue spectrum and the N_k histogram of "
           "each row.", ""]
    for task in dict.fromkeys(r["task"] for r in record["rows"]):
        mine = [p for p in plots if p.name.endswith(".png")
                and (p.name == f"jl-{slug(task)}.png" or f"-{slug(task)}-" in p.name)]
        out.append(f"- {task}: " + ", ".join(f"[{p.stem}]({rel(p)})" for p in mine))
    jl = [p for p in plots if p.name.startswith("jl-")]
    if jl:
        out += ["", f"![{jl[0].stem}]({rel(jl[0])})"]
    return out + [""]


def diagnose_markdown(record: dict[str, Any], plots: Sequence[Path] | None = None,
                      markdown_path: str | os.PathLike | None = None) -> str:
    """The report: how to regenerate it, machine, versions, setup, the measured answers, the
    summary and per-task tables, retrieval, JL and the sweep comparison, plots, data."""
    s = record["settings"]
    out = [f"# embedkit diagnose: {run_title(record)}", ""]
    out += provenance_lines(record) + _setup_lines(record)
    out += ["", "## Measured answers", ""] + [f"- {c}" for c in conclusions(record)]
    if len(s["tasks"]) > 1:
        out += ["", "## Summary: mean over the tasks", "", format_summary_table(record, True)]
    for task in s["tasks"]:
        d = record["data"].get(task, {})
        n = d.get("n_sentences", d.get("n_unique", "?"))
        out += ["", f"## {task} ({n} distinct sentences)", "",
                format_diagnose_table(record, markdown=True, task=task)]
    if _has_retrieval(record["rows"]):
        out += ["", f"## Retrieval: plain cosine vs CSLS (x 100, k = {RETRIEVAL_K})", "",
                format_retrieval_table(record, True)]
    out += ["", "## Johnson-Lindenstrauss: measured distortion and the estimates", "",
            "99th percentile of |d'^2/d^2 - 1| over random pairs under a Gaussian random "
            "projection (raw vectors); 8.33 ln N: the practical estimate; JL eps: "
            "sklearn's johnson_lindenstrauss_min_dim(N, eps).", "", format_jl_table(record, True)]
    if record.get("sweep"):
        sw = record["sweep"]
        out += ["", "## JL estimate vs the whitening sweep", "",
                f"Spearman x 100 on {sw['report_on']} from `{sw['file']}`; 'stops falling': the "
                f"smallest k from which Spearman stays within {100 * sw['tolerance']:.0f} point "
                "of its value at all dimensions.", "", format_stop_table(record, True)]
    out += [""] + _plot_lines(record, plots or [], markdown_path) + _column_notes(s["k"])
    out += _data_lines(record)
    return "\n".join(out) + "\n"


def _data_lines(record: dict[str, Any]) -> list[str]:
    out = ["## Data", "", "| task | split | pairs | skipped | sha256 |", "|---|---|---:|---:|---|"]
    for task, splits in record["data"].items():
        if "sha256" in splits:  # a corpus file
            out.append(f"| {task} | - | {splits.get('n_texts', '-')} texts | - | "
                       f"`{splits['sha256'][:16]}` |")
            continue
        for split, d in splits.items():
            if isinstance(d, dict) and "n_pairs" in d:
                out.append(f"| {task} | {split} | {d['n_pairs']} | {d['skipped']} | "
                           f"`{d['sha256'][:16]}` |")
    return out + [""]
