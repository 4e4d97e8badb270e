"""``embedkit bench``: Spearman of cosine similarity on the STS tasks."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

from embedkit.cli.common import (
    FORCE_POST_FILE,
    add_classify_option,
    add_data_options,
    add_max_length,
    add_model_options,
    add_poolings_and_tasks,
    add_post_options,
    add_progress,
    add_protocol,
    add_similarity_option,
    add_splits,
    check_output_dir,
    check_output_path,
    data_options,
    encoder_config,
    post_options,
    write_json,
)
from embedkit.cli.parsing import split_list, split_models, split_poolings
from embedkit.errors import ConfigError
from embedkit.io.atomic import atomic_write_text
from embedkit.io.tables import text_table
from embedkit.runs.choices import FORMATS


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bench", help="benchmark an encoder on the STS tasks",
        description="Encode the tasks' sentences, score cosine similarity against the labels "
                    "(Spearman x 100) and print a table; --output writes the full JSON record.",
        )
    add_model_options(p, several=True)
    add_poolings_and_tasks(p)
    add_splits(p)
    add_protocol(p)
    add_max_length(p)
    add_data_options(p)
    add_post_options(p, force=FORCE_POST_FILE)
    add_similarity_option(p)
    add_classify_option(p, "valid (AFQMC: train)", "the evaluated split")
    p.add_argument("--similarities", default="cosine", metavar="NAMES",
                   help="with --classify: cosine, dot, euclidean (comma-separated)")
    p.add_argument("--ci", nargs="?", type=int, const=1000, default=0, metavar="N",
                   help="bootstrap 95%% intervals over pairs with N resamples (default 1000)")
    p.add_argument("--ci-seed", type=int, default=0, metavar="SEED",
                   help="seed of the resamples and of the selection split's sample")
    p.add_argument("--plots", metavar="DIR",
                   help="with --predictions: one PNG per binary task/split, the cosine "
                        "histograms by label of every row with its threshold")
    p.add_argument("--output", metavar="FILE.json", help="write the JSON record here")
    p.add_argument("--markdown", nargs="?", const="-", metavar="FILE.md",
                   help="print a Markdown report instead of the table (or write it to FILE.md)")
    p.add_argument("--mteb-results", metavar="DIR",
                   help="also write every row x task as mteb TaskResult files, DIR being "
                        "mteb's cache folder (DIR/results/<org>__<model>[_(<settings>)]/"
                        "<revision>/<Task>.json; read them with "
                        "mteb.ResultCache(cache_path=DIR).load_results() or "
                        "'embedkit compare DIR')")
    p.add_argument("--mteb-tasks", metavar="NAMES",
                   help="also run these mteb tasks (comma-separated: classification, clustering, "
                        "pair classification, reranking, retrieval ...) by mteb's evaluator on "
                        "every row; without --tasks only these. Needs the hub or the data in "
                        "the datasets cache; --post chains are fitted on the task's texts "
                        "(--fit-on task) or on --fit-on FILE|TASK[:SPLIT]; --mteb-results DIR "
                        "keeps mteb's own files")
    p.add_argument("--predictions", metavar="DIR",
                   help="also write every pair with its gold label and cosine, per row, task "
                        "and split, under DIR (DIR/<row>/<task>/<split>.parquet or .jsonl, and "
                        "DIR/predictions.json); the vectors come from the cache (with "
                        "--no-cache they are encoded again)")
    p.add_argument("--predictions-format", choices=FORMATS, default="auto",
                   help="predictions files: auto (Parquet when pyarrow is installed, else JSON "
                        "lines), jsonl or parquet (default: auto)")
    add_progress(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from embedkit.data import parse_tasks

    parse_tasks(args.tasks)  # an unknown task fails here, before torch and the encoders load
    from embedkit.encoders import as_encoder
    from embedkit.evaluation import UndefinedScoreWarning
    from embedkit.reports.bench import markdown_report
    from embedkit.runs.bench import bench_blocks, run_bench, run_bench_models
    from embedkit.runs.pair_extras import PairExtras
    from embedkit.runs.predictions import row_folder

    check_output_path(args.output, "output", stdout_ok=True)
    check_output_path(args.markdown, "markdown", stdout_ok=True)
    check_output_dir(args.mteb_results, "mteb_results")
    check_output_dir(args.predictions, "predictions")
    if args.plots and not args.predictions:
        raise ConfigError("--plots draws from the predictions files: give --predictions DIR")
    models = split_models(args.model)
    if len(models) > 1 or "," in models[0]:
        check_model_names(models)
    configs = [encoder_config(args, model=m) for m in models]
    mteb_tasks = _mteb_tasks(args, len(configs))
    # --predictions (and --mteb-tasks) encode again through the same encoder (its cache
    # answers): build it once
    encoder = (as_encoder(configs[0]) if (args.predictions or mteb_tasks) and len(configs) == 1
               else None)
    options = dict(protocol=args.protocol, max_length=args.max_length, data=data_options(args),
                   post=post_options(args),
                   command=args.command_line, similarity=args.similarity,
                   extras=PairExtras(classify=args.classify, ci=args.ci, seed=args.ci_seed,
                                     similarities=tuple(split_list(args.similarities))))
    with warnings.catch_warnings():
        # said once per task and split below, from the record
        warnings.simplefilter("ignore", UndefinedScoreWarning)
        poolings, splits = split_poolings(args.pooling), split_list(args.splits) or None
        sts = None  # without --tasks, --mteb-tasks runs only mteb's tasks
        if args.tasks or not mteb_tasks:
            sts = (run_bench(encoder or configs[0], poolings, args.tasks, splits, **options)
                   if len(configs) == 1 else
                   run_bench_models(configs, poolings, args.tasks, splits, **options))
    record = (_run_mteb(args, encoder, poolings, mteb_tasks, sts) if mteb_tasks or sts is None
              else sts)
    _say_notes(bench_blocks(record))
    if args.output:
        write_json(args.output, record)
    _write_extras(args, record, encoder)
    if args.plots:
        from embedkit.reports.bench import histogram_plots

        blocks = bench_blocks(record)
        for block in blocks:
            name = block["model"]["name"]
            pred = (Path(args.predictions) / row_folder(name) if len(blocks) > 1
                    else Path(args.predictions))
            paths = histogram_plots(block, pred, Path(args.plots) / (
                row_folder(name) if len(blocks) > 1 else ""))
            print(f"embedkit: plots: {len(paths)} histograms in {args.plots}", file=sys.stderr)
    if args.markdown and args.markdown != "-":
        atomic_write_text(args.markdown, markdown_report(record))
    if args.markdown == "-":
        print(markdown_report(record))
    else:
        if record["settings"].get("tasks") or not record.get("mteb"):  # not mteb tasks alone
            _print_table(record)
        _print_classification(record)
        _print_mteb(record)
    return 0


def _mteb_tasks(args, n_models: int) -> list:
    """``--mteb-tasks`` as mteb task objects, every name checked before anything is encoded."""
    names = split_list(args.mteb_tasks)
    if not names:
        return []
    if n_models > 1:
        raise ConfigError("--mteb-tasks runs one model at a time: give one --model")
    if args.predictions and not args.tasks:
        raise ConfigError("--predictions writes the pairs of STS tasks: give --tasks too (mteb "
                          "tasks keep mteb's own files: --mteb-results DIR)")
    from embedkit.runs.mteb_tasks import get_mteb_tasks

    return get_mteb_tasks(names)


def _run_mteb(args, encoder, poolings, tasks: list, record: dict | None) -> dict:
    from embedkit.runs.mteb_tasks import run_mteb_tasks

    return run_mteb_tasks(encoder, poolings, tasks, record=record, post=args.post,
                          fit_on=args.fit_on, fit_unique=args.fit_unique, force=args.force,
                          max_length=args.max_length, data=data_options(args),
                          cache_path=args.mteb_results, command=args.command_line)


def _print_mteb(record: dict) -> None:
    from embedkit.reports.bench import mteb_rows, run_title

    if record.get("mteb"):
        header, rows = mteb_rows(record)
        print(f"\n{run_title(record)}: mteb tasks, main score x 100 (mteb's evaluator)")
        print(text_table(header, rows))
        t = record.get("timings") or {}
        if not record["settings"].get("tasks"):
            print(f"[{t.get('encoded', 0)} encoded in {t.get('seconds_encoding', 0):.1f} s; "
                  f"total {t.get('seconds_total', 0):.1f} s]")


def _print_classification(record: dict) -> None:
    from embedkit.reports.bench import classification_rows
    from embedkit.runs.bench import bench_blocks

    for block in bench_blocks(record):
        header, rows = classification_rows(block)
        if rows:
            print(f"\n{block['model']['name']}: pair classification x 100 (cosine; thresholds "
                  "chosen on the selection split)")
            print(text_table(header, rows))


def check_model_names(models: list[str]) -> None:
    """Before the first model runs: a name that is a path (it holds a path separator or starts
    with ``.`` or ``~``) must be an existing folder, so a typo in the last of several models
    does not cost the others' encoding."""
    for name in models:
        path = Path(name).expanduser()
        if "," in name and not path.exists():
            raise ConfigError(f"model {name!r}: not a folder, and not a comma list of models "
                              "(each part an existing folder, an alias or a hub id org/name); "
                              "repeat --model for each model, or check the path", param="model")
        looks_local = name.startswith((".", "~", os.sep)) or name.count("/") > 1
        if looks_local and not path.is_dir():
            raise ConfigError(f"model {name!r}: no such folder (and not a hub id such as "
                              "org/name); check the path", param="model")


def _say_notes(blocks: list[dict]) -> None:
    """Skipped rows (the data is the same for every model) and undefined scores, on stderr."""
    from embedkit.evaluation import undefined_message

    for task, splits in blocks[0]["data"].items():
        for split, d in splits.items():
            if split != "fit" and d["skipped"]:
                print(f"embedkit: {task}/{split}: skipped {d['skipped']} invalid rows",
                      file=sys.stderr)
    for block in blocks:
        prefix = f"{block['model']['name']}: " if len(blocks) > 1 else ""
        said = dict.fromkeys((u["task"], u["split"], u["reason"])
                             for u in block.get("undefined", ()))
        for task, split, reason in said:
            print(f"embedkit: warning: {prefix}{undefined_message(task, split, reason)}; the "
                  "averages that include it are undefined (shown as -)", file=sys.stderr)


def _print_table(record: dict) -> None:
    """The title, the table (one block of rows per model) and one timings line per model."""
    from embedkit.reports.bench import data_line, format_table, run_title
    from embedkit.runs.bench import bench_blocks

    blocks = bench_blocks(record)
    protocol = blocks[0]["settings"]["protocol"]
    if len(blocks) == 1 and record.get("kind") == "bench":
        print(f"{run_title(record)}: Spearman x 100 ({protocol} protocol)")
    else:
        print(f"Spearman x 100 ({protocol} protocol): "
              + ", ".join(run_title(b) for b in blocks))
    print(format_table(record))
    for block in blocks:
        t = block["timings"]
        prefix = f"{block['model']['name']}: " if len(blocks) > 1 else ""
        print(f"[{prefix}{t['unique_sentences']} unique sentences, {t['cache_hits']} cached, "
              f"{t['encoded']} encoded in {t['seconds_encoding']:.1f} s; "
              f"total {t['seconds_total']:.1f} s]")
    if data_line(record):
        print(f"[{data_line(record)}]")


def _write_extras(args, record: dict, encoder) -> None:
    """``--mteb-results`` and ``--predictions``, each announced on one stderr line; with several
    models, predictions go under DIR/<model>/ (each model's encoder built again: its cache
    answers)."""
    from embedkit.encoders import as_encoder
    from embedkit.integrations.mteb_results import result_folder, write_mteb_results
    from embedkit.runs.bench import bench_blocks
    from embedkit.runs.predictions import bench_predictions, row_folder

    blocks = bench_blocks(record)
    if args.mteb_results:
        paths = [p for block in blocks for p in write_mteb_results(block, args.mteb_results)]
        mteb = record.get("mteb") or {}  # --mteb-tasks: mteb.evaluate wrote its own files
        names = {result_folder("", m, "r").parent.name
                 for m in (mteb.get("model_names") or {}).values()}
        n_files = len(paths) + len(names) * len(mteb.get("tasks") or {})
        folders = len({p.parent.parent.name for p in paths} | names)
        print(f"embedkit: mteb results: {n_files} task files in {folders} model folders "
              f"under {Path(args.mteb_results) / 'results'} (mteb.ResultCache(cache_path="
              f"{str(args.mteb_results)!r}))", file=sys.stderr)
    if args.predictions:
        n = 0
        for block in blocks:
            name = block["model"]["name"]
            out = (Path(args.predictions) / row_folder(name) if len(blocks) > 1
                   else Path(args.predictions))
            enc = encoder or as_encoder(encoder_config(args, model=name))
            summary = bench_predictions(out, enc, block, data=data_options(args),
                                        fmt=args.predictions_format)
            n += sum(len(by_split) for rows in summary["rows"].values()
                     for by_split in rows.values())
        index = "predictions.json" if len(blocks) == 1 else "<model>/predictions.json"
        print(f"embedkit: predictions: {n} files under {args.predictions} (index: "
              f"{Path(args.predictions) / index})", file=sys.stderr)
