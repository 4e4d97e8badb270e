"""``embedkit index eval``: retrieval quality on the STS sets and the cost of approximate search.

Quality: each task's split becomes a retrieval task (:func:`pairs_to_retrieval`; positives are
pairs with ``label >= threshold``, the threshold taken from the task's label range: binary ->
1, 0-5 -> 4, in general ``low + 0.8 * (high - low)``); the corpus is every unique sentence of the
split; a query's own entry is left out of its ranking. Rows: the raw pooled vectors and each
post-processing chain, fitted as ``bench`` fits them (by default on every split of the task,
the published protocol). Exact (Flat) search. Splits and max lengths follow the evaluation
protocol (``whitening``: test, 64 tokens, PAWSX 128).

Cost: the unique sentences of the cost corpus tasks are encoded once, ``n_queries`` of them
(seeded sample) are the queries, and :func:`approximation_costs` times each FAISS factory and
search setting against exact search. A row meets the target when ``recall@k >= 0.95`` (against
Flat) at ``>= 5x`` Flat's batch QPS. Its max length is the protocol's for one corpus of many
tasks: 64 tokens (``whitening``) or the model's own (``cmteb``).

>>> label_threshold((0, 5), None), label_threshold((0, 1), None)
(4.0, 1.0)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from embedkit.data import TaskSpec, check_split, load_split
from embedkit.data.corpus import corpus_from_tasks
from embedkit.data.retrieval import load_retrieval_split
from embedkit.data.selection import collect_fit_sentences, parse_task_split
from embedkit.encoders import EncoderConfig, Pooling, SentenceEncoder, as_encoder
from embedkit.encoders.config import with_prompt
from embedkit.errors import ConfigError
from embedkit.evaluation.protocols import EvalProtocol, get_protocol
from embedkit.postprocess.spec import PostOptions
from embedkit.provenance import sha256_text
from embedkit.retrieval.checks import check_index_settings
from embedkit.retrieval.costs import SINGLE_QUERIES, approximation_costs
from embedkit.retrieval.faiss_ops import faiss_thread_count
from embedkit.retrieval.hubness import evaluate_csls
from embedkit.retrieval.tasks import (
    RetrievalTask,
    evaluate_retrieval,
    pairs_to_retrieval,
    task_from_split,
)
from embedkit.runs.bench import DataOptions
from embedkit.runs.predictions import row_folder, write_columns
from embedkit.runs.record import (
    IndexEvalRecord,
    add_timings,
    data_dir_setting,
    refresh_data_source,
    run_record,
)
from embedkit.store.fitted import is_none, post_output_dim, prepare_post

__all__ = [
    "COST_MAX_LENGTH",
    "DEFAULT_FACTORIES",
    "TARGET_RECALL",
    "CostOptions",
    "IndexEvalOptions",
    "QualityOptions",
    "label_threshold",
    "quality_eval",
    "run_index_eval",
]

logger = logging.getLogger(__name__)

DEFAULT_FACTORIES = ("Flat", "IVF1024,Flat", "HNSW32", "IVF1024,PQ64")
TARGET_RECALL = 0.95
_TARGET_SPEEDUP = 5.0
#: max length of the cost corpus under a protocol that takes each task's own (one corpus holds
#: sentences of several tasks)
COST_MAX_LENGTH = 64


@dataclass(frozen=True)
class QualityOptions:
    """The quality part: ``tasks`` (``TASK`` or ``TASK:SPLIT`` items) scored on ``splits``
    (empty: the protocol's), the raw row and one row per chain of the run's ``post``
    (:attr:`IndexEvalOptions.post`); ``threshold`` overrides the label range's positive
    label."""

    tasks: tuple[str, ...] = ()
    splits: tuple[str, ...] = ()
    both_directions: bool = False
    threshold: float | None = None
    #: also a CSLS-re-ranked row after each row (hubness reduction, Conneau et al. 2018):
    #: ``csls_k`` corpus neighbours in the penalty, the top ``csls_candidates`` re-ranked
    csls: bool = False
    csls_k: int = 10
    csls_candidates: int = 100
    #: score an index folder already built (retrieval tasks from files only): its recipe
    #: encodes the queries, its ids must be the corpus file's ``_id`` values
    index_dir: str | None = None
    #: write each row's per-query metrics under this folder (retrieval tasks from files)
    predictions: str | None = None


@dataclass(frozen=True)
class CostOptions:
    """The cost part: a corpus of the unique sentences of ``corpus_tasks``, ``n_queries`` of
    them (drawn with ``seed``) as queries, each of ``factories`` with each search setting,
    ``post`` baked into every index (fitted on the corpus)."""

    corpus_tasks: tuple[str, ...] = ()
    factories: tuple[str, ...] = DEFAULT_FACTORIES
    nprobes: tuple[int, ...] = (1, 8, 32, 64)
    ef_searches: tuple[int, ...] = (16, 64, 128, 256)
    n_queries: int = 2000
    seed: int = 0
    post: str | None = None
    single_queries: int | None = None


@dataclass(frozen=True)
class IndexEvalOptions:
    """What ``index eval`` runs: the quality and/or cost parts and the settings they share.

    ``max_length`` overrides the protocol's; ``faiss_threads`` is FAISS's thread count for the
    run (None: as it is; the encoder's threads are its own setting); ``post``: the quality
    part's rows (one per chain; ``none`` is the raw row, always shown), what they are fitted on
    (``task``, a split, or a file; a retrieval task's corpus), and whether transform files
    fitted for another model or pooling are used (``force``, also for the cost part's post and
    an index folder).
    """

    quality: QualityOptions = field(default_factory=QualityOptions)
    cost: CostOptions = field(default_factory=CostOptions)
    pooling: str | None = None
    protocol: str = "whitening"
    max_length: int | None = None
    metric: str = "cosine"
    k: int = 10
    post: PostOptions = field(default_factory=PostOptions)
    faiss_threads: int | None = None
    data: DataOptions = field(default_factory=DataOptions)
    query_prompt: str | None = None  # queries' own prompt (None: the encoder's, as passages)


def label_threshold(label_range: Sequence[float] | None, labels: np.ndarray | None) -> float:
    """The label from which a pair counts as a retrieval positive.

    Binary sets (range of width 1) -> the top label; graded ones -> ``low + 0.8 (high - low)``
    (4 on STS-B's 0-5). Without a declared range the labels' own min and max are used.
    """
    if label_range is not None:
        lo, hi = float(label_range[0]), float(label_range[1])
    else:
        if labels is None or len(labels) == 0:
            raise ConfigError("cannot derive a positive threshold without labels")
        lo, hi = float(np.min(labels)), float(np.max(labels))
    if hi - lo <= 1:
        return hi
    return lo + 0.8 * (hi - lo)


def _task_splits(tasks: Sequence[str], splits: Sequence[str],
                 proto: EvalProtocol) -> list[tuple[TaskSpec, str]]:
    out = []
    for item in tasks:
        spec, split = parse_task_split(item, param="tasks")
        for s in [split] if split else proto.splits(spec, tuple(splits) or None):
            out.append((spec, s))
    return out


@dataclass
class _Split:
    """One task split as a retrieval task, encoded."""

    spec: TaskSpec
    data: Any
    task: RetrievalTask
    max_length: int
    corpus_x: np.ndarray
    query_x: np.ndarray
    record: dict[str, Any]


def _queries(enc: SentenceEncoder, opts: IndexEvalOptions, texts: list[str],
             rows: np.ndarray, corpus_x: np.ndarray, pooling: Pooling,
             max_length: int) -> np.ndarray:
    """The query vectors: rows of the corpus's, or encoded with the queries' own prompt."""
    if opts.query_prompt is None or opts.query_prompt == getattr(enc, "prompt", None):
        return corpus_x[rows]
    qenc = with_prompt(enc, opts.query_prompt)
    return qenc.encode([texts[i] for i in rows.tolist()], pooling, max_length=max_length)


def _load_file_split(enc: SentenceEncoder, spec: TaskSpec, split: str, pooling: Pooling,
                     opts: IndexEvalOptions, proto: EvalProtocol, *,
                     encode_corpus: bool = True) -> _Split:
    """A retrieval task read from files (corpus, queries, qrels), encoded."""
    if opts.quality.csls:
        raise ConfigError("CSLS re-ranking is not available on retrieval tasks read from "
                          "files", param="csls")
    data = load_retrieval_split(spec, split, data_dir=opts.data.data_dir)
    task = task_from_split(data)
    max_len = proto.max_length(spec, enc.model_max_length(), opts.max_length)
    record = {"kind": "retrieval", "source": data.source, "sha256": data.sha256,
              "n_pairs": data.n_judgements, "skipped": 0, "threshold": 1, "max_length": max_len,
              "n_queries": len(task.queries), "n_corpus": len(task.corpus)}
    corpus_x = (enc.encode(task.corpus, pooling, max_length=max_len) if encode_corpus
                else np.zeros((0, int(enc.dim)), dtype=np.float32))
    qenc = with_prompt(enc, opts.query_prompt) if opts.query_prompt is not None else enc
    query_x = qenc.encode(task.queries, pooling, max_length=max_len)
    return _Split(spec, data, task, max_len, corpus_x, query_x, record)


def _load_split(enc: SentenceEncoder, spec: TaskSpec, split: str, pooling: Pooling,
                opts: IndexEvalOptions, proto: EvalProtocol) -> _Split:
    q, d = opts.quality, opts.data
    if spec.is_retrieval:
        return _load_file_split(enc, spec, split, pooling, opts, proto)
    data = load_split(spec, split, data_dir=d.data_dir, source=d.source,
                      skip_invalid=d.skip_invalid)
    thr = float(q.threshold) if q.threshold is not None else label_threshold(spec.label_range,
                                                                             data.labels)
    task = pairs_to_retrieval(data.sentences1, data.sentences2, data.labels, threshold=thr,
                              both_directions=q.both_directions)
    max_len = proto.max_length(spec, enc.model_max_length(), opts.max_length)
    record = {"source": data.source, "sha256": data.sha256, "n_pairs": data.n_pairs,
              "skipped": data.skipped, "threshold": thr, "max_length": max_len,
              "n_queries": len(task.queries), "n_corpus": len(task.corpus)}
    corpus_x = enc.encode(task.corpus, pooling, max_length=max_len)
    query_x = _queries(enc, opts, list(task.corpus), np.asarray(task.query_ids, dtype=np.int64),
                       corpus_x, pooling, max_len)
    return _Split(spec, data, task, max_len, corpus_x, query_x, record)


def _post_rows(enc: SentenceEncoder, sp: _Split, pooling: Pooling, opts: IndexEvalOptions,
               base: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per chain (fitted on the split's fit sentences, encoded once)."""
    d, posts = opts.data, opts.post
    fitted_on: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}

    def fit_data() -> tuple[np.ndarray, dict[str, Any]]:
        if "x" not in fitted_on and sp.spec.is_retrieval:  # fitted on the corpus
            fitted_on["x"] = (sp.corpus_x, {"on": "corpus", "n_sentences": len(sp.task.corpus),
                                            "sha256": sp.data.sha256})
        if "x" not in fitted_on:
            fit = collect_fit_sentences(posts.fit_on, sp.spec, {sp.data.split: sp.data},
                                        data_dir=d.data_dir, source=d.source,
                                        skip_invalid=d.skip_invalid, unique=posts.fit_unique)
            x = enc.encode(fit.sentences, pooling, max_length=sp.max_length)
            fitted_on["x"] = (x, fit.record())
        return fitted_on["x"]

    rows = []
    for value in (p for p in posts.chains if not is_none(p)):  # "none" is the raw row
        post = prepare_post(value, encoder=enc, pooling=pooling, dim=int(sp.corpus_x.shape[1]),
                            fit_data=fit_data, metric=opts.metric, force=opts.post.force)
        if post is None:  # pragma: no cover - "none" values are skipped above
            continue
        rows += _scored_rows(sp, opts, {**base, "row": f"{pooling} + {post.spec}",
                                        "post": post.spec, "fit": post.fit,
                                        "dim": post.map.k}, post.map)
    if "x" in fitted_on:
        sp.record["fit"] = fitted_on["x"][1]
    return rows


def _scored_rows(sp: _Split, opts: IndexEvalOptions, head: dict[str, Any],
                 transform: Any) -> list[dict[str, Any]]:
    """The row ``head`` with its retrieval scores (exact search, ``transform`` baked in) and,
    with ``quality.csls``, its CSLS-re-ranked twin from the same index and candidates.

    CSLS ranks a query's candidates by ``2 cos(q, c) - r(c)``, ``r(c)`` the mean cosine of ``c``
    to its ``csls_k`` nearest corpus neighbours (:mod:`embedkit.diagnostics.hubness_reduction`),
    so corpus hubs are pushed down. Cosine only: the penalty is a cosine."""
    q = opts.quality
    if not q.csls:
        return [{**head, **evaluate_retrieval(sp.task, sp.corpus_x, sp.query_x,
                                              metric=opts.metric, k=opts.k,
                                              transform=transform)}]
    if opts.metric != "cosine":
        raise ConfigError("CSLS re-ranking is defined on cosine similarity: use the cosine "
                          "metric", param="metric")
    res = evaluate_csls(sp.task, sp.corpus_x, sp.query_x, transform=transform, k=opts.k,
                        k_penalty=q.csls_k, candidates=q.csls_candidates)

    def plain(scores: dict[str, Any]) -> dict[str, Any]:  # without the result-list hubness
        return {key: v for key, v in scores.items() if not key.startswith("result_")}

    row = {**head, **plain(res["raw"])}
    return [row, {**row, **plain(res["csls"]), "row": f"{row['row']} + csls", "rerank": "csls"}]


def _check_before_encoding(enc: SentenceEncoder, options: IndexEvalOptions) -> None:
    """Every setting that can be checked once the encoder is built (its ``dim``), before any
    encoding: each quality task's splits, each post value against d, and each cost factory
    on the dimension the cost post leaves (:func:`check_index_settings`)."""
    proto = get_protocol(options.protocol)
    for spec, split in _task_splits(options.quality.tasks, options.quality.splits, proto):
        check_split(spec, split)
    for value in options.post.chains:
        post_output_dim(value, int(enc.dim))
    if options.cost.corpus_tasks:
        check_index_settings(options.cost.factories, options.cost.post, dim=int(enc.dim),
                             metric=options.metric)


def quality_eval(
    encoder: SentenceEncoder | EncoderConfig, options: IndexEvalOptions
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows ``{task, split, row, post, recall@1.., mrr@k, ndcg@k, n_queries, n_corpus, ...}``
    (raw first, then each post, per task/split) and the data record.

    A post value "none" is the raw row, which is always there.
    """
    enc = as_encoder(encoder)
    pooling = Pooling(options.pooling or enc.default_pooling)
    proto = get_protocol(options.protocol)
    opts = options
    rows: list[dict[str, Any]] = []
    data_record: dict[str, Any] = {}
    for spec, split in _task_splits(opts.quality.tasks, opts.quality.splits, proto):
        logger.info("quality: %s/%s", spec.name, split)
        sp = _load_split(enc, spec, split, pooling, opts, proto)
        data_record.setdefault(spec.name, {})[sp.data.split] = sp.record
        base = {"task": spec.name, "split": sp.data.split, "pooling": pooling}
        rows += _scored_rows(sp, opts, {**base, "row": f"{pooling}", "post": None}, None)
        rows += _post_rows(enc, sp, pooling, opts, base)
    return _per_query_files(rows, opts.quality.predictions), data_record


def _index_quality_eval(encoder: SentenceEncoder | EncoderConfig | None, options: IndexEvalOptions
                       ) -> tuple[list[dict[str, Any]], dict[str, Any], SentenceEncoder]:
    """The quality rows of an index folder already built (``quality.index_dir``) on retrieval
    tasks read from files: its recipe's encoder encodes the queries, its own transform and
    FAISS index rank the corpus, its ids are matched to the qrels' corpus ids
    (:func:`~embedkit.retrieval.tasks.hit_keys`). Returns the rows, the data record and the
    encoder used."""
    from embedkit.retrieval.folder import IndexSearcher

    q = options.quality
    searcher = IndexSearcher(str(q.index_dir), encoder, force=options.post.force)
    enc, pooling = searcher.encoder, Pooling(searcher.pooling)
    proto = get_protocol(options.protocol)
    opts = replace(options, max_length=options.max_length or searcher.max_length)
    rows: list[dict[str, Any]] = []
    data_record: dict[str, Any] = {}
    for spec, split in _task_splits(q.tasks, q.splits, proto):
        if not spec.is_retrieval:
            raise ConfigError(f"task {spec.name} holds sentence pairs; an index folder is "
                              "scored on retrieval tasks read from files (corpus, queries, "
                              "qrels)", param="index")
        sp = _load_file_split(enc, spec, split, pooling, opts, proto, encode_corpus=False)
        data_record.setdefault(spec.name, {})[sp.data.split] = sp.record
        scores = evaluate_retrieval(sp.task, None, sp.query_x, index=searcher.index,
                                    k=options.k)
        post = searcher.index.recipe.get("post")
        rows.append({"task": spec.name, "split": sp.data.split, "pooling": pooling,
                     "row": f"index {Path(str(q.index_dir)).name}", "post": post,
                     "index": str(q.index_dir), **scores})
    return _per_query_files(rows, q.predictions), data_record, enc


def _per_query_files(rows: list[dict[str, Any]], out_dir: str | None) -> list[dict[str, Any]]:
    """Rows without their per-query values, which go to ``out_dir`` when it is given
    (``DIR/<row>/<task>/<split>``: one line per query with its metrics)."""
    for r in rows:
        per = r.pop("per_query", None)
        if per is not None and out_dir:
            cols: dict[str, list[Any]] = {"query_id": list(per)}
            for key in next(iter(per.values()), {}):
                cols[key] = [v[key] for v in per.values()]
            base = Path(out_dir) / row_folder(str(r["row"])) / r["task"] / r["split"]
            r["predictions"] = str(write_columns(cols, base, fmt="jsonl"))
    return rows


def _cost_max_length(enc: SentenceEncoder, options: IndexEvalOptions) -> int:
    if options.max_length:
        return int(options.max_length)
    proto = get_protocol(options.protocol)
    return int(enc.model_max_length()) if proto.use_model_max_length else COST_MAX_LENGTH


def _mark_targets(rows: list[dict[str, Any]], k: int) -> dict[str, Any] | None:
    """Give every row ``speedup`` and ``meets_target``; the fastest row meeting it."""
    flat = rows[0]
    key = f"recall@{k}"
    for r in rows:
        r["speedup"] = r["qps_batch"] / flat["qps_batch"] if flat["qps_batch"] else None
        r["meets_target"] = bool(
            r is not flat and r[key] >= TARGET_RECALL
            and r["speedup"] is not None and r["speedup"] >= _TARGET_SPEEDUP)
    meeting = [r for r in rows if r["meets_target"]]
    if not meeting:
        return None
    best = max(meeting, key=lambda r: r["qps_batch"])
    return {"factory": best["factory"], "param": best["param"], key: best[key],
            "qps_batch": best["qps_batch"], "speedup": best["speedup"]}


def _cost_eval(encoder: SentenceEncoder | EncoderConfig, options: IndexEvalOptions
              ) -> dict[str, Any]:
    """``{"rows": [...], "best": ..., "flat_qps_batch", "n_corpus", "n_queries", "data", ...}``.

    Every row gets ``speedup`` (its batch QPS over Flat's) and ``meets_target``.
    """
    enc = as_encoder(encoder)
    c, d, k = options.cost, options.data, options.k
    pooling = Pooling(options.pooling or enc.default_pooling)
    max_len = _cost_max_length(enc, options)
    texts, info = corpus_from_tasks(c.corpus_tasks, data_dir=d.data_dir, source=d.source,
                                    skip_invalid=d.skip_invalid)
    if not texts:
        raise ConfigError("the cost corpus is empty")
    logger.info("cost: encoding %d corpus texts", len(texts))
    x = enc.encode(texts, pooling, max_length=max_len)
    nq = min(int(c.n_queries), len(texts))
    if nq < 1:
        raise ConfigError("n_queries must be >= 1", param="n_queries")
    q_idx = np.sort(np.random.default_rng(c.seed).choice(len(texts), size=nq, replace=False))
    post = prepare_post(
        c.post, encoder=enc, pooling=pooling, dim=int(x.shape[1]), metric=options.metric,
        force=options.post.force, fit_data=lambda: (x, {"on": "cost corpus",
                                                   "n_sentences": len(texts),
                                                   "sha256": info["sha256"]}))
    logger.info("cost: building and timing %s (%d queries)", ", ".join(c.factories), nq)
    rows = approximation_costs(
        x, _queries(enc, options, texts, q_idx, x, pooling, max_len), list(c.factories), nprobes=c.nprobes, ef_searches=c.ef_searches, k=k,
        metric=options.metric, transform=post.map if post else None, seed=c.seed,
        single_queries=SINGLE_QUERIES if c.single_queries is None else c.single_queries)
    return {
        "rows": rows,
        "best": _mark_targets(rows, k),
        "target": {"recall": TARGET_RECALL, "speedup": _TARGET_SPEEDUP, "k": k},
        "flat_qps_batch": rows[0]["qps_batch"],
        "n_corpus": len(texts),
        "n_queries": nq,
        "queries_sha256": sha256_text(",".join(map(str, q_idx.tolist()))),
        "post": post.spec if post else None,
        "max_length": max_len,
        "data": info,
    }


def _joined(items: Sequence[str]) -> str | None:
    return ",".join(items) if items else None


def _settings(options: IndexEvalOptions, pooling: Pooling, threads: int) -> dict[str, Any]:
    """The record's settings (the keys of earlier versions, plus the protocol)."""
    q, c, d, post = options.quality, options.cost, options.data, options.post
    chains = [p for p in post.chains if not is_none(p)]
    return {
        "pooling": pooling, "metric": options.metric, "k": options.k,
        "max_length": options.max_length, "protocol": options.protocol,
        "tasks": _joined(q.tasks), "splits": list(q.splits) or None,
        "both_directions": q.both_directions, "threshold": q.threshold,
        "posts": list(post.chains), "fit_on": post.fit_on if chains else None,
        "fit_unique": post.fit_unique if chains else None,
        "cost_corpus_tasks": _joined(c.corpus_tasks), "factories": list(c.factories),
        "nprobes": list(c.nprobes), "ef_searches": list(c.ef_searches),
        "n_queries": c.n_queries, "seed": c.seed, "cost_post": c.post,
        "faiss_threads": threads, "data_dir": data_dir_setting(d.data_dir), "source": d.source,
        "query_prompt": options.query_prompt,
    }


def run_index_eval(encoder: SentenceEncoder | EncoderConfig | str, options: IndexEvalOptions,
                   *, command: str | None = None) -> IndexEvalRecord:
    """Run the quality part (``options.quality.tasks``) and/or the cost part
    (``options.cost.corpus_tasks``); a JSON-ready record."""
    if not options.quality.tasks and not options.cost.corpus_tasks:
        raise ConfigError("nothing to evaluate: give quality tasks and/or cost corpus tasks")
    t0 = time.perf_counter()
    if options.quality.index_dir:
        return _run_on_index(encoder, options, command, t0)
    enc = as_encoder(encoder)
    pooling = Pooling(options.pooling or enc.default_pooling)
    options = replace(options, pooling=pooling)
    _check_before_encoding(enc, options)
    with faiss_thread_count(options.faiss_threads) as threads:
        record = cast(IndexEvalRecord, run_record(
            "index-eval", command=command, encoder=enc,
            settings=_settings(options, pooling, threads), data={}))
        record["quality"] = record["cost"] = None
        if options.quality.tasks:
            record["quality"], record["data"]["quality"] = quality_eval(enc, options)
        if options.cost.corpus_tasks:
            cost = _cost_eval(enc, options)
            record["data"]["cost"] = cost.pop("data")
            record["cost"] = cost
    refresh_data_source(record)
    add_timings(record, enc, t0)
    return record


def _run_on_index(encoder: Any, options: IndexEvalOptions, command: str | None,
                  t0: float) -> IndexEvalRecord:
    """``run_index_eval`` with ``quality.index_dir``: the quality part on that index only."""
    if options.cost.corpus_tasks:
        raise ConfigError("an index folder is scored for quality only; leave out the cost "
                          "corpus tasks", param="cost_corpus_tasks")
    if any(not is_none(p) for p in options.post.chains):
        raise ConfigError("an index folder's postprocessor is baked into it; leave out post",
                          param="post")
    cfg = encoder if isinstance(encoder, EncoderConfig) else None
    with faiss_thread_count(options.faiss_threads) as threads:
        rows, data, enc = _index_quality_eval(cfg, options)
        pooling = Pooling(rows[0]["pooling"]) if rows else Pooling(enc.default_pooling)
        settings = {**_settings(options, pooling, threads), "index": options.quality.index_dir}
        record = cast(IndexEvalRecord, run_record("index-eval", command=command, encoder=enc,
                                                  settings=settings, data={"quality": data}))
    record["quality"], record["cost"] = rows, None
    refresh_data_source(record)
    add_timings(record, enc, t0)
    return record
