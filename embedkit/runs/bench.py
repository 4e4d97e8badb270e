"""``embedkit bench``: encoder x poolings (x postprocessors) on the STS tasks, one JSON record.

Each task's sentences are encoded once for every pooling; every row (a pooling, or a pooling
followed by a fitted postprocessor chain) is scored by the one STS path,
:class:`~embedkit.evaluation.STSEvaluator`.

>>> rec = run_bench("m3e-small", ["cls"], ["STS-B"], data_dir="../shared/data")  # doctest: +SKIP
>>> rec["results"]["cls"]["STS-B"]["test"]["spearman"]                              # doctest: +SKIP
0.7...
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from embedkit.aliases import JSONDict, StrPath
from embedkit.data import DataOptions, PairSplit, parse_tasks
from embedkit.data.registry import get_task
from embedkit.data.selection import FitSentences, collect_fit_sentences
from embedkit.data.spec import TaskSpec, canonical_split
from embedkit.encoders import EncoderConfig, Pooling, SentenceEncoder, as_encoder
from embedkit.encoders.config import for_task
from embedkit.encoders.st_folder import SIMILARITIES
from embedkit.errors import ConfigError
from embedkit.evaluation import PRIMARY_METRIC, STSEvaluator, aggregate, lookup, undefined_scores
from embedkit.evaluation.evaluator import declared_similarity
from embedkit.postprocess.options import PostOptions
from embedkit.runs.pair_extras import PairExtras, load_selection, score_extras
from embedkit.runs.record import (
    BenchRecord,
    add_timings,
    data_dir_setting,
    run_record,
    split_summary,
    truncation_counts,
)

if TYPE_CHECKING:  # scikit-learn and the postprocessors are imported for runs with chains
    from sklearn.pipeline import Pipeline


@dataclass
class _Row:
    label: str
    pooling: Pooling
    post: str | None = None
    pipe: Pipeline | None = None
    per_task: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    bytes_per_vector: int | None = None  # of the row's output: 4 d float32, or the codes


def run_bench(encoder: SentenceEncoder | EncoderConfig | str,
              poolings: Sequence[str] | None = None,
              tasks: Sequence[str | TaskSpec] | str | None = None,
              splits: Sequence[str] | None = None, *, protocol: str = "whitening",
              max_length: int | None = None, data_dir: StrPath | None = None,
              data: DataOptions | None = None, post: Sequence[str] | PostOptions = (),
              command: str | None = None, similarity: str | None = None,
              extras: PairExtras | None = None) -> BenchRecord:
    """Run the benchmark and return its JSON-ready record (see the README for the fields).

    Pairs are compared by ``similarity`` (cosine, dot, euclidean, manhattan), by default the
    one the model folder declares, else cosine; ``settings.similarity`` records it.
    ``extras`` adds pair classification (binary tasks, thresholds chosen on another split) and
    bootstrap intervals to each split's scores (:mod:`embedkit.runs.pair_extras`).

    ``post`` chains with a ``file:`` step use a saved map: one fitted for another model, pooling
    or dimension is a :class:`ConfigError` unless ``force`` (then a warning). When every chain
    is fixed (only ``file:`` and ``norm`` steps) nothing is fitted and no fit sentences are
    encoded.
    """
    t_start = time.perf_counter()
    data = data or DataOptions(data_dir=data_dir)
    posts = post if isinstance(post, PostOptions) else PostOptions(chains=tuple(post))
    # Everything that can be checked without the model is checked first, then everything
    # that needs it but not encoding: a bad setting never costs minutes of encoding.
    named_pools = list(dict.fromkeys(Pooling(p) for p in (poolings or ())))
    specs = _task_specs(tasks)
    # a chain, or a saved transform file as index build takes it (PATH.safetensors)
    pipes = _resolve_chains(posts.chains)
    need_fit = _learns(pipes)
    evaluator = STSEvaluator(specs, [canonical_split(s) for s in (splits or ())] or None,
                             protocol=protocol, max_length=max_length, data_dir=data.data_dir,
                             source=data.source, skip_invalid=data.skip_invalid)
    fits = {spec.name: collect_fit_sentences(
        posts.fit_on, spec, evaluator.data[spec.name], data_dir=data.data_dir,
        source=data.source, skip_invalid=data.skip_invalid, unique=posts.fit_unique)
        for spec in specs} if need_fit else {}
    if similarity is not None and similarity not in SIMILARITIES:
        raise ConfigError(f"unknown similarity {similarity!r}; valid: {', '.join(SIMILARITIES)}",
                          param="similarity")
    enc = as_encoder(encoder)
    sim = similarity or declared_similarity(enc)
    pools = named_pools or [enc.default_pooling]
    post_files = _check_chains(pipes, enc, pools, posts.force,
                               {s.name: fits.get(s.name) for s in specs})
    rows = {str(p): _Row(str(p), p) for p in pools}
    rows.update({f"{p} + {label}": _Row(f"{p} + {label}", p, label, pipe)
                 for p in pools for label, pipe in pipes})
    truncated = truncation_counts(
        enc, evaluator.data, {s.name: evaluator.max_length_for(s, enc) for s in specs})
    records: dict[str, Any] = {}
    task_encs = {spec.name: for_task(enc, spec.instruction) for spec in specs}
    extras = extras or PairExtras()
    for spec in specs:
        selection = load_selection(spec, list(evaluator.data[spec.name]), extras, data)
        records[spec.name] = _bench_task(evaluator, spec, task_encs[spec.name],
                                         list(rows.values()), fits.get(spec.name), sim,
                                         (extras, selection))
    settings = _settings(evaluator, pools, posts, need_fit, data, post_files)
    # each task's instruction (None: none), the prompt it made and that identity's namespace
    settings["instructions"] = {n: getattr(e, "instruction", None) for n, e in task_encs.items()}
    settings.update(_seed_settings(pipes))
    if extras.active:
        settings["extras"] = {"classify": extras.classify, "ci": extras.ci, "seed": extras.seed,
                              "similarities": list(extras.similarities),
                              "select_pairs": extras.select_pairs}
    settings["max_length"] = {s.name: evaluator.max_length_for(s, enc) for s in specs}
    settings["model_max_length"] = enc.model_max_length()  # the model's own (mteb names)
    settings["similarity"] = sim
    record = cast(BenchRecord, run_record("bench", command=command, encoder=enc,
                                          settings=settings, data=records))
    _add_results(record, rows)
    if truncated is not None:
        record["truncated"], record["truncated_of"] = truncated
    record["primary_metric"] = PRIMARY_METRIC
    add_timings(record, enc, t_start)
    return record


def run_bench_models(encoders: Sequence[SentenceEncoder | EncoderConfig | str],
                     poolings: Sequence[str] | None = None,
                     tasks: Sequence[str | TaskSpec] | str | None = None,
                     splits: Sequence[str] | None = None, *, command: str | None = None,
                     **options: Any) -> BenchRecord:
    """Several models on the same tasks, one record: kind ``bench-models``, the common header
    (versions, machine, command), ``settings.models`` (the names) and ``models``: one complete
    :func:`run_bench` record per model, in order (:func:`bench_blocks` reads either kind).
    ``options`` are :func:`run_bench`'s. The models run one after the other (one in memory at
    a time); each is built just before it runs.

    >>> rec = run_bench_models(["m3e-small", "bert-base-chinese"], ["cls"], "STS-B",
    ...                        data_dir="../shared/data")  # doctest: +SKIP
    >>> [b["model"]["name"] for b in bench_blocks(rec)]     # doctest: +SKIP
    ['m3e-small', 'bert-base-chinese']
    """
    if not encoders:
        raise ConfigError("no model to bench: name at least one", param="model")
    t_start = time.perf_counter()
    blocks = [run_bench(e, poolings, tasks, splits, command=command, **options)
              for e in encoders]
    names = [(b.get("model") or {}).get("name") for b in blocks]
    record = cast(BenchRecord, run_record("bench-models", command=command, encoder=None,
                                          settings={"models": names}, data={}))
    del record["model"]
    record["models"] = blocks
    record["timings"] = {"seconds_total": round(time.perf_counter() - t_start, 3)}
    return record


def bench_blocks(record: BenchRecord) -> list[BenchRecord]:
    """The per-model bench records of a record: itself for a ``bench`` record, its ``models``
    for a ``bench-models`` one.

    >>> [b["kind"] for b in bench_blocks({"kind": "bench-models", "models": [{"kind": "bench"}]})]
    ['bench']
    >>> bench_blocks({"kind": "sweep"})
    Traceback (most recent call last):
    embedkit.errors.ConfigError: a sweep record, not a bench record (bench or bench-models)
    """
    if record.get("kind") == "bench-models":
        return list(record.get("models") or ())
    if record.get("kind") == "bench":
        return [record]
    raise ConfigError(f"a {record.get('kind') or 'JSON'} record, not a bench record (bench or "
                      "bench-models)", param="record")


def bench_metrics(record: BenchRecord) -> dict[str, dict[str, float]]:
    """Per row label of a ``bench`` record, its flat metrics (``"T/test/spearman"``,
    ``"T/avg/pearson"``, ``"T/w-avg/spearman"``, ``"avg/spearman"``, ...: the keys of
    :func:`~embedkit.evaluation.aggregate`), read from ``results``, where each score is
    stored once; a record written before that keeps its own ``metrics`` copy, returned as is.

    >>> rec = {"kind": "bench", "results": {"cls": {"pooling": "cls", "post": None,
    ...     "T": {"test": {"spearman": 0.5, "pearson": 0.4, "n_pairs": 3, "ci": {}},
    ...           "avg": {"spearman": 0.5, "pearson": 0.4},
    ...           "w-avg": {"spearman": 0.5, "pearson": 0.4}},
    ...     "avg": {"spearman": 0.5, "pearson": 0.4}}}}
    >>> bench_metrics(rec)["cls"]
    {'T/test/spearman': 0.5, 'T/test/pearson': 0.4, 'T/test/n_pairs': 3, 'T/avg/spearman': 0.5, \
'T/w-avg/spearman': 0.5, 'T/avg/pearson': 0.4, 'T/w-avg/pearson': 0.4, 'avg/spearman': 0.5, \
'avg/pearson': 0.4}
    """
    if "metrics" in record:  # an old record: scores and their flat copy
        return record["metrics"]
    out: dict[str, dict[str, float]] = {}
    for label, row in (record.get("results") or {}).items():
        flat: dict[str, float] = {}
        for task, by_split in row.items():
            if task in ("avg", "pooling", "post") or not isinstance(by_split, dict):
                continue
            splits = {s: r for s, r in by_split.items() if s not in _AVERAGES}
            for split, r in splits.items():
                flat.update({f"{task}/{split}/{k}": r[k] for k in _FLAT if k in r})
            for k in ("spearman", "pearson"):
                flat.update({f"{task}/{avg}/{k}": by_split[avg][k]
                             for avg in _AVERAGES if avg in by_split})
        flat.update({f"avg/{k}": v for k, v in (row.get("avg") or {}).items()})
        out[label] = flat
    return out


#: the per-task averages a bench result holds beside its splits, and a split's flat keys
_AVERAGES = ("avg", "w-avg")
_FLAT = ("spearman", "pearson", "n_pairs")


def _task_specs(tasks: Sequence[str | TaskSpec] | str | None) -> list[TaskSpec]:
    if tasks is None or isinstance(tasks, str):
        return parse_tasks(tasks)
    return [t if isinstance(t, TaskSpec) else get_task(t) for t in tasks]


def _resolve_chains(chains: Sequence[str]) -> list[tuple[str, Pipeline]]:
    """``(label, pipeline)`` per chain (postprocess, and scikit-learn, imported only for some)."""
    if not chains:
        return []
    from embedkit.postprocess import describe_post, resolve_post

    return [(describe_post(p), p) for p in (resolve_post(c) for c in chains)]


def _learns(pipes: list[tuple[str, Pipeline]]) -> bool:
    if not pipes:
        return False
    from embedkit.postprocess import pipeline_learns

    return any(pipeline_learns(p) for _, p in pipes)


def _check_chains(pipes: list[tuple[str, Pipeline]], enc: SentenceEncoder, pools: list[Pooling],
                  force: bool, fits: dict[str, FitSentences | None]) -> dict[str, JSONDict]:
    """The chains' saved files checked against the encoder (returned for the record), and each
    chain's k against d (and rp:k=auto against each task's fit sentences)."""
    if not pipes:
        return {}
    from embedkit.postprocess import check_chain_files
    from embedkit.postprocess.checks import check_post_chains

    post_files = check_chain_files(pipes, model=enc.identity, dim=enc.dim, poolings=pools,
                                   force=force)
    for fit in fits.values():
        check_post_chains(pipes, enc.dim, len(fit.sentences) if fit is not None else None)
    return post_files


def _bench_task(evaluator: STSEvaluator, spec: TaskSpec, enc: SentenceEncoder, rows: list[_Row],
                fit: FitSentences | None, similarity: str = "cosine",
                extra: tuple[PairExtras, dict[str, PairSplit]] | None = None) -> dict[str, Any]:
    """Encode a task once for every pooling, fit the chains on ``fit``, score every row."""
    max_len = evaluator.max_length_for(spec, enc)
    splits = evaluator.data[spec.name]
    sentences = evaluator.sentences(spec.name)
    pools = list(dict.fromkeys(r.pooling for r in rows))
    vecs = enc.encode_multi(sentences, pools, max_length=max_len)
    record: dict[str, Any] = split_summary(splits)
    fit_vecs: dict[str, np.ndarray] = {}
    sel_sentences = list(dict.fromkeys(t for s in (extra[1] if extra else {}).values()
                                       for t in (*s.sentences1, *s.sentences2)))
    sel_vecs = enc.encode_multi(sel_sentences, pools, max_length=max_len) if sel_sentences else {}
    if fit is not None:
        fit_vecs = enc.encode_multi(fit.sentences, pools, max_length=max_len)
        record["fit"] = fit.record()
    for row in rows:
        v = vecs[str(row.pooling)]
        transform = decoded = None
        row.bytes_per_vector = 4 * int(v.shape[1])
        if row.pipe is not None:
            from sklearn.base import clone

            from embedkit.postprocess import bytes_per_vector

            # A fixed chain learns nothing: fitting it on the vectors only checks d.
            fitted = clone(row.pipe).fit(fit_vecs.get(str(row.pooling), v))
            transform = fitted.transform  # a quantiser's codes: score_task decodes them
            decoded = partial(_scored_vectors, fitted)  # what extras compare: decoded codes
            row.bytes_per_vector = bytes_per_vector(fitted, int(v.shape[1]))
        row.per_task[spec.name] = evaluator.score_task(spec.name, lookup(sentences, v), transform,
                                                       similarity)
        if extra is not None and extra[0].active:
            sel = sel_vecs.get(str(row.pooling))
            added = score_extras(splits, lookup(sentences, v), decoded, extra[1],
                                 lookup(sel_sentences, sel) if sel is not None else None, extra[0])
            for split, more in added.items():
                row.per_task[spec.name][split].update(more)
    return record


def _scored_vectors(fitted: Pipeline, X: np.ndarray) -> np.ndarray:
    """A fitted chain's output as scores see it (a quantiser's codes decoded)."""
    from embedkit.postprocess.quantize import scored_output

    return scored_output(fitted, X)[0]


def _add_results(record: BenchRecord, rows: dict[str, _Row]) -> None:
    """Per row the nested ``results`` (task -> split, avg, w-avg; the across-task avg; each
    score once: :func:`bench_metrics` flattens them) and ``bytes_per_vector``; ``undefined``
    lists the (row, task, split, reason) whose score is NaN."""
    results: dict[str, Any] = {}
    undefined: list[dict[str, str]] = []
    for label, row in rows.items():
        undefined += [{"row": label, "task": t, "split": s, "reason": why}
                      for t, s, why in undefined_scores(row.per_task)]
        flat = aggregate(row.per_task)
        nested: dict[str, Any] = {}
        for task, by_split in row.per_task.items():
            nested[task] = {**by_split, **{
                avg: {k: flat[f"{task}/{avg}/{k}"] for k in ("spearman", "pearson")}
                for avg in ("avg", "w-avg")}}
        nested["avg"] = {"spearman": flat["avg/spearman"], "pearson": flat["avg/pearson"]}
        results[label] = {**nested, "pooling": str(row.pooling), "post": row.post}
    record["results"] = results
    record["bytes_per_vector"] = {label: row.bytes_per_vector for label, row in rows.items()}
    if undefined:  # the flag: these scores are NaN, and so is every average including them
        record["undefined"] = undefined


def _settings(evaluator: STSEvaluator, pools: list[Pooling], posts: PostOptions, need_fit: bool,
              data: DataOptions, post_files: dict[str, JSONDict]) -> dict[str, Any]:
    specs = evaluator.specs
    return {
        "poolings": [str(p) for p in pools], "tasks": [s.name for s in specs],
        "task_specs": {s.name: s.origin for s in specs},
        "splits": {s.name: list(evaluator.data[s.name]) for s in specs},
        "protocol": evaluator.protocol.name,
        "data_dir": data_dir_setting(data.data_dir), "source": data.source,
        "skip_invalid": data.skip_invalid, "post": list(posts.chains),
        "fit_on": posts.fit_on if need_fit else None,
        "fit_unique": posts.fit_unique if need_fit else None,
        "force": posts.force, "post_files": post_files,
    }


def _seed_settings(pipes: Sequence[tuple[str, Pipeline]]) -> dict[str, Any]:
    """``seeds``: per chain with a random step, each such step's seed (the one its fit used);
    ``seed``: the one seed when every random step shares it, else None (none, or several).

    >>> from embedkit.postprocess import parse_post
    >>> _seed_settings([("rp", parse_post("rp:k=4,seed=3")), ("pca", parse_post("pca"))])
    {'seeds': {'rp': {'rp:k=4,kind=gaussian,seed=3': 3}}, 'seed': 3}
    """
    if not pipes:
        return {"seeds": {}, "seed": None}
    from embedkit.postprocess import random_seeds

    seeds = {label: found for label, pipe in pipes if (found := random_seeds(pipe))}
    distinct = {v for found in seeds.values() for v in found.values()}
    return {"seeds": seeds, "seed": distinct.pop() if len(distinct) == 1 else None}
