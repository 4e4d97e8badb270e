"""``embedkit index build|add|search|eval``: FAISS indexes over sentence embeddings.

The work is done in :mod:`embedkit.retrieval.folder` and :mod:`embedkit.experiments.index_eval`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import TYPE_CHECKING

from embedkit.cli.common import (
    add_cache_options,
    add_data_options,
    add_model_options,
    check_output_dir,
    check_output_path,
    data_options,
    defaults_line,
    encoder_config,
    locked_error,
    positive_int,
    thread_count,
    write_json,
)
from embedkit.cli.encode_cmd import add_embeddings_source, run_build_from_embeddings
from embedkit.cli.index_codes import add_index_codes, index_codes, print_choice
from embedkit.cli.parsing import parse_int_list, split_factories, split_list
from embedkit.errors import ConfigError, DataError
from embedkit.io.atomic import LOCK_TIMEOUT, FolderLockedError, atomic_write_text
from embedkit.io.textfile import read_sentences

if TYPE_CHECKING:  # the library is imported where the work is
    from embedkit.encoders import EncoderConfig
    from embedkit.experiments import index_eval
    from embedkit.retrieval.recipe import RecipeConflictError

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
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars (default: on a terminal, for large inputs)")


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
    b.add_argument("--pooling", metavar="P", help="pooling (default: the model's own, else cls)")
    b.add_argument("--post", metavar="CHAIN|FILE",
                   help="postprocessor: a chain (whiten:beta=1,gamma=1,k=128, pca:k=128, rp:k=64, "
                        "...) fitted on --fit-on, or a transform file (.safetensors/.npz)")
    src = b.add_mutually_exclusive_group(required=True)
    src.add_argument("--corpus", metavar="FILE",
                     help="UTF-8 text file, one text a line (blank lines skipped)")
    src.add_argument("--corpus-task", metavar="TASK[:SPLIT],...",
                     help="the unique sentences of these task splits, e.g. LCQMC:test,BQ:test")
    add_embeddings_source(src, b)
    b.add_argument("--ids", metavar="FILE",
                   help="one id a line, aligned line by line with --corpus")
    b.add_argument("--factory", default="Flat",
                   help="FAISS factory string: Flat, IVF1024,Flat, HNSW32, IVF1024,PQ32, ...")
    b.add_argument("--metric", choices=("cosine", "ip", "l2"),
                   help="index metric (default: the model folder's declared similarity: "
                        "cosine, dot -> ip, euclidean -> l2; else cosine)")
    b.add_argument("--max-length", type=int, default=64,
                   help="tokens per text, counting [CLS] and [SEP]")
    b.add_argument("--fit-on", default="corpus", metavar="corpus|FILE",
                   help="what a --post chain is fitted on: the corpus or a file of sentences")
    b.add_argument("--train-size", type=int, metavar="N",
                   help="vectors sampled to train IVF/PQ (default: 40 x nlist, at least 10000)")
    b.add_argument("--seed", type=int, default=0, help="seed of the training sample")
    b.add_argument("--force", action="store_true",
                   help="use a transform file fitted for another model or pooling")
    b.add_argument("--out", required=True, metavar="DIR", help="index folder (replaced whole)")
    add_index_codes(b)  # hook: --vectors, --rescore, --max-memory ... (cli/index_codes.py)
    add_data_options(b)
    _add_lock_timeout(b)
    _add_progress(b)
    b.set_defaults(func=run_build)


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
    a.set_defaults(func=run_add)


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
    s.add_argument("--model", help="must match the index's recipe (checked), unless --force")
    s.add_argument("--pooling", help="must match the index's recipe, unless --force")
    s.add_argument("--post", help="must match the index's recipe, unless --force (the index's own "
                                  "postprocessor is baked in and always used)")
    s.add_argument("--max-length", type=int, help="must match the index's recipe, unless --force")
    s.add_argument("--force", action="store_true",
                   help="use --model/--pooling/--max-length even where they differ from the "
                        "recipe")
    _add_cache_options(s)
    s.set_defaults(func=run_search)


def _add_eval_quality(e: argparse.ArgumentParser) -> None:
    e.add_argument("--tasks", help="quality part: comma-separated tasks (TASK or TASK:SPLIT)")
    e.add_argument("--splits", "--split", dest="split", metavar="SPLITS",
                   help="split(s) of --tasks, comma-separated (default: the protocol's; test)")
    e.add_argument("--both-directions", action="store_true",
                   help="sentence2 of a positive pair is a query too")
    e.add_argument("--threshold", type=float,
                   help="label from which a pair is positive (default: from the label range)")
    e.add_argument("--post", action="append", default=[], metavar="CHAIN",
                   help="postprocessor row (repeat for several), e.g. whiten:beta=1,gamma=1,k=all "
                        "(none: the raw row, always shown)")
    e.add_argument("--fit-on", default="task", metavar="WHAT",
                   help="what --post is fitted on: task (every split), train, valid, test, FILE")
    e.add_argument("--fit-unique", action="store_true",
                   help="fit on unique sentences instead of every occurrence")
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
    e.add_argument("--seed", type=int, default=0)
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
    e.add_argument("--pooling", metavar="P", help="pooling (default: the model's own)")
    e.add_argument("--protocol", default="whitening", choices=("whitening", "cmteb"),
                   help="splits and max lengths of the published tables (default: whitening)")
    e.add_argument("--max-length", type=int,
                   help="tokens per text (default: the protocol's: the task's, 64; PAWSX 128; "
                        "cost part: 64)")
    e.add_argument("--metric", default="cosine", choices=("cosine", "ip", "l2"))
    e.add_argument("-k", type=int, default=10, help="cut-off of the metrics")
    _add_eval_quality(e)
    _add_eval_cost(e)
    e.add_argument("--force", action="store_true",
                   help="use transform files fitted for another model or pooling")
    add_data_options(e)
    e.add_argument("--output", metavar="FILE.json", help="write the JSON record here")
    e.add_argument("--markdown", metavar="FILE.md", help="write a Markdown report here")
    _add_progress(e)
    e.set_defaults(func=run_eval)


def _run_config(args: argparse.Namespace) -> EncoderConfig:
    """How to run the encoder an index's recipe names (the recipe gives the model)."""
    from embedkit.encoders import EncoderConfig

    return EncoderConfig(device=args.device, batch_size=args.batch_size,
                         cache=not args.no_cache, cache_dir=args.cache_dir,
                         progress=getattr(args, "progress", None), threads=args.threads)


def run_build(args) -> int:
    from embedkit.data.corpus import corpus_from_tasks, read_corpus
    from embedkit.retrieval.folder import build_index

    check_output_dir(args.out, "out")
    if args.embeddings is not None or args.on_disk:
        return run_build_from_embeddings(args)
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
    try:
        config, query_prompt = _side_config(args)
        index = build_index(
            args.out, texts, config,
            pooling=args.pooling, post=args.post, query_prompt=query_prompt,
            ids=ids, corpus_info=info, factory=args.factory, metric=args.metric,
            max_length=args.max_length, fit_on=args.fit_on, train_size=args.train_size,
            seed=args.seed, force=args.force, progress=args.progress,
            lock_timeout=args.lock_timeout, index_codes=index_codes(args))
    except FolderLockedError as err:
        raise locked_error(err) from None
    print_choice(index)
    r = index.recipe
    post = f", post {r['post']}" if r.get("post") else ""
    print(f"indexed {index.ntotal} texts ({len(texts) - index.ntotal} duplicates skipped) into "
          f"{args.out}: {index.factory}, {index.metric}, {index.dim_in} -> {index.dim} dims"
          f"{post}; built in {index.build_seconds:.2f} s")
    if defaults_line(index.recipe):
        print(defaults_line(index.recipe))
    return 0


def run_add(args) -> int:
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
    from embedkit.retrieval.recipe import show_value

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


def run_search(args) -> int:
    from embedkit.retrieval.folder import IndexSearcher
    from embedkit.retrieval.recipe import RecipeConflictError

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
    from embedkit.experiments import index_eval

    factories = split_factories(args.factory) + split_factories(args.factories)
    quality = index_eval.QualityOptions(
        tasks=tuple(split_list(args.tasks)), splits=tuple(split_list(args.split)),
        posts=tuple(args.post), both_directions=args.both_directions, threshold=args.threshold,
        fit_on=args.fit_on, fit_unique=args.fit_unique, csls=args.csls, csls_k=args.csls_k,
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
        max_length=args.max_length, metric=args.metric, k=args.k, force=args.force,
        threads=args.threads, data=data_options(args))


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


def run_eval(args) -> int:
    from embedkit.experiments import index_eval
    from embedkit.experiments.report import data_line, run_title

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
        print(index_eval.format_quality_table(record["quality"], args.k))
    if record["cost"]:
        if record["quality"]:
            print()
        c = record["cost"]
        print(f"{name}: cost of approximate search ({c['n_corpus']} texts, {c['n_queries']} "
              "queries)")
        print(index_eval.format_cost_table(c))
    if data_line(record):
        print(f"[{data_line(record)}]")
    if args.output:
        write_json(args.output, record)
    if args.markdown:
        atomic_write_text(args.markdown, index_eval.markdown_eval_report(record))
    return 0
