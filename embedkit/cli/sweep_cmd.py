"""``embedkit sweep``: the whitening family (beta, gamma, k) on cached embeddings, selected on
one split and reported on another."""

from __future__ import annotations

import sys

from embedkit.cli.common import (
    add_classify_option,
    add_data_options,
    add_fit_on,
    add_max_length,
    add_model_options,
    add_poolings_and_tasks,
    add_progress,
    add_record_outputs,
    check_output_dir,
    check_output_path,
    data_options,
    encoder_config,
    post_options,
    write_json,
)
from embedkit.cli.parsing import parse_grid, split_poolings
from embedkit.errors import ConfigError
from embedkit.io.atomic import atomic_write_text
from embedkit.runs.record import SweepRecord


def add_parser(sub) -> None:
    p = sub.add_parser(
        "sweep", help="sweep whitening settings (beta, gamma, k) with honest selection",
        description="Encode each task once (through the embedding cache), fit the whitening "
                    "statistics once per task and pooling, eigen-decompose once per beta and "
                    "score every (gamma, k) from the same decomposition; pick the best setting "
                    "per task on --select-on and report it on --report-on, beside the raw score "
                    "and the classic beta=gamma=1, k=all.",
        )
    add_model_options(p)
    add_poolings_and_tasks(p)
    p.add_argument("--beta", default="0,0.5,1", help="comma-separated centring weights")
    p.add_argument("--gamma", default="0,0.25,0.5,0.75,1",
                   help="comma-separated scaling exponents")
    p.add_argument("--k", default="64,128,256,all",
                   help="comma-separated dimensions kept (positive integers or all; values "
                        "above the model's dimension are skipped)")
    add_fit_on(p)
    p.add_argument("--select-on", default="valid", metavar="SPLIT",
                   help="split the best setting is chosen on")
    p.add_argument("--report-on", default="test", metavar="SPLIT",
                   help="split the chosen setting is reported on")
    add_classify_option(p, "--select-on", "--report-on for the best setting")
    p.add_argument("--quantize-vectors", metavar="Q",
                   help="a vector quantiser after every setting (int8, uint8[:clip=C], binary, "
                        "ubinary), fitted on the vectors that setting maps and scored on its "
                        "codes (cosine of the dequantised vectors; Hamming for binary)")
    add_max_length(p)
    add_data_options(p)
    add_record_outputs(p, stdout_ok=True)
    p.add_argument("--plots", metavar="DIR", help="write one PNG per task here (matplotlib)")
    add_progress(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from embedkit.reports.bench import data_line, run_title, truncation_note
    from embedkit.reports.sweep import format_sweep_table, sweep_markdown, write_plots
    from embedkit.runs.sweep import SweepOptions, run_sweep

    check_output_path(args.output, "output", stdout_ok=True)
    check_output_path(args.markdown, "markdown")
    check_output_dir(args.plots, "plots")
    options = SweepOptions(beta=parse_grid(args.beta, "beta"), gamma=parse_grid(args.gamma, "gamma"),
                           k=parse_grid(args.k, "k"), post=post_options(args),
                           select_on=args.select_on,
                           report_on=args.report_on, classify=args.classify,
                           quantize_vectors=args.quantize_vectors)
    if args.max_length is not None and args.max_length < 3:
        raise ConfigError("--max-length must be at least 3 ([CLS], one token, [SEP])")
    if args.plots:  # fail before encoding when matplotlib is missing
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ConfigError("--plots needs matplotlib: pip install 'embedkit[plot]'") from None
    record = run_sweep(encoder_config(args), split_poolings(args.pooling), args.tasks, options,
                       max_length=args.max_length, data=data_options(args),
                       command=args.command_line)
    _warn(record)
    plots = write_plots(record, args.plots) if args.plots else []
    if plots:
        record["plots"] = [str(p) for p in plots]
    if args.output:
        write_json(args.output, record)
    if args.markdown:
        atomic_write_text(args.markdown, sweep_markdown(record, plots, args.markdown))
    if args.output != "-":
        t = record["timings"]
        s = record["settings"]
        print(f"{run_title(record)}: whitening sweep, Spearman x 100 (best chosen on "
              f"{s['select_on']}, reported on {s['report_on']})")
        print(format_sweep_table(record))
        _print_classification(record)
        truncated = truncation_note(record)
        if truncated:
            print(truncated)
        print(f"[{t['n_scored']} task x pooling x setting scores ({t['n_settings']} settings "
              f"in the grid) in {t['seconds_sweep']:.2f} s; {t['unique_sentences']} unique "
              f"sentences, {t['cache_hits']} cached, {t['encoded']} encoded in "
              f"{t['seconds_encoding']:.1f} s; total {t['seconds_total']:.1f} s]")
        if data_line(record):
            print(f"[{data_line(record)}]")
    return 0


def _warn(record: SweepRecord) -> None:
    if not record["settings"]["honest"]:
        print(f"embedkit: warning: --select-on and --report-on are both "
              f"{record['settings']['select_on']}: the reported best is not an honest estimate",
              file=sys.stderr)
    for task, by_pool in record["results"].items():
        for pooling, r in by_pool.items():
            if r["skipped_k"]:
                print(f"embedkit: {task}/{pooling}: skipped k > d={r['d']}: "
                      f"{', '.join(map(str, r['skipped_k']))}", file=sys.stderr)


def _print_classification(record: SweepRecord) -> None:
    from embedkit.io.tables import text_table
    from embedkit.reports.bench import sweep_classification_rows

    header, rows = sweep_classification_rows(record)
    if rows:
        s = record["settings"]
        print(f"\npair classification x 100 of the best setting (cosine; thresholds chosen on "
              f"{s['select_on']}, reported on {s['report_on']})")
        print(text_table(header, rows, left=3))
