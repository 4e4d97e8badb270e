"""The compare report (``make eval-compare`` -> ``eval/compare.md``, ``.html``, ``.json`` and,
with a headless browser, ``.png``): the records of ``eval/`` side by side, with one model scored
twice under C-MTEB's protocol, by embedkit's bench and by mteb's own evaluator on the same local
files, and how far the two agree per task.

:func:`run_compare_report`:

1. runs :func:`~embedkit.runs.bench.run_bench` on the model with the ``cmteb`` protocol
   (the tasks' test splits, AFQMC dev; the model's own max length) and writes the record as mteb
   result files (:func:`~embedkit.integrations.mteb_results.write_mteb_results`) to
   ``<work>/embedkit-bench/``;
2. hands the same encoder and pooling to ``mteb_evaluate`` (normally
   :func:`embedkit.integrations.mteb.evaluate_encoder`, i.e. ``mteb.evaluate`` through
   :func:`~embedkit.integrations.mteb.evaluate_local`, offline on the same local data) with
   ``<work>/mteb-evaluate/`` as mteb's cache folder (results in its ``results/``);
3. compares (:func:`~embedkit.runs.compare.compare`) the records that exist (a missing
   one is left out, with a log line) and both folders, and writes the Markdown page (command,
   machine, versions first; the two evaluators' per-task difference; then the comparison) and
   the HTML page;
4. asks ``screenshot(html, png)`` (when given) for a picture of the HTML page and, when it
   made one, shows it in the Markdown.

Each work folder is replaced as a whole (:func:`~embedkit.io.atomic.atomic_dir`), so no
result of an earlier run is compared by mistake; the embedding cache makes the second pass
(mteb's) encode nothing. The mteb step and the screenshot are passed in: ``integrations``
already imports ``experiments`` (for the result files' layout), so ``experiments`` does not
import it back, and starting a browser (:func:`chromium_screenshot`) is the script's business.

>>> agreement_text([{"task": "ATEC", "embedkit_bench": 0.3, "mteb_evaluate": 0.3000004,
...                  "difference": 0.00004, "same_data": True}]).split(" (")[0]
'On the 1 task the two evaluators differ by at most 0.0000 points of Spearman x 100'
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from _common import add_report_files, add_run_options, make_parser, recorded, run

from embedkit.data.registry import DEFAULT_TASKS, get_task
from embedkit.io.atomic import atomic_dir, atomic_write_json, atomic_write_text
from embedkit.io.tables import escape_html, text_table
from embedkit.reports.bench import provenance_lines
from embedkit.runs.record import data_dir_setting, run_record, timings

if TYPE_CHECKING:  # the library is imported where the work is
    from embedkit.data.spec import TaskSpec
    from embedkit.encoders import EncoderConfig, SentenceEncoder
    from embedkit.runs.compare import Comparison

logger = logging.getLogger("embedkit.benchmarks.report_compare")  # shown as embedkit's own log lines

#: the records of eval/ the report compares by default (the ones that exist)
DEFAULT_RECORDS = ("eval/m3e-small.json", "eval/whitening-m3e-small.json",
                   "eval/simcse-m3e-small.json")
BENCH_FOLDER = "embedkit-bench"
MTEB_FOLDER = "mteb-evaluate"


class MtebEvaluate(Protocol):
    """Scores ``encoder`` (``pooling``, the model's max length) with mteb's evaluator on the
    tasks' local data, results under ``cache_path/results``
    (:func:`embedkit.integrations.mteb.evaluate_encoder` is one)."""

    def __call__(self, encoder: SentenceEncoder, tasks: Sequence[str | TaskSpec], *,
                 pooling: str | None = ..., data_dir: str | os.PathLike | None = ...,
                 cache_path: str | os.PathLike | None = ...) -> Any: ...


#: ``screenshot(html, png) -> whether png was written``
Screenshot = Callable[[Path, Path], bool]


@dataclass(frozen=True)
class CompareReportOptions:
    """What the report scores and compares (defaults: ``make eval-compare``). ``pooling``: the
    model's own when None; ``work_dir``: default ``compare-mteb`` beside the Markdown file."""

    model: str = "m3e-small"
    data_dir: str | None = None
    records: tuple[str, ...] = DEFAULT_RECORDS
    tasks: tuple[str, ...] = tuple(DEFAULT_TASKS)
    pooling: str | None = None
    work_dir: str | None = None
    title: str | None = None
    batch_size: int = 64


def _score_twice(opts: CompareReportOptions, enc: SentenceEncoder, specs: list[TaskSpec],
                 work: Path, mteb_evaluate: MtebEvaluate, command: str | None
                 ) -> dict[str, Any]:
    """Steps 1 and 2: the cmteb bench record, as mteb files, and mteb's own run."""
    from embedkit.data import DataOptions
    from embedkit.integrations.mteb_results import write_mteb_results
    from embedkit.runs.bench import run_bench

    pooling = [opts.pooling] if opts.pooling else None
    bench = run_bench(enc, pooling, specs, protocol="cmteb",
                      data=DataOptions(data_dir=opts.data_dir), command=command)
    with atomic_dir(work / BENCH_FOLDER) as tmp:
        written = write_mteb_results(bench, tmp)
    logger.info("embedkit bench (cmteb): %d mteb result files in %s", len(written),
                work / BENCH_FOLDER)
    row = next(iter(bench["results"].values()))
    t0 = time.perf_counter()
    with atomic_dir(work / MTEB_FOLDER) as tmp:
        mteb_evaluate(enc, specs, pooling=row["pooling"], data_dir=opts.data_dir,
                      cache_path=tmp)
    logger.info("mteb evaluate: %d tasks in %.1f s, results in %s", len(specs),
                time.perf_counter() - t0, work / MTEB_FOLDER)
    return bench


def _inputs(records: Sequence[str]) -> tuple[list[str], list[str]]:
    """The records that exist, and the ones left out."""
    found = [r for r in records if Path(r).is_file()]
    missing = [r for r in records if r not in found]
    for r in missing:
        logger.warning("%s: not found; left out of the comparison", r)
    return found, missing


def _under(path: str, folder: Path) -> bool:
    return Path(path).resolve().is_relative_to(folder.resolve())


def bench_vs_mteb(cmp: Comparison, bench_dir: Path, mteb_dir: Path) -> list[dict[str, Any]]:
    """Per task, the bench's score (from ``bench_dir``) and mteb's (from ``mteb_dir``), their
    difference (mteb - embedkit, in Spearman x 100 points) and whether the data is the same."""
    def cells(folder: Path) -> dict[str, Any]:
        return {t: c for e in cmp.entries if _under(e.source, folder) for t, c in e.cells.items()}

    ours, theirs = cells(bench_dir), cells(mteb_dir)
    return [{"task": t, "embedkit_bench": ours[t].score, "mteb_evaluate": theirs[t].score,
             "difference": 100 * (theirs[t].score - ours[t].score),
             "same_data": ours[t].data == theirs[t].data}
            for t in cmp.tasks if t in ours and t in theirs]


def agreement_text(rows: Sequence[dict[str, Any]]) -> str:
    """The paragraph on the two evaluators' difference per task."""
    if not rows:
        return "No task was scored by both evaluators."
    worst = max(abs(r["difference"]) for r in rows)
    per_task = ", ".join(f"{r['task']} {r['difference']:+.4f}" for r in rows)
    other = [r["task"] for r in rows if not r["same_data"]]
    n = len(rows)
    return (f"On the {n} task{'s' if n > 1 else ''} the two evaluators differ by at most "
            f"{worst:.4f} points of Spearman x 100 (mteb - embedkit: {per_task}). Same model, "
            "pooling, max length and pair files; mteb takes cosine in float32, embedkit in "
            "float64 (near-equal cosines may tie in one and not in the other), and the result "
            "files keep 6 decimals."
            + (f" Not on the same data: {', '.join(other)}." if other else ""))


def agreement_table(rows: Sequence[dict[str, Any]]) -> str:
    """Per task: the bench's score, mteb's, and mteb - embedkit (Spearman x 100, Markdown)."""
    return text_table(["task", "embedkit bench (cmteb)", "mteb evaluate", "mteb - embedkit"],
                      [[r["task"], f"{100 * r['embedkit_bench']:.4f}",
                        f"{100 * r['mteb_evaluate']:.4f}", f"{r['difference']:+.4f}"]
                       for r in rows], markdown=True, left=1)


def _header(record: dict[str, Any], out: Path, png: Path | None) -> list[str]:
    s = record["settings"]
    model = record["model"]
    lines = provenance_lines(record)
    lines[-1] += f", mteb {record['versions'].get('mteb', '?')}"
    rel = {k: os.path.relpath(v, out.parent) for k, v in record["files"].items() if v}
    inputs = ", ".join(f"`{r}`" for r in s["records"]) or "none"
    lines += [
        f"- Records compared: {inputs}"
        + (f"; not found, left out: {', '.join(s['missing'])}" if s["missing"] else ""),
        f"- Scored here: `{model['name']}` (identity `{model['identity']}`), pooling "
        f"{s['pooling']}, cmteb protocol (max length {s['max_length']}) on "
        f"{', '.join(s['tasks'])}: by `embedkit bench`, written as mteb result files to "
        f"`{s['folders']['embedkit_bench']}`, and by mteb's own evaluator "
        "(`embedkit.integrations.mteb.evaluate_local`, offline, the same local files) into "
        f"`{s['folders']['mteb_evaluate']}`",
        f"- The same as one page: [{rel['html']}]({rel['html']}) (sortable table, charts)", ""]
    if png is not None:
        lines += [f"![{rel['html']} in a headless browser]({rel['png']})", ""]
    return lines


def _write_pages(cmp: Comparison, record: dict[str, Any], out: Path,
                 screenshot: Screenshot | None) -> None:
    """Step 3 and 4: HTML, screenshot, Markdown (which shows the screenshot when there is
    one), JSON record."""
    from embedkit.reports.compare import html_report, markdown_report

    title = record["settings"]["title"]
    html_path, png = out.with_suffix(".html"), out.with_suffix(".png")
    para = agreement_text(record["agreement"])
    block = (f"{_provenance_html(record)}<h2>embedkit bench vs mteb's evaluator</h2>"
             f"<p>{escape_html(para)}</p>")
    atomic_write_text(html_path, html_report(cmp, title).replace("</h1>", "</h1>" + block, 1))
    record["files"] = {"markdown": str(out), "html": str(html_path), "png": None,
                       "json": str(out.with_suffix(".json"))}
    if screenshot is not None and screenshot(html_path, png) and png.is_file():
        record["files"]["png"] = str(png)
    else:  # the screenshot function says why
        logger.debug("no screenshot of %s", html_path)
    body = markdown_report(cmp, title).splitlines()[2:]  # after its "# title" and blank line
    md = [f"# {title}", "", *_header(record, out, png if record["files"]["png"] else None),
          "## embedkit bench vs mteb's evaluator", "", para, "",
          agreement_table(record["agreement"]), "", "## Every model", "", *body]
    atomic_write_text(out, "\n".join(md))
    atomic_write_json(out.with_suffix(".json"), record)


def _provenance_html(record: dict[str, Any]) -> str:
    """The command, machine and versions, as the Markdown page starts with them."""
    m, v = record.get("machine") or {}, record.get("versions") or {}
    versions = ", ".join(f"{k} {x}" for k, x in v.items())
    return (f"<p>Regenerate with: <code>{escape_html(record.get('command') or '(Python API)')}</code>"
            f"</p><p>Machine: {escape_html(m.get('cpu', '?'))}, {escape_html(m.get('cores', '?'))} cores, "
            f"{escape_html(m.get('os', '?'))}. Versions: {escape_html(versions)}.</p>")


def run_compare_report(out: str | os.PathLike, opts: CompareReportOptions | None = None, *,
                       mteb_evaluate: MtebEvaluate, screenshot: Screenshot | None = None,
                       encoder: SentenceEncoder | EncoderConfig | None = None,
                       command: str | None = None) -> dict[str, Any]:
    """Write the report to ``out`` (Markdown) and ``out`` with ``.html``, ``.json`` (the
    returned record) and, when ``screenshot`` makes one, ``.png``; see the module docstring.
    ``encoder``: default ``EncoderConfig(opts.model, batch_size=opts.batch_size)`` with the
    user's embedding cache."""
    from embedkit.encoders import EncoderConfig, as_encoder
    from embedkit.runs.compare import compare

    opts = opts or CompareReportOptions()
    t0 = time.perf_counter()
    out = Path(out)
    work = Path(opts.work_dir) if opts.work_dir else out.parent / "compare-mteb"
    specs = [get_task(t) for t in opts.tasks]  # a bad name fails before the model loads
    found, missing = _inputs(opts.records)
    enc = as_encoder(encoder or EncoderConfig(opts.model, batch_size=opts.batch_size))
    bench = _score_twice(opts, enc, specs, work, mteb_evaluate, command)
    bench_dir, mteb_dir = work / BENCH_FOLDER, work / MTEB_FOLDER
    cmp = compare([*found, bench_dir, mteb_dir])
    row = next(iter(bench["results"].values()))
    lengths = sorted(set(bench["settings"]["max_length"].values()))
    settings = {
        "title": opts.title or f"Model comparison: {enc.name} and the records of "
                               f"{out.parent.as_posix() or '.'}",
        "records": found, "missing": missing, "tasks": bench["settings"]["tasks"],
        "pooling": row["pooling"], "protocol": "cmteb",
        "max_length": "|".join(str(n) for n in lengths),
        "data_dir": data_dir_setting(opts.data_dir),
        "folders": {"embedkit_bench": str(bench_dir), "mteb_evaluate": str(mteb_dir)}}
    record = run_record("compare-report", command=command, encoder=enc, settings=settings,
                        data=bench["data"], versions_extra=("mteb", "datasets"))
    record.update(**_compared(cmp, bench_dir, mteb_dir),
                  bench={"results": bench["results"], "timings": bench["timings"]},
                  timings=timings(enc, t0))
    _write_pages(cmp, record, out, screenshot)
    return record


def _compared(cmp: Comparison, bench_dir: Path, mteb_dir: Path) -> dict[str, Any]:
    """What the record keeps of the comparison (the pages are rendered from ``cmp``)."""
    return {"agreement": bench_vs_mteb(cmp, bench_dir, mteb_dir),
            "entries": [e.label for e in cmp.ordered()], "compared_tasks": cmp.tasks,
            "flagged": [list(f) for f in cmp.flagged_cells()]}


def rerender_compare_report(out: str | os.PathLike, record: dict[str, Any], *, source: str,
                            screenshot: Screenshot | None = None) -> dict[str, Any]:
    """The pages of ``record`` (read from ``source``) written again to ``out`` (Markdown,
    ``.html``, ``.json``; ``.png`` when ``screenshot`` makes one), nothing scored: the pages
    show the comparison of the files the record names (its records and its two mteb folders,
    read again), so they must still give what the record holds, else the report is refused."""
    from embedkit.errors import ConfigError
    from embedkit.runs.compare import compare

    s = record["settings"]
    bench_dir = Path(s["folders"]["embedkit_bench"])
    mteb_dir = Path(s["folders"]["mteb_evaluate"])
    cmp = compare([*s["records"], bench_dir, mteb_dir])
    changed = [k for k, v in _compared(cmp, bench_dir, mteb_dir).items() if record.get(k) != v]
    if changed:
        raise ConfigError(f"{source}: the files it compares changed since the report was made "
                          f"({', '.join(changed)} differ); rerun the report without "
                          "--from-record", param="from_record")
    _write_pages(cmp, record, Path(out), screenshot)
    return record


# --------------------------------------------------------------------------------------------
# the script: python benchmarks/report_compare.py [options]

SCRIPT = "report_compare.py"


def build_parser() -> argparse.ArgumentParser:
    from embedkit.cli.common import positive_int

    d = CompareReportOptions()
    s = make_parser(SCRIPT,
        "Score the model with the cmteb protocol by embedkit bench and by mteb's own "
        "evaluator on the same local files (mteb result folders under --work-dir), "
        "compare both with the records that exist, and write the Markdown page, an "
        "HTML page beside it, the JSON record and, when chromium is on the PATH, a "
        "screenshot of the HTML. Needs mteb (pip install 'embedkit[mteb]'). "
        "Example: python benchmarks/report_compare.py --model m3e-small --data-dir "
        "../shared/data --out eval/compare.md")
    add_run_options(s, d.model, d.tasks)
    s.add_argument("--pooling", help="pooling scored by both evaluators (default: the model's)")
    s.add_argument("--records", default=",".join(DEFAULT_RECORDS),
                   help="records to compare, comma-separated (missing ones are left out)")
    s.add_argument("--work-dir", help="where the two mteb result folders go "
                                      "(default: compare-mteb beside --out)")
    s.add_argument("--batch-size", type=positive_int, default=d.batch_size)
    s.add_argument("--screenshot", action=argparse.BooleanOptionalAction, default=True,
                   help="screenshot the HTML page with headless chromium (when installed; "
                        "with --from-record: only when the record has a screenshot)")
    add_report_files(s, "eval/compare")
    s.set_defaults(func=run_compare_cmd)
    return s


def chromium_screenshot(html: Path, png: Path) -> bool:
    """A PNG of ``html`` by headless chromium (``chromium`` or ``chromium-browser`` on the
    PATH); False when there is none or it fails."""
    import shutil
    import subprocess

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        logger.info("no chromium on the PATH: no screenshot")
        return False
    png.unlink(missing_ok=True)
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={png}",
           "--window-size=1400,1000", html.resolve().as_uri()]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        logger.warning("chromium failed (%s): no screenshot", e)
        return False
    if done.returncode != 0 or not png.is_file():
        tail = (done.stderr or "").strip().splitlines()[-1:]
        logger.warning("chromium exited with %d%s: no screenshot", done.returncode,
                       f" ({tail[0]})" if tail else "")
        return False
    return True


def run_compare_cmd(args: argparse.Namespace) -> int:
    from embedkit.cli.parsing import split_list

    rec = recorded(args, SCRIPT, build_parser, "compare-report")
    if rec is not None:
        shoot = chromium_screenshot if args.screenshot and rec["files"].get("png") else None
        rec = rerender_compare_report(args.out, rec, source=args.from_record, screenshot=shoot)
        print(f"wrote {', '.join(v for v in rec['files'].values() if v)}")
        return 0
    try:
        from embedkit.integrations.mteb import evaluate_encoder
    except ImportError as e:
        from embedkit.errors import ConfigError

        raise ConfigError(str(e)) from None
    opts = CompareReportOptions(model=args.model, data_dir=args.data_dir,
                                records=tuple(split_list(args.records)),
                                tasks=tuple(split_list(args.tasks)), pooling=args.pooling,
                                work_dir=args.work_dir, batch_size=args.batch_size)
    rec = run_compare_report(args.out, opts, mteb_evaluate=evaluate_encoder,
                             screenshot=chromium_screenshot if args.screenshot else None,
                             command=args.command_line)
    s = rec["settings"]
    print(f"{rec['model']['name']} · {s['pooling']}, cmteb protocol: embedkit bench vs mteb "
          "evaluate (Spearman x 100)")
    for r in rec["agreement"]:
        print(f"  {r['task']:<8} {100 * r['embedkit_bench']:8.4f} {100 * r['mteb_evaluate']:8.4f}"
              f"  {r['difference']:+.4f}")
    print(f"{len(rec['entries'])} models x {len(rec['compared_tasks'])} tasks compared; "
          f"{len(rec['flagged'])} cells flagged")
    files = [v for v in rec["files"].values() if v]
    print(f"wrote {', '.join(files)}; mteb folders under {Path(s['folders']['mteb_evaluate']).parent}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), SCRIPT, argv)


if __name__ == "__main__":
    sys.exit(main())
