"""``embedkit index build|add|search|eval``: FAISS indexes over sentence embeddings.

The work is done in :mod:`embedkit.retrieval.folder` and :mod:`embedkit.runs.index_eval`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from embedkit.aliases import JSONDict
from embedkit.cli.common import (
    FORCE_POST_FILE,
    PROTOCOL_MAX_LENGTH,
    RECIPE_CHECK,
    add_cache_options,
    add_data_options,
    add_faiss_threads,
    add_fit_on,
    add_force,
    add_max_length,
    add_model_name,
    add_model_options,
    add_out,
    add_pooling,
    add_post,
    add_post_options,
    add_progress,
    add_protocol,
    add_record_outputs,
    add_seed,
    add_splits,
    check_output_dir,
    check_output_path,
    data_options,
    defaults_line,
    encoder_config,
    locked_error,
    positive_int,
    post_options,
    thread_count,
    write_json,
)
from embedkit.cli.index_codes import add_index_codes, index_codes, print_choice
from embedkit.cli.parsing import parse_int_list, split_factories, split_list
from embedkit.errors import ConfigError, DataError
from embedkit.io.atomic import LOCK_TIMEOUT, FolderLockedError, atomic_write_text
from embedkit.io.textfile import read_sentences

if TYPE_CHECKING:  # the library is imported where the work is
    from embedkit.encoders import EncoderConfig
    from embedkit.runs import index_eval
    from embedkit.store.recipe import RecipeConflictError

_FMT = argparse.HelpFormatter


def _add_cache_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default: cpu)")
    p.add_argument("--batch-size", type=positive_int, default=64, metavar="N",
                   help="sentences per forward pass (default: 64)")
    add_cache_options(p)
    p.add_argument("--threads", type=thread_count, metavar="N",
                   help="intra-op threads of the encoder (default: the cores available)")


def _add_lock_timeout(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lock-timeout", type=float, default=LOCK_TIMEOUT, metavar="SECONDS",
                   help="how long to wait while another process writes the same index folder "
                        f"(default: {LOCK_TIMEOUT:g})")


def _add_progress(p: argparse.ArgumentParser) -> None:
    add_progress(p, bars="progress bars (default: on a terminal, for large inputs)")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "index", help="build, grow, search and evaluate FAISS indexes",
        description="FAISS indexes over sentence embeddings. An index folder carries its recipe "
                    "(model, pooling, max length, postprocessor) in index.json; search and add "
                    "encode with it.")
    isub = p.add_subparsers(dest="index_command", metavar="ACTION")
    isub.required = True
    _add_build(isub)
    _add_add(isub)
    _add_search(isub)
    _add_eval(isub)


def _add_build(isub) -> None:
    b = isub.add_parser(
        "build", help="encode a corpus and build an index folder", formatter_class=_FMT,
        description="Encode a corpus (one text a line, or the unique sentences of task splits), "
                    "fit the postprocessor on it (or check a transform file), bake the map into "
                    "a FAISS index and save the folder (index.faiss, texts.jsonl, index.json, "
                    "post.safetensors).")
    add_model_options(b, retrieval_prompts=True)
    add_pooling(b, default="the model's own, else cls")
    add_post(b)
    src = b.add_mutually_exclusive_group(required=True)
    src.add_argument("--corpus", metavar="FILE",
                     help="UTF-8 text file, one text a line (blank lines skipped)")
    src.add_argument("--corpus-task", metavar="TASK[:SPLIT],...",
                     help="the unique sentences of these task splits, e.g. LCQMC:test,BQ:test")
    src.add_argument("--embeddings", metavar="DIR",
                     help="an encode folder (embedkit encode): index its shards without "
                          "re-encoding; the recipe comes from its manifest (--post: a transform "
                          "file fitted on them, e.g. by whiten --embeddings DIR)")
    b.add_argument("--ids", metavar="FILE",
                   help="one id a line, aligned line by line with --corpus")
    b.add_argument("--factory", default="Flat",
                   help="FAISS factory string: Flat, IVF1024,Flat, HNSW32, IVF1024,PQ32, ...")
    b.add_argument("--metric", choices=("cosine", "ip", "l2"),
                   help="index metric (default: the model folder's declared similarity: "
                        "cosine, dot -> ip, euclidean -> l2; else cosine)")
    add_max_length(b, 64)
    add_fit_on(b, "corpus", unique=False)
    b.add_argument("--train-size", type=int, metavar="N",
                   help="vectors sampled to train IVF/PQ (default: 40 x nlist, at least 10000)")
    add_seed(b, "the training sample")
    b.add_argument("--on-disk", action="store_true",
                   help="with an IVF factory: keep the inverted lists on disk (lists.ivfdata in "
                        "the folder, memory-mapped when searched)")
    add_force(b, FORCE_POST_FILE)
    add_out(b, "index folder (replaced whole)", metavar="DIR")
    add_index_codes(b)  # --vectors, --rescore, --max-memory ... (cli/index_codes.py)
    add_data_options(b)
    _add_lock_timeout(b)
    _add_progress(b)
    b.set_defaults(func=_run_build)


def _add_add(isub) -> None:
    a = isub.add_parser(
        "add", help="append new texts to an index folder", formatter_class=_FMT,
        description="Encode new texts with the index's recipe and append those not yet in it.")
    a.add_argument("--index", required=True, metavar="DIR")
    a.add_argument("--corpus", required=True, metavar="FILE", help="one text a line")
    a.add_argument("--ids", metavar="FILE", help="one id a line, aligned with --corpus")
    a.add_argument("--force", action="store_true",
                   help="encode even if the model's weights changed since the build")
    _add_cache_options(a)
    _add_lock_timeout(a)
    _add_progress(a)
    a.set_defaults(func=_run_add)


def _add_search(isub) -> None:
    s = isub.add_parser(
        "search", help="search an index folder", formatter_class=_FMT,
        description="Encode queries with the index's recipe and print one JSON line per query: "
                    '{"query": ..., "hits": [{"id", "text", "score"}, ...]} (plus "user_id" '
                    "for indexes built with --ids).")
    s.add_argument("--index", required=True, metavar="DIR")
    q = s.add_mutually_exclusive_group(required=True)
    q.add_argument("--query", help="one query")
    q.add_argument("--queries", metavar="FILE", help="one query a line")
    s.add_argument("-k", type=int, default=10, help="hits per query")
    s.add_argument("--nprobe", type=int,
                   help="IVF lists to visit (default: the one stored at build time)")
    s.add_argument("--ef-search", type=int,
                   help="HNSW search breadth (default: the one stored at build time)")
    s.add_argument("--output", metavar="FILE", help="write the JSON lines here (default: stdout)")
    add_model_name(s, default_text=RECIPE_CHECK)
    add_pooling(s, default=RECIPE_CHECK)
    add_post(s, default=RECIPE_CHECK + "; the index's own postprocessor is baked in and always "
                                       "used")
    add_max_length(s, default_text=RECIPE_CHECK)
    s.add_argument("--force", action="store_true",
                   help="use --model/--pooling/--max-length even where they differ from the "
                        "recipe")
    _add_cache_options(s)
    s.set_defaults(func=_run_search)


def _add_eval_quality(e: argparse.ArgumentParser) -> None:
    e.add_argument("--tasks", help="quality part: comma-separated tasks (TASK or TASK:SPLIT)")
    add_splits(e, dest="split", what=" of --tasks")
    e.add_argument("--both-directions", action="store_true",
                   help="sentence2 of a positive pair is a query too")
    e.add_argument("--threshold", type=float,
                   help="label from which a pair is positive (default: from the label range)")
    add_post_options(e, default="the raw row only; it is always shown, as is a 'none' value")
    e.add_argument("--index", dest="index_dir", metavar="DIR",
                   help="score this index folder (built by index build) on retrieval tasks "
                        "read from files: its recipe encodes the queries; its ids must be the "
                        "corpus' _id values")
    e.add_argument("--predictions", metavar="DIR",
                   help="write each row's per-query metrics (retrieval tasks read from files) "
                        "under DIR/<row>/<task>/<split>.jsonl")
    e.add_argument("--csls", action="store_true",
                   help="also a CSLS-re-ranked row after each row (hubness reduction: "
                        "2 cos(q, c) - r(c), r(c) the mean cosine of c to its corpus "
                        "neighbours)")
    e.add_argument("--csls-k", type=positive_int, default=10, metavar="K",
                   help="corpus neighbours in the CSLS penalty r(c)")
    e.add_argument("--csls-candidates", type=positive_int, default=100, metavar="N",
                   help="top hits of the plain search re-ranked by CSLS")


def _add_eval_cost(e: argparse.ArgumentParser) -> None:
    e.add_argument("--cost-corpus-tasks", metavar="TASK[:SPLIT],...",
                   help="cost part: corpus = unique sentences of these splits")
    e.add_argument("--factory", action="append", metavar="FACTORY",
                   help="FAISS factory of the cost part, one per flag (default: Flat, "
                        "IVF1024,Flat, HNSW32, IVF1024,PQ64); Flat is always included")
    e.add_argument("--factories", metavar="LIST",
                   help="several factories in one value: 'Flat;IVF1024,Flat;HNSW32' (';' is "
                        "unambiguous; a comma list is grouped: IVF1024,Flat stays together)")
    e.add_argument("--nprobe", default="1,8,32,64", help="IVF nprobe values, comma-separated")
    e.add_argument("--ef-search", default="16,64,128,256",
                   help="HNSW efSearch values, comma-separated")
    e.add_argument("--num-queries", "--queries", dest="queries", type=int, default=2000,
                   metavar="N", help="corpus sentences sampled (seeded) as cost queries "
                                     "(--queries: the older spelling)")
    e.add_argument("--single-queries", type=int, metavar="N",
                   help="queries timed one at a time for QPS single (default: 200)")
    add_seed(e, "the cost queries' sample")
    e.add_argument("--cost-post", metavar="CHAIN|FILE",
                   help="postprocessor baked into the cost indexes (fitted on the cost corpus)")


def _add_eval(isub) -> None:
    e = isub.add_parser(
        "eval", help="retrieval quality on the STS sets and the cost of approximate indexes",
        formatter_class=_FMT,
        description="Quality (--tasks): STS pairs as retrieval (positives: label >= 1 on binary "
                    "sets, >= 4 on 0-5 ones), recall@1/5/10, MRR@10, nDCG@10 of the raw vectors "
                    "and each --post chain. Cost (--cost-corpus-tasks): recall@10 against exact "
                    "search, QPS, build time and size of each --factory and search setting.")
    add_model_options(e, retrieval_prompts=True)
    add_pooling(e)
    add_protocol(e)
    add_max_length(e, default_text=PROTOCOL_MAX_LENGTH + "; cost part: 64")
    e.add_argument("--metric", default="cosine", choices=("cosine", "ip", "l2"))
    e.add_argument("-k", type=int, default=10, help="cut-off of the metrics")
    _add_eval_quality(e)
    _add_eval_cost(e)
    add_force(e, FORCE_POST_FILE)
    add_faiss_threads(e)
    add_data_options(e)
    add_record_outputs(e)
    _add_progress(e)
    e.set_defaults(func=_run_eval)


def _run_config(args: argparse.Namespace) -> EncoderConfig:
    """How to run the encoder an index's recipe names (the recipe gives the model)."""
    from embedkit.encoders import EncoderConfig

    return EncoderConfig(device=args.device, batch_size=args.batch_size,
                         cache=not args.no_cache, cache_dir=args.cache_dir,
                         progress=getattr(args, "progress", None), threads=args.threads)


def _build_source(args) -> tuple[list[str] | Path, list[str | None] | None, JSONDict | None]:
    """What ``index build`` indexes: the texts of --corpus / --corpus-task (their ids and
    corpus entry), or the encode folder of --embeddings."""
    from embedkit.data.corpus import corpus_from_tasks, read_corpus

    if args.embeddings is not None:
        if args.pooling or args.ids:
            raise ConfigError("with --embeddings the pooling comes from the encode folder's "
                              "manifest (and the ids from its shards): drop --pooling and --ids")
        return Path(args.embeddings), None, None
    if args.corpus is not None:
        texts, ids, info = read_corpus(args.corpus, args.ids)
    else:
        if args.ids:
            raise ConfigError("--ids goes with --corpus FILE, not --corpus-task")
        data = data_options(args)
        texts, info = corpus_from_tasks(split_list(args.corpus_task), data_dir=data.data_dir,
                                        source=data.source, skip_invalid=data.skip_invalid)
        ids = None
    if not texts:
        print("embedkit: warning: the corpus is empty; the index will hold no texts",
              file=sys.stderr)
    return texts, ids, info


def _run_build(args) -> int:
    from embedkit.retrieval.folder import build_index

    check_output_dir(args.out, "out")
    source, ids, info = _build_source(args)
    try:
        if isinstance(source, Path):
            config, query_prompt, options = None, None, {}
        else:
            (config, query_prompt), options = _side_config(args), dict(
                pooling=args.pooling, ids=ids, corpus_info=info, max_length=args.max_length,
                fit_on=args.fit_on, progress=args.progress)
        index = build_index(
            args.out, source, config, post=args.post, query_prompt=query_prompt,
            factory=args.factory, metric=args.metric, train_size=args.train_size,
            seed=args.seed, on_disk=args.on_disk, force=args.force,
            lock_timeout=args.lock_timeout, index_codes=index_codes(args), **options)
    except FolderLockedError as err:
        raise locked_error(err) from None
    print_choice(index)
    r = index.recipe
    post = f", post {r['post']}" if r.get("post") else ""
    what = (f"texts from {args.embeddings}" if isinstance(source, Path) else
            f"texts ({len(source) - index.ntotal} duplicates skipped)")
    print(f"indexed {index.ntotal} {what} into {args.out}: {index.factory}, {index.metric}, "
          f"{index.dim_in} -> {index.dim} dims{post}"
          f"{', lists on disk' if args.on_disk else ''}; built in {index.build_seconds:.2f} s")
    if defaults_line(index.recipe):
        print(defaults_line(index.recipe))
    return 0


def _run_add(args) -> int:
    from embedkit.data.corpus import read_corpus
    from embedkit.retrieval.folder import add_to_index

    texts, ids, info = read_corpus(args.corpus, args.ids)
    try:
        res = add_to_index(args.index, texts, _run_config(args), ids=ids, corpus_info=info,
                           force=args.force, lock_timeout=args.lock_timeout)
    except FolderLockedError as err:
        raise locked_error(err) from None
    print(f"added {res['added']}, skipped {res['skipped']} already indexed; "
          f"{res['ntotal']} texts in {args.index}")
    return 0


def _conflict_error(err: RecipeConflictError) -> ConfigError:
    """The conflicts in the command line's words: the options that asked for each setting."""
    from embedkit.store.recipe import show_value

    given = [c.describe(f"--{c.key.replace('_', '-')} {show_value(c.requested)}")
             for c in err.conflicts]
    return ConfigError("; ".join(given) + "; use the index's recipe or --force")


def _queries(args: argparse.Namespace) -> list[str]:
    """The queries to search: --query, or the non-blank lines of --queries."""
    if args.query is not None:
        if not args.query.strip():
            raise ConfigError("--query is empty; give text to search for")
        return [args.query]
    queries = read_sentences(args.queries, "queries")
    if not queries:
        raise DataError("no queries: the file is empty or holds only blank lines (one query a "
                        "line)", path=args.queries)
    return queries


def _run_search(args) -> int:
    from embedkit.retrieval.folder import IndexSearcher
    from embedkit.store.recipe import RecipeConflictError

    check_output_path(args.output, "output")
    queries = _queries(args)
    try:
        searcher = IndexSearcher(args.index, _run_config(args), model=args.model,
                                 pooling=args.pooling, post=args.post,
                                 max_length=args.max_length, force=args.force)
    except RecipeConflictError as err:
        raise _conflict_error(err) from None
    results = searcher.search(queries, args.k, nprobe=args.nprobe, ef_search=args.ef_search)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results)
    if args.output:
        atomic_write_text(args.output, text)
    else:
        sys.stdout.write(text)
    return 0


def _eval_options(args: argparse.Namespace) -> index_eval.IndexEvalOptions:
    from embedkit.runs import index_eval

    factories = split_factories(args.factory) + split_factories(args.factories)
    quality = index_eval.QualityOptions(
        tasks=tuple(split_list(args.tasks)), splits=tuple(split_list(args.split)),
        both_directions=args.both_directions, threshold=args.threshold,
        csls=args.csls, csls_k=args.csls_k,
        csls_candidates=args.csls_candidates, index_dir=args.index_dir,
        predictions=args.predictions)
    cost = index_eval.CostOptions(
        corpus_tasks=tuple(split_list(args.cost_corpus_tasks)),
        factories=tuple(dict.fromkeys(factories)) or index_eval.DEFAULT_FACTORIES,
        nprobes=tuple(parse_int_list(args.nprobe, "--nprobe")),
        ef_searches=tuple(parse_int_list(args.ef_search, "--ef-search")),
        n_queries=args.queries, seed=args.seed, post=args.cost_post,
        single_queries=args.single_queries)
    return index_eval.IndexEvalOptions(
        quality=quality, cost=cost, pooling=args.pooling, protocol=args.protocol,
        max_length=args.max_length, metric=args.metric, k=args.k, post=post_options(args),
        faiss_threads=args.faiss_threads, data=data_options(args))


def _side_config(args: argparse.Namespace) -> tuple[EncoderConfig, str]:
    """The passages' encoder settings and the queries' prompt (--query-prompt,
    --passage-prompt, else --prompt, else what the model folder declares)."""
    from embedkit.encoders import resolve_model_path
    from embedkit.encoders.prompts import side_prompts

    config = encoder_config(args)
    query_prompt, passage_prompt = side_prompts(
        resolve_model_path(config.model), query=args.query_prompt,
        passage=args.passage_prompt, prompt=args.prompt, instruction=args.instruction)
    return dataclasses.replace(config, prompt=passage_prompt, instruction=None), query_prompt


def _run_eval(args) -> int:
    from embedkit.reports import index_eval as index_report
    from embedkit.reports.bench import data_line, run_title
    from embedkit.runs import index_eval

    if not args.tasks and not args.cost_corpus_tasks:
        raise ConfigError("nothing to evaluate: give --tasks (quality) and/or "
                          "--cost-corpus-tasks (cost)")
    check_output_path(args.output, "output", stdout_ok=True)
    check_output_path(args.markdown, "markdown")
    config, query_prompt = _side_config(args)
    record = index_eval.run_index_eval(config, dataclasses.replace(
        _eval_options(args), query_prompt=query_prompt),
                                       command=args.command_line)
    name = run_title(record)
    if record["quality"]:
        print(f"{name}: retrieval quality x 100 (exact search, {record['settings']['metric']})")
        print(index_report.format_quality_table(record["quality"], args.k))
    if record["cost"]:
        if record["quality"]:
            print()
        c = record["cost"]
        print(f"{name}: cost of approximate search ({c['n_corpus']} texts, {c['n_queries']} "
              "queries)")
        print(index_report.format_cost_table(c))
    if data_line(record):
        print(f"[{data_line(record)}]")
    if args.output:
        write_json(args.output, record)
    if args.markdown:
        atomic_write_text(args.markdown, index_report.markdown_eval_report(record))
    return 0
