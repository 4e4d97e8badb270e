"""``embedkit bench``: Spearman of cosine similarity on the STS tasks."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from embedkit.cli.common import (
    add_data_options,
    add_model_options,
    add_poolings_and_tasks,
    check_output_dir,
    check_output_path,
    data_options,
    encoder_config,
    write_json,
)
from embedkit.cli.parsing import split_list, split_poolings
from embedkit.encoders import as_encoder
from embedkit.evaluation import UndefinedScoreWarning, undefined_message
from embedkit.experiments.bench import PostOptions, run_bench
from embedkit.experiments.mteb_results import write_mteb_results
from embedkit.experiments.predictions import FORMATS, bench_predictions
from embedkit.experiments.report import format_table, markdown_report
from embedkit.io.atomic import atomic_write_text


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bench", help="benchmark an encoder on the STS tasks",
        description="Encode the tasks' sentences, score cosine similarity against the labels "
                    "(Spearman x 100) and print a table; --output writes the full JSON record.",
        )
    add_model_options(p)
    add_poolings_and_tasks(p)
    p.add_argument("--splits", help="comma-separated splits (default: the protocol's; test)")
    p.add_argument("--protocol", default="whitening", choices=("whitening", "cmteb"))
    p.add_argument("--max-length", type=int,
                   help="override the protocol's max length (tokens, counting [CLS] and [SEP])")
    add_data_options(p)
    p.add_argument("--post", action="append", default=[], metavar="CHAIN",
                   help="postprocessor chain, e.g. whiten:beta=1,gamma=1,k=256 or pca:k=128 or "
                        "file:W.safetensors; repeat for several rows")
    p.add_argument("--fit-on", default="task", metavar="WHAT",
                   help="what --post is fitted on: task (every split of the task), train, "
                        "valid, test, or a file with one sentence a line")
    p.add_argument("--fit-unique", action="store_true",
                   help="fit on unique sentences instead of every occurrence")
    p.add_argument("--force", action="store_true",
                   help="use a --post file: map even if it was fitted for another model, "
                        "pooling or dimension (a warning instead of an error)")
    p.add_argument("--output", metavar="FILE.json", help="write the JSON record here")
    p.add_argument("--markdown", nargs="?", const="-", metavar="FILE.md",
                   help="print a Markdown report instead of the table (or write it to FILE.md)")
    p.add_argument("--mteb-results", metavar="DIR",
                   help="also write every row x task as mteb TaskResult files under DIR "
                        "(mteb's layout: DIR/<org>__<model>/<revision>/experiments/<x>/"
                        "<Task>.json; read them with mteb or 'embedkit compare DIR')")
    p.add_argument("--predictions", metavar="DIR",
                   help="also write every pair with its gold label and cosine, per row, task "
                        "and split, under DIR (DIR/<row>/<task>/<split>.parquet or .jsonl, and "
                        "DIR/predictions.json); the vectors come from the cache (with "
                        "--no-cache they are encoded again)")
    p.add_argument("--predictions-format", choices=FORMATS, default="auto",
                   help="predictions files: auto (Parquet when pyarrow is installed, else JSON "
                        "lines), jsonl or parquet (default: auto)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: on a terminal)")
    p.set_defaults(func=run)


def run(args) -> int:
    check_output_path(args.output, "output", stdout_ok=True)
    check_output_path(args.markdown, "markdown", stdout_ok=True)
    check_output_dir(args.mteb_results, "mteb_results")
    check_output_dir(args.predictions, "predictions")
    # --predictions encodes again through the same encoder (its cache answers): build it once
    encoder = as_encoder(encoder_config(args)) if args.predictions else encoder_config(args)
    with warnings.catch_warnings():
        # said once per task and split below, from the record
        warnings.simplefilter("ignore", UndefinedScoreWarning)
        record = run_bench(
            encoder, split_poolings(args.pooling), args.tasks,
            split_list(args.splits) or None, protocol=args.protocol,
            max_length=args.max_length, data=data_options(args),
            post=PostOptions(tuple(args.post), args.fit_on, args.fit_unique, args.force),
            command=args.command_line)
    for task, splits in record["data"].items():
        for split, d in splits.items():
            if split != "fit" and d["skipped"]:
                print(f"embedkit: {task}/{split}: skipped {d['skipped']} invalid rows",
                      file=sys.stderr)
    said = dict.fromkeys((u["task"], u["split"], u["reason"]) for u in record.get("undefined", ()))
    for task, split, reason in said:
        print(f"embedkit: warning: {undefined_message(task, split, reason)}; the averages that "
              "include it are undefined (shown as -)", file=sys.stderr)
    if args.output:
        write_json(args.output, record)
    _write_extras(args, record, encoder)
    if args.markdown and args.markdown != "-":
        atomic_write_text(args.markdown, markdown_report(record))
    if args.markdown == "-":
        print(markdown_report(record))
    else:
        t = record["timings"]
        print(f"{record['model']['name']}: Spearman x 100 ({record['settings']['protocol']} "
              f"protocol)")
        print(format_table(record))
        print(f"[{t['unique_sentences']} unique sentences, {t['cache_hits']} cached, "
              f"{t['encoded']} encoded in {t['seconds_encoding']:.1f} s; "
              f"total {t['seconds_total']:.1f} s]")
    return 0


def _write_extras(args, record: dict, encoder) -> None:
    """``--mteb-results`` and ``--predictions``, each announced on one stderr line."""
    if args.mteb_results:
        paths = write_mteb_results(record, args.mteb_results)
        folders = len({p.parent for p in paths})
        print(f"embedkit: mteb results: {len(paths)} task files in {folders} experiment "
              f"folders under {args.mteb_results}", file=sys.stderr)
    if args.predictions:
        summary = bench_predictions(args.predictions, encoder, record, data=data_options(args),
                                    fmt=args.predictions_format)
        n = sum(len(by_split) for rows in summary["rows"].values() for by_split in rows.values())
        print(f"embedkit: predictions: {n} files under {args.predictions} (index: "
              f"{Path(args.predictions) / 'predictions.json'})", file=sys.stderr)
