"""SimCSE report: an encoder before and after SimCSE on each task, next to whitening.

:func:`run_simcse_report` (``make eval-simcse`` writes ``eval/simcse-m3e-small.md`` with it,
rendered by :func:`render`). For each task it trains unsupervised SimCSE on the task's own
unlabelled sentences with the Chinese experiments' settings (the defaults of
:class:`~embedkit.training.SimCSEConfig`), then scores on the test split (whitening protocol):
the base encoder raw, whitened (fitted on the task, beta = gamma = 1) and whitened to 256
dimensions, and the trained encoder. It also runs supervised training on STS-B train (InfoNCE
with label >= 4 as positives, and CoSENT on the graded labels) and scores STS-B test. A finished
run whose recorded configuration has every setting asked for is reused, so regenerating the
report after a change to the text is cheap.

>>> SimCSEReportOptions().tasks
('ATEC', 'BQ', 'LCQMC', 'PAWSX', 'STS-B')
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _common import add_report_files, add_run_options, make_parser, recorded, run, write_report

from embedkit.data import DEFAULT_TASKS
from embedkit.reports.bench import provenance_lines
from embedkit.runs.record import data_dir_setting, run_record, timings

if TYPE_CHECKING:  # the library is imported where the work is
    from embedkit.encoders import SentenceEncoder
    from embedkit.encoders.cache import EmbeddingCache
    from embedkit.training import SimCSEConfig

logger = logging.getLogger("embedkit.benchmarks.report_simcse")  # shown as embedkit's own log lines

WHITEN = ("whiten:beta=1,gamma=1,k=all", "whiten:beta=1,gamma=1,k=256")
SUPERVISED_RUNS = (("InfoNCE, positives label >= 4", {"loss": "infonce", "threshold": 4.0}),
                   ("CoSENT on the 0-5 labels", {"loss": "cosent"}))


def _finished(cfg: SimCSEConfig) -> dict | None:
    """The record of a complete earlier run whose configuration has every setting ``cfg`` sets
    (the record's holds the resolved defaults as well), else None."""
    from embedkit.training.checkpoint import RECORD_FILE

    path = Path(str(cfg.out_dir)) / RECORD_FILE
    if not path.is_file():
        return None
    rec = json.loads(path.read_text(encoding="utf-8"))
    if not rec.get("complete"):
        return None
    have = rec.get("config", {})
    want = {k: v for k, v in cfg.to_dict().items()
            if v is not None and k not in ("progress", "out_dir")}
    return rec if all(have.get(k) == v for k, v in want.items()) else None


def train_or_reuse(cfg: SimCSEConfig) -> dict:
    """The record of ``cfg``'s run: reused when complete, else trained (resuming from the
    latest checkpoint when there is one)."""
    from embedkit.training import train_simcse

    rec = _finished(cfg)
    if rec is not None:
        logger.info("reusing %s (same configuration, complete)", cfg.out_dir)
        return rec
    ckpts = sorted(Path(str(cfg.out_dir) + ".checkpoints").glob("step-*"))
    return train_simcse(cfg, resume=ckpts[-1] if ckpts else None).record


def _score(encoder: SentenceEncoder, pooling: str, task: str, data_dir: str | None,
           post: Sequence[str] = ()) -> dict[str, float]:
    """Spearman on the task's test split per row (the pooling, then each post chain fitted on
    the task), by :func:`~embedkit.runs.bench.run_bench`."""
    from embedkit.runs.bench import run_bench

    rec = run_bench(encoder, [pooling], [task], ["test"], data_dir=data_dir, post=list(post))
    name = rec["settings"]["tasks"][0]  # the spec's name (``task`` may be a spec file)
    return {label: r[name]["test"]["spearman"] for label, r in rec["results"].items()}


def _unsupervised_row(base: SentenceEncoder, task: str, cache: EmbeddingCache, *,
                      runs: Path, data_dir: str | None, seed: int) -> dict[str, Any]:
    from embedkit.encoders import EncoderConfig
    from embedkit.training import SimCSEConfig

    pooling = str(base.default_pooling)
    cfg = SimCSEConfig(model=base.name, tasks=[task], out_dir=str(runs / f"{_slug(base)}-{task}"),
                       pooling=pooling, seed=seed, data_dir=data_dir, save_every=50)
    rec = train_or_reuse(cfg)
    scores = _score(base, pooling, task, data_dir, WHITEN)
    trained = _score(EncoderConfig(str(cfg.out_dir)).build(cache), pooling, task, data_dir)
    row = {"task": task, "raw": scores[pooling], "whiten": scores[f"{pooling} + {WHITEN[0]}"],
           "whiten256": scores[f"{pooling} + {WHITEN[1]}"], "simcse": trained[pooling],
           "steps": rec["steps"], "sentences": rec["examples"],
           "seconds_per_step": rec["seconds_per_step"], "final_loss": rec["final_loss"],
           "out_dir": str(cfg.out_dir), "data_sha256": rec["data"].get("sha256")}
    logger.info("%s: raw %.2f, simcse %.2f", task, 100 * row["raw"], 100 * row["simcse"])
    return row


def _supervised_rows(base: SentenceEncoder, task: str, cache: EmbeddingCache, *, runs: Path,
                     data_dir: str | None, seed: int) -> list[dict[str, Any]]:
    from embedkit.encoders import EncoderConfig
    from embedkit.training import SimCSEConfig

    pooling = str(base.default_pooling)
    rows = []
    for name, extra in SUPERVISED_RUNS:
        cfg = SimCSEConfig(model=base.name, supervised=True, pairs=[f"{task}:train"],
                           out_dir=str(runs / f"{_slug(base)}-{task}-sup-{extra['loss']}"),
                           pooling=pooling, seed=seed, data_dir=data_dir, **extra)
        rec = train_or_reuse(cfg)
        trained = _score(EncoderConfig(str(cfg.out_dir)).build(cache), pooling, task, data_dir)
        rows.append({"run": name, "task": task, "simcse": trained[pooling],
                     "steps": rec["steps"], "examples": rec["examples"],
                     "seconds_per_step": rec["seconds_per_step"],
                     "final_loss": rec["final_loss"], "out_dir": str(cfg.out_dir)})
    return rows


def _slug(encoder: SentenceEncoder) -> str:
    return Path(encoder.name).name


@dataclass(frozen=True)
class SimCSEReportOptions:
    """What the report trains and scores (defaults: ``make eval-simcse``). ``supervised_task``
    names the task whose train split trains the supervised runs (None: skip them)."""

    model: str = "m3e-small"
    tasks: tuple[str, ...] = tuple(DEFAULT_TASKS)
    runs_dir: str = "runs/simcse"
    data_dir: str | None = None
    seed: int = 42
    supervised_task: str | None = "STS-B"


def run_simcse_report(opts: SimCSEReportOptions | None = None, *, command: str | None = None
                      ) -> dict[str, Any]:
    """Train (or reuse) every run of the report and score it; the report's record."""
    from embedkit.encoders import EncoderConfig
    from embedkit.encoders.cache import EmbeddingCache

    opts = opts or SimCSEReportOptions()
    t0 = time.perf_counter()
    cache = EmbeddingCache()
    base = EncoderConfig(opts.model).build(cache)
    runs = Path(opts.runs_dir)
    kw: dict[str, Any] = {"runs": runs, "data_dir": opts.data_dir, "seed": opts.seed}
    rows = [_unsupervised_row(base, t, cache, **kw) for t in opts.tasks]
    sup_rows = (_supervised_rows(base, opts.supervised_task, cache, **kw)
                if opts.supervised_task else [])
    settings = {"pooling": str(base.default_pooling), "seed": opts.seed,
                "tasks": list(opts.tasks), "supervised_task": opts.supervised_task or None,
                "runs_dir": opts.runs_dir, "data_dir": data_dir_setting(opts.data_dir),
                "whiten": list(WHITEN)}
    record = run_record("simcse-report", command=command, encoder=base, settings=settings,
                        data={})
    record.update(unsupervised=rows, supervised=sup_rows, timings=timings(base, t0))
    return record


def _pct(v: float) -> str:
    return f"{100 * v:.2f}"


def current_layout(record: dict) -> dict:
    """``record`` as :func:`render` reads it: a record of the report's first layout (no
    ``kind``; ``pooling``, ``seed`` and ``seconds_total`` at the top, as
    ``eval/simcse-m3e-small.json`` holds them) gets ``settings`` and ``timings`` from those.

    >>> current_layout({"pooling": "cls", "seed": 1, "seconds_total": 2.0})["timings"]
    {'seconds_total': 2.0}
    """
    if "settings" in record:
        return record
    return {**record, "settings": {"pooling": record["pooling"], "seed": record["seed"]},
            "timings": {"seconds_total": record["seconds_total"]}}


def render(record: dict) -> str:
    """The report in Markdown (a record of either layout: :func:`current_layout`)."""
    record = current_layout(record)
    x = _pct
    m = record["model"]
    s = record["settings"]
    out = ["# SimCSE on " + m["name"], ""] + provenance_lines(record) + [
        f"- Model: `{m['name']}` (identity `{m['identity']}`), pooling {s['pooling']} in "
        "training and evaluation; test splits, whitening protocol (max length 64, PAWSX 128)",
        "- Unsupervised SimCSE: dropout 0.3, batch 64, lr 1e-5, one epoch, up to 10,000 "
        "sentences sampled from the task's splits without labels, temperature 0.05, no MLM loss, "
        f"no MLP head; seed {s['seed']}",
        "- Whitening: fitted on every sentence of every split of the task (the published "
        "protocol), beta = gamma = 1", "",
        "## Spearman x 100 on the test split", "",
        "| task | raw | whitened | whitened-256 | SimCSE | steps | sentences | s/step | final loss |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in record["unsupervised"]:
        out.append(f"| {r['task']} | {x(r['raw'])} | {x(r['whiten'])} | {x(r['whiten256'])} | "
                   f"{x(r['simcse'])} | {r['steps']} | {r['sentences']} | "
                   f"{r['seconds_per_step']:.2f} | {r['final_loss']:.4f} |")
    rs = record["unsupervised"]
    if rs:
        avg = {k: sum(r[k] for r in rs) / len(rs) for k in ("raw", "whiten", "whiten256", "simcse")}
        out.append(f"| avg | {x(avg['raw'])} | {x(avg['whiten'])} | {x(avg['whiten256'])} | "
                   f"{x(avg['simcse'])} | | | | |")
    if record["supervised"]:
        out += ["", "## Supervised, trained on STS-B train, Spearman x 100 on STS-B test", "",
                "| run | Spearman | steps | examples | s/step | final loss |",
                "|---|---:|---:|---:|---:|---:|"]
        for r in record["supervised"]:
            out.append(f"| {r['run']} | {x(r['simcse'])} | {r['steps']} | {r['examples']} | "
                       f"{r['seconds_per_step']:.2f} | {r['final_loss']:.4f} |")
    out += ["", f"Seconds per step are wall-clock on the machine above (CPU); total "
            f"{record['timings']['seconds_total']:.0f} s for this report (reused runs excluded).", ""]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# the script: python benchmarks/report_simcse.py [options]

SCRIPT = "report_simcse.py"


def build_parser() -> argparse.ArgumentParser:
    d = SimCSEReportOptions()
    s = make_parser(SCRIPT,
        "Train (or reuse) unsupervised SimCSE on each task and supervised runs on "
        "one task's train split, score them beside raw and whitened vectors. "
        "Example: python benchmarks/report_simcse.py --data-dir ../shared/data "
        "--out eval/simcse-m3e-small.md")
    add_run_options(s, d.model, d.tasks, d.runs_dir)
    s.add_argument("--seed", type=int, default=d.seed)
    s.add_argument("--supervised-task", default=d.supervised_task,
                   help="task whose train split trains the supervised runs ('' to skip)")
    add_report_files(s, "eval/simcse-m3e-small")
    s.set_defaults(func=run_simcse_cmd)
    return s


def run_simcse_cmd(args: argparse.Namespace) -> int:
    from embedkit.cli.parsing import split_list
    from embedkit.runs.compare import is_simcse_report

    record = recorded(args, SCRIPT, build_parser, "simcse-report", is_simcse_report)
    if record is not None:
        write_report(Path(args.out), record, render(record))
        return 0
    opts = SimCSEReportOptions(args.model, tuple(split_list(args.tasks)), args.runs_dir,
                               args.data_dir, args.seed, args.supervised_task or None)
    record = run_simcse_report(opts, command=args.command_line)
    write_report(Path(args.out), record, render(record))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), SCRIPT, argv)


if __name__ == "__main__":
    sys.exit(main())
