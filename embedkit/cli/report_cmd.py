"""``embedkit report speed|simcse|scale``: the reports in ``eval/`` that no other command makes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from embedkit.cli.common import (
    add_data_dir,
    add_max_length,
    add_model_name,
    add_out,
    add_pooling,
    add_seed,
    check_output_path,
    positive_int,
    thread_count,
)
from embedkit.cli.parsing import parse_int_list, split_list
from embedkit.io.atomic import atomic_write_json, atomic_write_text
from embedkit.provenance import machine_description


def add_parser(sub: argparse._SubParsersAction) -> None:
    from embedkit.experiments.speed import SpeedOptions

    p = sub.add_parser("report", help="write one of the reports in eval/ (speed, simcse, scale, compare)",
                       description="Write a report of eval/ and the JSON record beside it.")
    reports = p.add_subparsers(dest="report", metavar="REPORT")
    reports.required = True
    s = reports.add_parser(
        "speed", help="sentences/s: embedkit's backends vs sentence-transformers' fast paths",
        description="Time sentence-transformers (torch, onnx, openvino, int8) and embedkit "
                    "(torch, onnx, openvino, int8, batches by count) on the same distinct "
                    "sentences, each engine in its own process, interleaved rounds, median "
                    "reported; each engine's Spearman on the five test sets, GFLOP/s against "
                    "this CPU's measured GEMM rate, peak memory and start-up. Example: "
                    "embedkit report speed --sentences 20000 --data-dir ../shared/data "
                    "--st-python .venv-st/bin/python --out eval/speed.md",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = SpeedOptions()
    add_model_name(s, d.model)
    s.add_argument("--sentences", type=positive_int, default=d.sentences)
    s.add_argument("--batch-size", type=positive_int, default=d.batch_size)
    add_max_length(s, d.max_length, type=positive_int)
    s.add_argument("--threads", type=thread_count, default=d.threads)
    s.add_argument("--rounds", type=positive_int, default=d.rounds)
    add_seed(s, "the sampled sentences and pairs", d.seed)
    s.add_argument("--spearman-pairs", type=int, default=d.spearman_pairs,
                   help="pairs per task for the quality columns (0: all)")
    s.add_argument("--st-python", metavar="PYTHON",
                   help="interpreter with sentence-transformers[onnx,openvino] for its engines "
                        "(default: this one)")
    s.add_argument("--engines", metavar="NAMES",
                   help="semicolon-separated engine names to run (default: all)")
    add_data_dir(s)
    add_out(s, "the report", default="eval/speed.md", metavar="FILE.md")
    s.add_argument("--rerender", action="store_true",
                   help="only rewrite the Markdown from the JSON saved beside --out")
    s.set_defaults(func=run_speed_cmd)
    _add_simcse(reports)
    _add_scale(reports)
    _add_compare(reports)


def _add_simcse(reports: argparse._SubParsersAction) -> None:
    from embedkit.experiments.simcse_report import SimCSEReportOptions

    d = SimCSEReportOptions()
    s = reports.add_parser(
        "simcse", help="m3e-small before and after SimCSE, next to whitening",
        description="Train (or reuse) unsupervised SimCSE on each task and supervised runs on "
                    "one task's train split, score them beside raw and whitened vectors. "
                    "Example: embedkit report simcse --data-dir ../shared/data "
                    "--out eval/simcse-m3e-small.md",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_model_name(s, d.model)
    s.add_argument("--tasks", default=",".join(d.tasks))
    s.add_argument("--runs-dir", default=d.runs_dir)
    add_data_dir(s)
    add_seed(s, "the training runs", d.seed)
    s.add_argument("--supervised-task", default=d.supervised_task,
                   help="task whose train split trains the supervised runs ('' to skip)")
    add_out(s, "the report", default="eval/simcse-m3e-small.md", metavar="FILE.md")
    s.set_defaults(func=run_simcse_cmd)


def _add_scale(reports: argparse._SubParsersAction) -> None:
    s = reports.add_parser(
        "scale", help="encoding throughput (local, Ray), streaming whitening, IVF from shards",
        description="Encode the unique STS test sentences with the local engine and on Ray, "
                    "fit a streaming whitening on synthetic vectors, build an IVF index from "
                    "shards and in one piece, and project the cost of 100 million sentences "
                    "(each phase in a fresh process, its peak memory its own). Example: "
                    "embedkit report scale --data-dir ../shared/data --out eval/scale.md",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_model_name(s, "m3e-small")
    add_data_dir(s)
    add_out(s, "the report", default="eval/scale.md", metavar="FILE.md")
    s.add_argument("--sentences", type=positive_int,
                   help="encode only the first N sentences (None: all)")
    s.add_argument("--ray-workers", default="1,2",
                   help="Ray worker counts, comma-separated ('' to skip Ray)")
    s.add_argument("--shard-size", type=positive_int, default=10000)
    add_max_length(s, 64, type=positive_int)
    s.add_argument("--whiten-rows", type=positive_int, default=1_000_000)
    s.add_argument("--whiten-dim", type=positive_int, default=512)
    s.add_argument("--ivf-rows", type=positive_int, default=1_000_000)
    s.add_argument("--ivf-dim", type=positive_int, default=512)
    s.add_argument("--factory", default="IVF1024,Flat", help="FAISS factory of the IVF part")
    s.add_argument("--num-queries", "--queries", dest="queries", type=positive_int,
                   default=1000, metavar="N",
                   help="queries comparing the two IVF indexes (--queries: the older spelling)")
    s.add_argument("--nprobe", type=positive_int, default=16)
    add_seed(s, "the synthetic vectors and queries")
    s.add_argument("--work-dir", help="where the working files go (default: a temporary folder)")
    s.set_defaults(func=run_scale_cmd)


def run_scale_cmd(args: argparse.Namespace) -> int:
    from embedkit.experiments.scale import run_scale

    check_output_path(args.out, "out")
    rec = run_scale(args.out, model=args.model, data_dir=args.data_dir,
                    sentences=args.sentences,
                    ray_workers=tuple(parse_int_list(args.ray_workers, "--ray-workers")),
                    shard_size=args.shard_size, max_length=args.max_length,
                    whiten_rows=args.whiten_rows, whiten_dim=args.whiten_dim,
                    ivf_rows=args.ivf_rows, ivf_dim=args.ivf_dim, factory=args.factory,
                    queries=args.queries, nprobe=args.nprobe, seed=args.seed,
                    work_dir=args.work_dir, command=args.command_line)
    for r in rec["encode"]["runs"]:
        print(f"encode {r['engine']} x{r['workers']}: {r['rows']} rows in {r['seconds']} s "
              f"({r['encode_rows_per_s']} rows/s encoding), peak {r['peak_mb']} MB")
    for e in rec["encode"]["ray_start"]:
        if "error" in e:
            print(f"ray: {e['error']}")
    w, v = rec["whiten"], rec["ivf"]
    print(f"whiten {w['rows']} x {w['dim']}: fit {w['fit_seconds']} s, peak {w['peak_mb']} MB")
    builds = ", ".join(f"{b['how']} {b['seconds']} s / {b['peak_mb']} MB" for b in v["builds"])
    print(f"{v['factory']} over {v['rows']} x {v['dim']}: {builds}; recall@10 between "
          f"{v['recall_at_10_between']}")
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.json')} "
          f"({rec['seconds']} s in all)")
    return 0


def _write(out: Path, record: dict, md: str) -> None:
    atomic_write_json(out.with_suffix(".json"), record)
    atomic_write_text(out, md)
    print(md)


def run_simcse_cmd(args: argparse.Namespace) -> int:
    from embedkit.experiments import simcse_report
    from embedkit.experiments.simcse_report import SimCSEReportOptions, run_simcse_report

    opts = SimCSEReportOptions(args.model, tuple(split_list(args.tasks)), args.runs_dir,
                               args.data_dir, args.seed, args.supervised_task or None)
    record = run_simcse_report(opts, command=args.command_line)
    _write(Path(args.out), record, simcse_report.render(record))
    return 0


def run_speed_cmd(args: argparse.Namespace) -> int:
    from embedkit.experiments import speed
    from embedkit.experiments.speed import SpeedOptions, run_speed

    out = Path(args.out)
    json_path = out.with_suffix(".json")
    if args.rerender:
        record = json.loads(json_path.read_text(encoding="utf-8"))
        record["machine"] = {**machine_description(), **record["machine"],
                             "cpu_bf16": machine_description()["cpu_bf16"]}
    else:
        engines = tuple(e.strip() for e in (args.engines or "").split(";") if e.strip())
        opts = SpeedOptions(args.model, args.sentences, args.batch_size, args.max_length,
                            args.threads, args.rounds, args.seed, args.spearman_pairs,
                            args.data_dir, args.st_python, engines)
        from embedkit.cli.startup import startup_profile

        record = run_speed(opts, command=args.command_line,
                           startup=lambda: startup_profile(opts.model, opts.data_dir))
    _write(out, record, speed.render(record))
    return 0


def _add_compare(reports: argparse._SubParsersAction) -> None:
    from embedkit.experiments.compare_report import DEFAULT_RECORDS, CompareReportOptions

    d = CompareReportOptions()
    s = reports.add_parser(
        "compare", help="the records of eval/ side by side; one model by embedkit and by mteb",
        description="Score the model with the cmteb protocol by embedkit bench and by mteb's own "
                    "evaluator on the same local files (mteb result folders under --work-dir), "
                    "compare both with the records that exist, and write the Markdown page, an "
                    "HTML page beside it, the JSON record and, when chromium is on the PATH, a "
                    "screenshot of the HTML. Needs mteb (pip install 'embedkit[mteb]'). "
                    "Example: embedkit report compare --model m3e-small --data-dir "
                    "../shared/data --out eval/compare.md",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_model_name(s, d.model)
    add_pooling(s, default="the model's own; scored by both evaluators")
    add_data_dir(s)
    add_out(s, "the report", default="eval/compare.md", metavar="FILE.md")
    s.add_argument("--records", default=",".join(DEFAULT_RECORDS),
                   help="records to compare, comma-separated (missing ones are left out)")
    s.add_argument("--tasks", default=",".join(d.tasks))
    s.add_argument("--work-dir", help="where the two mteb result folders go "
                                      "(default: compare-mteb beside --out)")
    s.add_argument("--batch-size", type=positive_int, default=d.batch_size)
    s.add_argument("--screenshot", action=argparse.BooleanOptionalAction, default=True,
                   help="screenshot the HTML page with headless chromium (when installed)")
    s.set_defaults(func=run_compare_cmd)


def chromium_screenshot(html: Path, png: Path) -> bool:
    """A PNG of ``html`` by headless chromium (``chromium`` or ``chromium-browser`` on the
    PATH); False when there is none or it fails."""
    import logging
    import shutil
    import subprocess

    log = logging.getLogger("embedkit.cli.report")
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        log.info("no chromium on the PATH: no screenshot")
        return False
    png.unlink(missing_ok=True)
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={png}",
           "--window-size=1400,1000", html.resolve().as_uri()]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        log.warning("chromium failed (%s): no screenshot", e)
        return False
    if done.returncode != 0 or not png.is_file():
        tail = (done.stderr or "").strip().splitlines()[-1:]
        log.warning("chromium exited with %d%s: no screenshot", done.returncode,
                    f" ({tail[0]})" if tail else "")
        return False
    return True


def run_compare_cmd(args: argparse.Namespace) -> int:
    try:
        from embedkit.integrations.mteb import evaluate_encoder
    except ImportError as e:
        from embedkit.errors import ConfigError

        raise ConfigError(str(e)) from None
    from embedkit.experiments.compare_report import CompareReportOptions, run_compare_report

    check_output_path(args.out, "out")
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
