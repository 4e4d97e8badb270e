"""``embedkit compare``: models x tasks from embedkit records and mteb result folders."""

from __future__ import annotations

import argparse

from embedkit.cli.common import add_seed
from embedkit.errors import ConfigError
from embedkit.io.atomic import atomic_write_text
from embedkit.runs.choices import METRICS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare", help="compare models: records and mteb result folders side by side",
        description="Read embedkit bench/sweep JSON records and mteb result folders (as "
                    "mteb.evaluate or 'embedkit bench --mteb-results' write them) and print "
                    "models x tasks with the average and ranks, and how each model ran "
                    "(backend, precision, prompt, revision). Cells computed under another "
                    "protocol or on other data than the rest of their column are marked '*' "
                    "and explained, never ranked or averaged with it; only models with a "
                    "comparable score on every task are ranked. An impossible score (not a "
                    "number, or outside [-1, 1] as files keep it) is an error naming its file; "
                    "an input without a score on the split is left out by name. Example: embedkit compare eval/m3e-small.json "
                    "eval/whitening-m3e-small.json results/ --html eval/compare.html",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("inputs", nargs="*", metavar="RECORD_OR_DIR",
                   help="embedkit JSON records, or folders of mteb results")
    p.add_argument("--metric", default="spearman", choices=METRICS)
    p.add_argument("--split", default="test", help="the split compared (test, valid)")
    p.add_argument("--title", default="Model comparison", help="title of the pages")
    p.add_argument("--markdown", metavar="F.md", help="also write the table as Markdown here")
    p.add_argument("--html", metavar="F.html",
                   help="also write one self-contained HTML page here (sortable table, charts)")
    p.add_argument("--plot", metavar="F.png", help="also write a PNG heatmap here (matplotlib)")
    p.add_argument("--speed-plot", metavar="F.png",
                   help="also write a PNG of quality against speed here: the average score "
                        "against sentences/s (log scale), one labelled point per record row "
                        "that measured its encoding speed (matplotlib)")
    p.add_argument("--paired", nargs=2, metavar=("A", "B"),
                   help="instead: is row A better than row B beyond noise? two predictions files "
                        "or row folders of bench --predictions on the same data; a paired "
                        "bootstrap (the same resampled pairs for both) of Spearman")
    p.add_argument("--resamples", type=int, default=1000, metavar="N",
                   help="with --paired: bootstrap resamples")
    add_seed(p, "the resamples (with --paired)")
    p.set_defaults(func=run)


def _run_paired(args: argparse.Namespace) -> int:
    from embedkit.reports.significance import format_significance
    from embedkit.runs.significance import compare_predictions

    rows = compare_predictions(args.paired[0], args.paired[1], n_resamples=args.resamples,
                               seed=args.seed)
    print(f"Spearman x 100, A = {args.paired[0]}, B = {args.paired[1]}; paired bootstrap, "
          f"{args.resamples} resamples, seed {args.seed}; significant: the 95% interval of "
          "A - B excludes 0")
    print(format_significance(rows))
    return 0


def run(args: argparse.Namespace) -> int:
    from embedkit.reports.compare import (
        comparison_table,
        html_report,
        markdown_report,
        save_plot,
    )
    from embedkit.reports.compare_speed import save_speed_plot
    from embedkit.runs.compare import compare

    if args.paired:
        return _run_paired(args)
    if not args.inputs:
        raise ConfigError("give records or mteb folders to compare, or --paired A B")
    cmp = compare(args.inputs, metric=args.metric, split=args.split)
    left_out = f"; {len(cmp.skipped)} input(s) left out, see below" if cmp.skipped else ""
    print(f"{cmp.metric.capitalize()} x 100 on the {cmp.split} split "
          f"({len(cmp.entries)} models, {len(cmp.tasks)} tasks{left_out})")
    print(comparison_table(cmp))
    if args.markdown:
        atomic_write_text(args.markdown, markdown_report(cmp, args.title))
    if args.html:
        atomic_write_text(args.html, html_report(cmp, args.title))
    if args.plot:
        save_plot(cmp, args.plot)
    if args.speed_plot:
        save_speed_plot(cmp, args.speed_plot)
    for what, path in (("Markdown", args.markdown), ("HTML", args.html), ("plot", args.plot),
                       ("speed plot", args.speed_plot)):
        if path:
            print(f"[{what}: {path}]")
    return 0
