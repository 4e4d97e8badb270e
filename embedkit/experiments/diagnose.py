"""``embedkit diagnose``: the geometry of an encoder's space before and after each postprocessor,
beside the scores it gives.

For every task (or one corpus file), the sentences are encoded once for every pooling; each row
is a pooling, raw or followed by a postprocessor chain fitted as ``bench`` fits it (by default on
every split of the task). Each row gets every diagnostic of :func:`embedkit.diagnostics.profile`
(anisotropy, spectrum with effective rank and IsoScore, hubness N_k at ``k``, sparsity, JL
distortion), and for STS tasks the Spearman of that row from the one STS path
(:class:`~embedkit.evaluation.STSEvaluator`) and, with ``retrieval``, recall@10 of plain cosine
search and of CSLS re-ranking (:func:`embedkit.retrieval.hubness.evaluate_csls`) on the task's
positives as a retrieval task (as ``index eval`` builds it). A sweep record (``embedkit sweep``)
may be given to set the JL estimate beside the dimension at which Spearman stops falling.

>>> opts = DiagnoseOptions(tasks=("STS-B",), posts=("whiten",), sample=5000)   # doctest: +SKIP
>>> rec = run_diagnose("m3e-small", opts, ["cls"])                             # doctest: +SKIP
>>> [r["row"] for r in rec["rows"]]                                            # doctest: +SKIP
['cls', 'cls + whiten:beta=1,gamma=1,k=all']
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from embedkit.data import DataOptions, PairSplit, parse_tasks
from embedkit.data.corpus import read_corpus
from embedkit.data.registry import get_task
from embedkit.data.selection import FILE_MAX_LENGTH, collect_fit_sentences
from embedkit.data.spec import TaskSpec, canonical_split
from embedkit.diagnostics import COLUMNS, DEFAULT_JL_DIMS, jl_at, profile, profile_columns
from embedkit.diagnostics.plots import (
    plot_jl,
    plot_occurrence,
    plot_spectra,
    require_matplotlib,
)
from embedkit.encoders import EncoderConfig, Pooling, SentenceEncoder, as_encoder
from embedkit.errors import ConfigError, MissingFileError
from embedkit.evaluation import STSEvaluator, lookup
from embedkit.experiments.index_eval import label_threshold
from embedkit.experiments.record import data_dir_setting, run_record, split_summary, timings
from embedkit.experiments.report import provenance_lines, run_title
from embedkit.io.tables import text_table
from embedkit.postprocess import (
    check_chain_files,
    describe_post,
    parse_post,
    pipeline_learns,
)
from embedkit.postprocess.checks import check_post_chains
from embedkit.retrieval.hubness import evaluate_csls
from embedkit.retrieval.tasks import RetrievalTask, pairs_to_retrieval

__all__ = ["DiagnoseOptions", "run_diagnose", "format_diagnose_table", "diagnose_markdown",
           "write_diagnose_plots", "sweep_dimensions", "conclusions", "RETRIEVAL_K",
           "STOP_TOLERANCE"]

logger = logging.getLogger(__name__)

#: the cut-off of the retrieval columns (recall@10)
RETRIEVAL_K = 10
#: Spearman drop (x 100: one point) within which a sweep's k counts as "not fallen yet"
STOP_TOLERANCE = 0.01


@dataclass(frozen=True)
class DiagnoseOptions:
    """What ``diagnose`` measures.

    Input: STS ``tasks`` (names or spec files; empty: the default five) scored on ``splits``
    (empty: the protocol's), or a ``corpus`` file (one text a line; no scores), or the
    vectors of an ``embeddings`` folder (``embedkit encode``; no model is run, no scores; with
    ``sample`` only that many rows are read). ``posts``:
    postprocessor chains fitted on ``fit_on`` (``task``, a split or a file; a corpus is fitted
    on itself). Diagnostics: hubness at ``k``, on a seeded sample of ``sample`` vectors (None:
    all), ``n_pairs`` random pairs for anisotropy and JL, JL at ``jl_dims``. ``retrieval``:
    recall@10 raw and with CSLS (``csls_k`` neighbours in the penalty, ``csls_candidates``
    re-ranked) on ``retrieval_tasks`` (empty: every task). ``sweep``: a sweep record to compare
    the JL estimate with.
    """

    tasks: tuple[str, ...] = ()
    corpus: str | None = None
    embeddings: str | None = None
    splits: tuple[str, ...] = ()
    posts: tuple[str, ...] = ()
    fit_on: str = "task"
    fit_unique: bool = False
    k: int = 10
    sample: int | None = None
    seed: int = 0
    n_pairs: int = 10000
    jl_dims: tuple[int, ...] = DEFAULT_JL_DIMS
    retrieval: bool = False
    retrieval_tasks: tuple[str, ...] = ()
    csls_k: int = 10
    csls_candidates: int = 100
    protocol: str = "whitening"
    max_length: int | None = None
    sweep: str | None = None
    data: DataOptions = field(default_factory=DataOptions)

    def check(self) -> None:
        """A ConfigError naming the parameter for the first bad setting."""
        for name, minimum in (("k", 1), ("seed", 0), ("n_pairs", 1), ("csls_k", 1),
                              ("csls_candidates", 1)):
            _check_int(getattr(self, name), name, minimum)
        if self.sample is not None:
            _check_int(self.sample, "sample", 2)
            if self.sample <= self.k:
                raise ConfigError(f"sample must be larger than k ({self.k}); got {self.sample}",
                                  param="sample")
        if not self.jl_dims:
            raise ConfigError("jl_dims must name at least one dimension", param="jl_dims")
        for m in self.jl_dims:
            _check_int(m, "jl_dims", 1)
        if self.max_length is not None and self.max_length < 3:
            raise ConfigError("max_length must be at least 3 ([CLS], one token, [SEP])",
                              param="max_length")
        if self.corpus is not None and self.tasks:
            raise ConfigError("give either STS tasks or a corpus file, not both", param="corpus")
        given = [n for n in ("tasks", "corpus", "embeddings") if getattr(self, n)]
        if len(given) > 1:
            raise ConfigError(f"give one input, not {' and '.join(given)}", param=given[-1])
        if self.embeddings is not None and self.retrieval:
            raise ConfigError("retrieval needs STS tasks (their positive pairs are the "
                              "relevant documents); an encode folder has none",
                              param="retrieval")
        if self.corpus is not None and self.retrieval:
            raise ConfigError("retrieval needs STS tasks (their positive pairs are the "
                              "relevant documents); a corpus file has none", param="retrieval")


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}; got {value!r}", param=name)
    return int(value)


@dataclass
class _Run:
    """What every task of one run shares."""

    enc: SentenceEncoder | None
    pools: list[Pooling]
    pipes: list[tuple[str, Pipeline]]
    options: DiagnoseOptions
    seconds: dict[str, float] = field(default_factory=lambda: {"diagnostics": 0.0,
                                                               "retrieval": 0.0})

    @property
    def encoder(self) -> SentenceEncoder:
        """The encoder of a run that encodes (an encode folder's run has none)."""
        if self.enc is None:  # pragma: no cover - the encode-folder path never encodes
            raise ConfigError("this run reads vectors and has no encoder")
        return self.enc


def run_diagnose(encoder: SentenceEncoder | EncoderConfig | str | None,
                 options: DiagnoseOptions | None = None,
                 poolings: Sequence[str | Pooling] | None = None, *,
                 command: str | None = None) -> dict[str, Any]:
    """Diagnose every pooling x postprocessor row; the JSON-ready record (``rows``,
    ``summary``, ``sweep``, ``conclusions`` beside the common header)."""
    t0 = time.perf_counter()
    options = options or DiagnoseOptions()
    options.check()
    sweep = load_sweep(options.sweep) if options.sweep else None
    if options.embeddings is not None:
        return _diagnose_embeddings(options, sweep, command, t0)
    if encoder is None:
        raise ConfigError("an encoder is needed unless the vectors come from an encode folder")
    enc = as_encoder(encoder)
    pools = list(dict.fromkeys(Pooling(p) for p in (poolings or ()))) or [
        Pooling(enc.default_pooling)]
    pipes = [(describe_post(p), p) for p in (_parse_chain(c) for c in options.posts)]
    post_files = check_chain_files(pipes, model=enc.identity, dim=enc.dim, poolings=pools)
    check_post_chains(pipes, enc.dim)  # k against d, before any encoding
    run = _Run(enc, pools, pipes, options)
    if options.corpus is not None:
        rows, data, extra = _corpus_rows(run)
    else:
        rows, data, extra = _task_rows(run)
    settings = {**_settings(options, pools, pipes, post_files), **extra}
    record = run_record("diagnose", command=command, encoder=enc, settings=settings, data=data,
                        versions_extra=("matplotlib",))
    record["rows"] = rows
    record["summary"] = summarise(rows)
    record["sweep"] = sweep_dimensions(sweep, rows, options.sweep) if sweep else None
    record["conclusions"] = conclusions(record)
    record["plots"] = []
    record["timings"] = timings(enc, t0, **{f"seconds_{k}": round(v, 3)
                                            for k, v in run.seconds.items()})
    return record


def _diagnose_embeddings(options: DiagnoseOptions, sweep: dict[str, Any] | None,
                         command: str | None, t0: float) -> dict[str, Any]:
    """``run_diagnose`` on the vectors of an encode folder (all rows, or a seeded sample of
    ``options.sample``): its pooling, no scores; chains that learn are fitted on a seeded half
    of the rows read and every row, raw included, is measured on the other half."""
    from embedkit.store.encode_folder import EncodeFolder

    folder = EncodeFolder.open(str(options.embeddings))
    r = folder.recipe
    n = folder.total_rows if options.sample is None else min(options.sample, folder.total_rows)
    if n <= options.k:
        raise ConfigError(f"{folder.path} has {folder.total_rows} vectors; hubness at "
                          f"k={options.k} needs more than k", param="embeddings")
    x = folder.sample(n, seed=options.seed).astype(np.float64)
    pipes = [(describe_post(p), p) for p in (_parse_chain(c) for c in options.posts)]
    pooling = Pooling(r.pooling)
    post_files = check_chain_files(pipes, model=r.model_identity, dim=folder.dim,
                                   poolings=[pooling])
    learns = any(pipeline_learns(p) for _, p in pipes)
    fit_x, x = _held_out(x, options, str(folder.path)) if learns else (x, x)
    check_post_chains(pipes, folder.dim, len(fit_x))
    run = _Run(None, [pooling], pipes, options)
    rows = [row for row, _ in _rows_of(run, "embeddings", {str(pooling): x},
                                       {str(pooling): fit_x})]
    fit_on = (f"embeddings: {len(fit_x)} of the rows read (seed {options.seed}); every row "
              f"measured on the other {len(x)}") if learns else None
    settings = {**_settings(options, [pooling], pipes, post_files), "embeddings": str(folder.path),
                "fit_on": fit_on,
                "tasks": ["embeddings"], "max_length": {"embeddings": r.max_length},
                "retrieval_tasks": [], "dtype": r.dtype, "device": "-"}
    data = {"embeddings": {"folder": str(folder.path), "total_rows": folder.total_rows,
                           "rows_read": n, "rows_fitted": len(fit_x) if learns else 0,
                           "rows_measured": len(x), "shards": len(folder.manifest["shards"]),
                           "inputs": folder.manifest.get("inputs")}}
    record = run_record("diagnose", command=command, encoder=None, settings=settings,
                        data=data, versions_extra=("matplotlib", "pyarrow"))
    record["model"] = {"name": r.model, "identity": r.model_identity, "path": r.model_path}
    record.update(rows=rows, summary=summarise(rows), plots=[],
                  sweep=sweep_dimensions(sweep, rows, options.sweep) if sweep else None)
    record["conclusions"] = conclusions(record)
    record["timings"] = timings(None, t0, **{f"seconds_{k}": round(v, 3)
                                             for k, v in run.seconds.items()})
    return record


def _held_out(x: np.ndarray, options: DiagnoseOptions,
              where: str) -> tuple[np.ndarray, np.ndarray]:
    """A seeded half of the rows to fit the chains on, and the other half to measure: a map
    measured on the vectors it was fitted on reads as perfectly isotropic by construction
    (whitening's IsoScore is 1), which says nothing of new vectors."""
    order = np.random.default_rng(options.seed).permutation(len(x))
    half = len(x) // 2
    if len(x) - half <= options.k:
        raise ConfigError(f"{where}: {len(x)} vectors read; the chains are fitted on half and "
                          f"measured on the other half, and hubness at k={options.k} needs more "
                          f"than k there: read more of the folder's rows or lower k",
                          param="k")
    return x[np.sort(order[:half])], x[np.sort(order[half:])]


def _parse_chain(chain: str) -> Pipeline:
    try:
        return parse_post(chain)
    except ConfigError as e:
        raise ConfigError(str(e), param="post") from None


def _settings(options: DiagnoseOptions, pools: list[Pooling], pipes: list[tuple[str, Pipeline]],
              post_files: dict[str, dict]) -> dict[str, Any]:
    learns = any(pipeline_learns(p) for _, p in pipes)
    return {
        "poolings": [str(p) for p in pools], "post": [label for label, _ in pipes],
        "fit_on": (options.fit_on if options.corpus is None else "corpus") if learns else None,
        "fit_unique": options.fit_unique if learns else None, "post_files": post_files,
        "k": options.k, "sample": options.sample, "seed": options.seed,
        "n_pairs": options.n_pairs, "jl_dims": list(options.jl_dims),
        "retrieval": options.retrieval, "retrieval_k": RETRIEVAL_K,
        "csls_k": options.csls_k, "csls_candidates": options.csls_candidates,
        "protocol": options.protocol, "sweep": options.sweep,
        "data_dir": data_dir_setting(options.data.data_dir), "source": options.data.source,
        "skip_invalid": options.data.skip_invalid,
    }


# --------------------------------------------------------------------------------------------
# rows


def _diagnose_row(run: _Run, task: str, pooling: Pooling, label: str | None,
                  x: np.ndarray) -> dict[str, Any]:
    """The diagnostics of one row's vectors (timed)."""
    o = run.options
    t = time.perf_counter()
    logger.info("diagnose: %s, %s%s (%d vectors)", task, pooling, f" + {label}" if label else "",
                x.shape[0])
    prof = profile(x, k=o.k, sample=o.sample, seed=o.seed, n_pairs=o.n_pairs,
                   jl_dims=o.jl_dims)
    run.seconds["diagnostics"] += time.perf_counter() - t
    return {"task": task, "pooling": str(pooling), "post": label,
            "row": f"{pooling} + {label}" if label else str(pooling), "dim": int(x.shape[1]),
            "columns": profile_columns(prof), "diagnostics": prof, "spearman": None,
            "spearman_avg": None, "retrieval": None}


def _rows_of(run: _Run, task: str, vecs: dict[str, np.ndarray],
             fit_vecs: dict[str, np.ndarray]) -> list[tuple[dict[str, Any], np.ndarray]]:
    """Every pooling x (raw, each chain) row of one task with its vectors."""
    out = []
    for pooling in run.pools:
        v = np.asarray(vecs[str(pooling)])
        out.append((_diagnose_row(run, task, pooling, None, v), v))
        for label, pipe in run.pipes:
            fitted = clone(pipe).fit(fit_vecs.get(str(pooling), v))
            x = np.asarray(fitted.transform(v), dtype=np.float64)
            out.append((_diagnose_row(run, task, pooling, label, x), x))
    return out


def _task_rows(run: _Run) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    o, enc = run.options, run.encoder
    specs = [get_task(t) for t in o.tasks] if o.tasks else parse_tasks(None)
    names = [s.name for s in specs]
    wanted = set(o.retrieval_tasks) or set(names)
    unknown = sorted(wanted - set(names))
    if o.retrieval and unknown:
        raise ConfigError(f"retrieval tasks {', '.join(unknown)} are not among the tasks "
                          f"diagnosed ({', '.join(names)})", param="retrieval")
    evaluator = STSEvaluator(specs, [canonical_split(s) for s in o.splits] or None,
                             protocol=o.protocol, max_length=o.max_length,
                             data_dir=o.data.data_dir, source=o.data.source,
                             skip_invalid=o.data.skip_invalid)
    rows: list[dict[str, Any]] = []
    data: dict[str, Any] = {}
    for spec in evaluator.specs:
        data[spec.name], task_rows = _diagnose_task(run, evaluator, spec,
                                                    o.retrieval and spec.name in wanted)
        rows += task_rows
    extra = {"tasks": names, "task_specs": {s.name: s.origin for s in specs},
             "splits": {s.name: list(evaluator.data[s.name]) for s in specs},
             "max_length": {s.name: evaluator.max_length_for(s, enc) for s in specs},
             "retrieval_tasks": sorted(wanted) if o.retrieval else []}
    return rows, data, extra


def _diagnose_task(run: _Run, evaluator: STSEvaluator, spec: TaskSpec,
                   retrieval: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Encode a task once per pooling, fit the chains, diagnose and score every row."""
    o, enc = run.options, run.encoder
    max_len = evaluator.max_length_for(spec, enc)
    splits = evaluator.data[spec.name]
    sentences = evaluator.sentences(spec.name)
    fit = None
    if any(pipeline_learns(p) for _, p in run.pipes):  # the fit sentences are checked first
        fit = collect_fit_sentences(o.fit_on, spec, splits, data_dir=o.data.data_dir,
                                    source=o.data.source, skip_invalid=o.data.skip_invalid,
                                    unique=o.fit_unique)
        check_post_chains(run.pipes, enc.dim, len(fit.sentences))
    vecs = enc.encode_multi(sentences, run.pools, max_length=max_len)
    record: dict[str, Any] = {**split_summary(splits), "n_sentences": len(sentences)}
    fit_vecs: dict[str, np.ndarray] = {}
    if fit is not None:
        fit_vecs = enc.encode_multi(fit.sentences, run.pools, max_length=max_len)
        record["fit"] = fit.record()
    tasks = _retrieval_tasks(spec, splits) if retrieval else {}
    if tasks:
        record["retrieval"] = {s: {"threshold": thr, "n_queries": len(t.queries),
                                   "n_corpus": len(t.corpus)} for s, (t, thr) in tasks.items()}
    rows = []
    for row, x in _rows_of(run, spec.name, vecs, fit_vecs):
        embed = lookup(sentences, x)
        row["spearman"] = evaluator.score_task(spec.name, embed)
        row["spearman_avg"] = _mean([r["spearman"] for r in row["spearman"].values()])
        if tasks:
            t = time.perf_counter()
            row["retrieval"] = {s: _evaluate(task, embed(task.corpus), o)
                                for s, (task, _) in tasks.items()}
            run.seconds["retrieval"] += time.perf_counter() - t
        rows.append(row)
    return record, rows


def _evaluate(task: RetrievalTask, corpus_x: np.ndarray, o: DiagnoseOptions
              ) -> dict[str, dict[str, Any]]:
    """Recall@10 of plain cosine search and of CSLS; queries are corpus sentences."""
    return evaluate_csls(task, corpus_x, corpus_x[np.asarray(task.query_ids)], k=RETRIEVAL_K,
                         k_penalty=o.csls_k, candidates=o.csls_candidates)


def _retrieval_tasks(spec: TaskSpec, splits: dict[str, PairSplit]
                     ) -> dict[str, tuple[RetrievalTask, float]]:
    """Each split's positives as a retrieval task (``index eval``'s thresholds)."""
    out = {}
    for name, d in splits.items():
        thr = label_threshold(spec.label_range, d.labels)
        out[name] = (pairs_to_retrieval(d.sentences1, d.sentences2, d.labels, threshold=thr),
                     thr)
    return out


def _corpus_rows(run: _Run) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """One corpus file: its unique texts, chains fitted on them, no scores."""
    o = run.options
    texts, _, info = read_corpus(str(o.corpus))
    unique = list(dict.fromkeys(texts))
    if len(unique) <= o.k:
        raise ConfigError(f"the corpus has {len(unique)} distinct texts; hubness at k={o.k} "
                          "needs more than k", param="corpus")
    max_len = o.max_length or FILE_MAX_LENGTH
    vecs = run.encoder.encode_multi(unique, run.pools, max_length=max_len)
    rows = [row for row, _ in _rows_of(run, "corpus", vecs, {})]
    data = {"corpus": {**info, "n_unique": len(unique)}}
    return rows, data, {"corpus": str(o.corpus), "tasks": ["corpus"], "max_length":
                        {"corpus": max_len}, "retrieval_tasks": []}


def _mean(values: Sequence[float | None]) -> float | None:
    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return float(np.mean(xs)) if xs else None


def _recall(row: dict[str, Any], which: str) -> float | None:
    if not row.get("retrieval"):
        return None
    return _mean([r[which][f"recall@{RETRIEVAL_K}"] for r in row["retrieval"].values()])


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per row label: the mean of every column over the tasks, the mean Spearman (bench's
    ``avg``) and the mean recall@10 raw and with CSLS over the tasks that have it."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["row"], []).append(r)
    out = []
    for label, rs in groups.items():
        cols = {key: _mean([r["columns"][key] for r in rs]) for key, _, _ in COLUMNS}
        out.append({"row": label, "pooling": rs[0]["pooling"], "post": rs[0]["post"],
                    "n_tasks": len(rs), "columns": cols,
                    "spearman_avg": _mean([r["spearman_avg"] for r in rs]),
                    "recall": _mean([_recall(r, "raw") for r in rs]),
                    "recall_csls": _mean([_recall(r, "csls") for r in rs])})
    return out


# --------------------------------------------------------------------------------------------
# the sweep comparison


def load_sweep(path: str | os.PathLike) -> dict[str, Any]:
    """A sweep record (``embedkit sweep`` JSON), or an error naming the file."""
    p = Path(path)
    if not p.is_file():
        raise MissingFileError("no such file (a JSON record written by embedkit sweep)",
                               path=str(p), param="sweep")
    try:
        record = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{p}: not a JSON record ({e})", param="sweep") from None
    if not isinstance(record, dict) or record.get("kind") != "sweep" or "results" not in record:
        raise ConfigError(f"{p}: not a sweep record (kind {record.get('kind')!r})"
                          if isinstance(record, dict) else f"{p}: not a sweep record",
                          param="sweep")
    return record


def stop_dimension(scores: dict[int, float], tolerance: float = STOP_TOLERANCE) -> int:
    """The smallest k from which Spearman stays within ``tolerance`` of its value at the
    largest k: ``min {k : score(k') >= score(k_max) - tolerance for every k' >= k}``.

    >>> stop_dimension({64: 0.60, 128: 0.695, 256: 0.70, 512: 0.70})
    128
    """
    ks = sorted(scores)
    full = scores[ks[-1]]
    stop = ks[-1]
    for k in reversed(ks):
        if scores[k] < full - tolerance:
            break
        stop = k
    return stop


def sweep_dimensions(sweep: dict[str, Any], rows: list[dict[str, Any]],
                     path: str | None = None) -> dict[str, Any]:
    """Per task and pooling in both the sweep and this run: the sweep's report-split Spearman
    against k for ``beta = gamma = 0`` (PCA truncation) and ``beta = gamma = 1`` (classic
    whitening), the dimension where it stops falling (:func:`stop_dimension`), next to this
    run's N (vectors), ``8.33 ln N`` and the measured JL distortion there."""
    raw = {(r["task"], r["pooling"]): r for r in rows if r["post"] is None}
    entries = []
    for task, by_pool in sweep["results"].items():
        for pooling, res in by_pool.items():
            mine = raw.get((task, pooling))
            if mine is None:
                continue
            jl = mine["diagnostics"]["jl"]
            entry = {"task": task, "pooling": pooling, "d": res["d"],
                     "n_vectors": jl["n_vectors"], "practical_min_dim": jl["practical_min_dim"],
                     "jl_min_dim": jl["jl_min_dim"],
                     "distortion_p99_at_practical": jl_at(mine["diagnostics"],
                                                          jl["practical_min_dim"])}
            for name, (beta, gamma) in (("pca", (0.0, 0.0)), ("classic", (1.0, 1.0))):
                curve = {int(s["k_dim"]): float(s["report"]) for s in res["settings"]
                         if float(s["beta"]) == beta and float(s["gamma"]) == gamma}
                entry[name] = ({"spearman": {str(k): v for k, v in sorted(curve.items())},
                                "stop_dim": stop_dimension(curve)} if curve else None)
            entries.append(entry)
    return {"file": path, "report_on": sweep["settings"].get("report_on"),
            "tolerance": STOP_TOLERANCE, "entries": entries}


# --------------------------------------------------------------------------------------------
# conclusions: measured sentences from the record


def _pairs_with_raw(rows: list[dict[str, Any]], post: str
                    ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    raw = {(r["task"], r["pooling"]): r for r in rows if r["post"] is None}
    return [(raw[(r["task"], r["pooling"])], r) for r in rows
            if r["post"] == post and (r["task"], r["pooling"]) in raw]


def _count(pairs: list[tuple[dict, dict]], key: str, better: str) -> tuple[float, float, int]:
    """Mean of ``key`` raw and after, and in how many pairs it is lower (``better="lower"``,
    in absolute value) or higher."""
    a = [p[0]["columns"][key] for p in pairs]
    b = [p[1]["columns"][key] for p in pairs]
    ok = [x is not None and y is not None for x, y in zip(a, b, strict=True)]
    if better == "lower":
        wins = sum(abs(y) < abs(x) for x, y, o in zip(a, b, ok, strict=True) if o)
    else:
        wins = sum(y > x for x, y, o in zip(a, b, ok, strict=True) if o)
    return _mean(a) or 0.0, _mean(b) or 0.0, int(wins)


def _geometry_conclusions(rows: list[dict[str, Any]], k: int) -> list[str]:
    out = []
    posts = list(dict.fromkeys(r["post"] for r in rows if r["post"] is not None))
    answers = []
    for post in posts:
        pairs = _pairs_with_raw(rows, post)
        n = len(pairs)
        if not n:
            continue
        cos = _count(pairs, "mean_cosine", "lower")
        skew = _count(pairs, "nk_skewness", "lower")
        rh = _count(pairs, "robinhood", "lower")
        iso = _count(pairs, "isoscore", "higher")
        text = (f"`{post}` vs raw ({n} task x pooling cases, means): mean cosine "
                f"{cos[0]:.3f} -> {cos[1]:.3f} (closer to 0 in {cos[2]}/{n}); N_{k} skewness "
                f"{skew[0]:.2f} -> {skew[1]:.2f} (lower in {skew[2]}/{n}); Robin Hood "
                f"{rh[0]:.3f} -> {rh[1]:.3f} (lower in {rh[2]}/{n}); IsoScore {iso[0]:.3f} -> "
                f"{iso[1]:.3f}")
        sp = [(a["spearman_avg"], b["spearman_avg"]) for a, b in pairs
              if a["spearman_avg"] is not None and b["spearman_avg"] is not None]
        if sp:
            text += (f"; Spearman x 100 {100 * float(np.mean([x for x, _ in sp])):.2f} -> "
                     f"{100 * float(np.mean([y for _, y in sp])):.2f} (higher in "
                     f"{sum(y > x for x, y in sp)}/{len(sp)})")
        out.append(text + ".")
        if post.startswith("whiten"):
            answers.append(f"`{post}` lowers anisotropy (|mean cosine|) in {cos[2]}/{n} task x "
                           f"pooling cases and hubness (N_{k} skewness) in {skew[2]}/{n}")
    if answers:
        out.insert(0, "Does whitening reduce anisotropy and hubness here? " + "; ".join(answers)
                   + ".")
    return out


def _rank_correlations(rows: list[dict[str, Any]]) -> list[str]:
    """Per task, the rank correlation over its rows between a diagnostic and Spearman."""
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    found: dict[str, list[float]] = {}
    for task in tasks:
        rs = [r for r in rows if r["task"] == task and r["spearman_avg"] is not None]
        if len(rs) < 4:
            continue
        score = [r["spearman_avg"] for r in rs]
        for key in ("mean_cosine", "nk_skewness", "isoscore"):
            vals = [abs(r["columns"][key]) if key == "mean_cosine" else r["columns"][key]
                    for r in rs]
            if None in vals or len(set(vals)) < 2 or len(set(score)) < 2:
                continue
            found.setdefault(key, []).append(float(stats.spearmanr(vals, score)[0]))
    if not found:
        return []
    names = {"mean_cosine": "|mean cosine|", "nk_skewness": "N_k skewness",
             "isoscore": "IsoScore"}
    parts = [f"{names[k]} rho = {np.mean(v):+.2f} (tasks {min(v):+.2f} .. {max(v):+.2f})"
             for k, v in found.items()]
    return ["Does the geometry go with the score? Rank correlation, over the rows of each task, "
            "between a diagnostic and that row's Spearman (mean over tasks): "
            + "; ".join(parts) + "."]


def _csls_conclusions(rows: list[dict[str, Any]]) -> list[str]:
    cases = [(r, s, v) for r in rows for s, v in (r["retrieval"] or {}).items()]
    if not cases:
        return []
    key = f"recall@{RETRIEVAL_K}"
    delta = [v["csls"][key] - v["raw"][key] for _, _, v in cases]
    skew = [(v["raw"]["result_skewness"], v["csls"]["result_skewness"]) for _, _, v in cases]
    top = [(v["raw"]["result_top_share"], v["csls"]["result_top_share"]) for _, _, v in cases]
    first = cases[0][2]["csls"]
    best_raw = max(cases, key=lambda c: c[2]["raw"][key])
    best_csls = max(cases, key=lambda c: c[2]["csls"][key])
    tasks = ", ".join(dict.fromkeys(f"{r['task']}/{s}" for r, s, _ in cases))
    return [
        f"CSLS re-ranking ({tasks}; penalty over {first['k_penalty']} corpus neighbours, top "
        f"{first['candidates']} re-ranked): recall@{RETRIEVAL_K} x 100 changes by "
        f"{100 * np.mean(delta):+.2f} on average over {len(cases)} rows (range "
        f"{100 * min(delta):+.2f} .. {100 * max(delta):+.2f}; higher in "
        f"{sum(d > 0 for d in delta)}, lower in {sum(d < 0 for d in delta)}); the hubness of the "
        f"result lists (skewness of N_{RETRIEVAL_K} over the queries' top {RETRIEVAL_K}) goes "
        f"from {np.mean([a for a, _ in skew]):.2f} to {np.mean([b for _, b in skew]):.2f}, the "
        f"top-1% share from {np.mean([a for a, _ in top]):.3f} to "
        f"{np.mean([b for _, b in top]):.3f}. Best row: `{best_raw[0]['row']}` "
        f"{100 * best_raw[2]['raw'][key]:.2f} plain, `{best_csls[0]['row']}` "
        f"{100 * best_csls[2]['csls'][key]:.2f} with CSLS."]


def _jl_conclusions(sweep: dict[str, Any]) -> list[str]:
    es = [e for e in sweep["entries"] if e["pca"] or e["classic"]]
    if not es:
        return []
    prac = [e["practical_min_dim"] for e in es]
    ns = [e["n_vectors"] for e in es]
    dist = [e["distortion_p99_at_practical"] for e in es
            if e["distortion_p99_at_practical"] is not None]
    text = (f"JL estimate vs the sweep: 8.33 ln N = {min(prac)} .. {max(prac)} dimensions for "
            f"N = {min(ns)} .. {max(ns)} vectors per task (the JL bound at eps = 0.5 is "
            f"{min(b['min_dim'] for e in es for b in e['jl_min_dim'] if b['eps'] == 0.5)} .. "
            f"{max(b['min_dim'] for e in es for b in e['jl_min_dim'] if b['eps'] == 0.5)}); "
            "a Gaussian random projection to 8.33 ln N dimensions distorts the squared distance "
            f"of 1% of pairs by more than {100 * min(dist):.0f} .. {100 * max(dist):.0f}%.")
    for name, what in (("pca", "beta = gamma = 0 (PCA truncation)"),
                       ("classic", "beta = gamma = 1 (classic whitening)")):
        stops = [(e[name]["stop_dim"], e["practical_min_dim"], e["d"]) for e in es if e[name]]
        if not stops:
            continue
        grid = sorted({int(k) for e in es if e[name] for k in e[name]["spearman"]})
        counts = ", ".join(f"k = {g}{' (all)' if g == max(grid) else ''}: "
                           f"{sum(s == g for s, _, _ in stops)}" for g in grid)
        at_or_below = sum(s <= min([g for g in grid if g >= p] or [max(grid)])
                          for s, p, _ in stops)
        text += (f" Sweep, {what}: Spearman stays within {100 * sweep['tolerance']:.0f} point "
                 f"of its value at all dimensions down to {counts} (of {len(stops)} task x "
                 f"pooling cases); at or below the first grid k >= 8.33 ln N in "
                 f"{at_or_below}/{len(stops)}.")
    return [text]


def conclusions(record: dict[str, Any]) -> list[str]:
    """Short measured answers, each a sentence with its numbers, from a diagnose record."""
    rows = record["rows"]
    out = _geometry_conclusions(rows, record["settings"]["k"])
    out += _rank_correlations(rows)
    out += _csls_conclusions(rows)
    if record.get("sweep"):
        out += _jl_conclusions(record["sweep"])
    return out


# --------------------------------------------------------------------------------------------
# tables, Markdown and plots


def _fmt(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if digits else str(int(round(float(value))))


def _x100(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _has_retrieval(rows: list[dict[str, Any]]) -> bool:
    return any(r.get("retrieval") for r in rows)


def format_diagnose_table(record: dict[str, Any], markdown: bool = False,
                          task: str | None = None) -> str:
    """One line per row (of ``task``, or of every task) and a column per diagnostic, then
    Spearman x 100 (mean over the splits) and, when measured, recall@10 x 100 plain and CSLS."""
    rows = [r for r in record["rows"] if task is None or r["task"] == task]
    retrieval = _has_retrieval(rows)
    header = ([] if task else ["task"]) + ["row"] + [h for _, h, _ in COLUMNS] + ["Spearman"]
    header += [f"R@{RETRIEVAL_K}", f"R@{RETRIEVAL_K} CSLS"] if retrieval else []
    body = []
    for r in rows:
        line = ([] if task else [r["task"]]) + [r["row"]]
        line += [_fmt(r["columns"][key], d) for key, _, d in COLUMNS]
        line.append(_x100(r["spearman_avg"]))
        if retrieval:
            line += [_x100(_recall(r, "raw")), _x100(_recall(r, "csls"))]
        body.append(line)
    return text_table(header, body, markdown=markdown, left=1 if task else 2, right_align=True)


def format_summary_table(record: dict[str, Any], markdown: bool = False) -> str:
    """The summary: per row label, every column's mean over the tasks."""
    summary = record["summary"]
    retrieval = any(s["recall"] is not None for s in summary)
    header = ["row"] + [h for _, h, _ in COLUMNS] + ["Spearman avg"]
    header += [f"R@{RETRIEVAL_K}", f"R@{RETRIEVAL_K} CSLS"] if retrieval else []
    body = []
    for s in summary:
        line = [s["row"]] + [_fmt(s["columns"][key], d) for key, _, d in COLUMNS]
        line.append(_x100(s["spearman_avg"]))
        if retrieval:
            line += [_x100(s["recall"]), _x100(s["recall_csls"])]
        body.append(line)
    return text_table(header, body, markdown=markdown, right_align=True)


def format_retrieval_table(record: dict[str, Any], markdown: bool = False) -> str:
    """Plain cosine vs CSLS per task/split and row: recall@1/10, MRR@10 (x 100), and the
    skewness and top-1% share of N_10 over the result lists."""
    k = RETRIEVAL_K
    header = ["task/split", "row", "R@1", f"R@{k}", f"MRR@{k}", "R@1 CSLS", f"R@{k} CSLS",
              f"MRR@{k} CSLS", f"delta R@{k}", "result skew", "skew CSLS", "top-1%",
              "top-1% CSLS"]
    body = []
    for r in record["rows"]:
        for split, v in (r["retrieval"] or {}).items():
            a, b = v["raw"], v["csls"]
            body.append([f"{r['task']}/{split}", r["row"], _x100(a["recall@1"]),
                         _x100(a[f"recall@{k}"]), _x100(a[f"mrr@{k}"]), _x100(b["recall@1"]),
                         _x100(b[f"recall@{k}"]), _x100(b[f"mrr@{k}"]),
                         f"{100 * (b[f'recall@{k}'] - a[f'recall@{k}']):+.2f}",
                         _fmt(a["result_skewness"], 2), _fmt(b["result_skewness"], 2),
                         _fmt(a["result_top_share"], 3), _fmt(b["result_top_share"], 3)])
    return text_table(header, body, markdown=markdown, left=2, right_align=True)


def format_jl_table(record: dict[str, Any], markdown: bool = False) -> str:
    """Per task and raw pooling: the 99th percentile of the squared-distance distortion of a
    Gaussian random projection at each dimension, at 8.33 ln N, and the JL bounds."""
    dims = list(record["settings"]["jl_dims"])
    raw = [r for r in record["rows"] if r["post"] is None]
    eps = [b["eps"] for b in raw[0]["diagnostics"]["jl"]["jl_min_dim"]] if raw else []
    header = (["task", "pooling", "N", "d"] + [f"p99 @{m}" for m in dims]
              + ["8.33 ln N", "p99 there"] + [f"JL eps={e:g}" for e in eps])
    body = []
    for r in raw:
        jl = r["diagnostics"]["jl"]
        body.append([r["task"], r["pooling"], str(jl["n_vectors"]), str(jl["dim"])]
                    + [_fmt(jl_at(r["diagnostics"], m), 3) for m in dims]
                    + [str(jl["practical_min_dim"]),
                       _fmt(jl_at(r["diagnostics"], jl["practical_min_dim"]), 3)]
                    + [str(b["min_dim"]) for b in jl["jl_min_dim"]])
    return text_table(header, body, markdown=markdown, left=2, right_align=True)


def format_sweep_table(record: dict[str, Any], markdown: bool = False) -> str:
    """The sweep's Spearman against k next to 8.33 ln N, per task and pooling."""
    sweep = record["sweep"]
    header = ["task", "pooling", "N", "8.33 ln N", "p99 there", "PCA (b=g=0): k -> Spearman",
              "stops falling", "classic (b=g=1): k -> Spearman", "stops falling"]

    def curve(c: dict[str, Any] | None) -> list[str]:
        if not c:
            return ["-", "-"]
        return [" / ".join(f"{k}: {100 * v:.2f}" for k, v in c["spearman"].items()),
                str(c["stop_dim"])]

    body = [[e["task"], e["pooling"], str(e["n_vectors"]), str(e["practical_min_dim"]),
             _fmt(e["distortion_p99_at_practical"], 3), *curve(e["pca"]),
             *curve(e["classic"])] for e in sweep["entries"]]
    return text_table(header, body, markdown=markdown, left=2, right_align=True)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text).strip("_") or "x"


def write_diagnose_plots(record: dict[str, Any], folder: str | os.PathLike) -> list[Path]:
    """Per task and pooling: the eigenvalue spectrum and the N_k histogram of every row of that
    pooling; per task: JL distortion against the dimension for the raw rows, with the bounds.
    Needs matplotlib (the ``plot`` extra)."""
    require_matplotlib()
    folder = Path(folder)
    model = record["model"]["name"] if record.get("model") else ""
    k = record["settings"]["k"]
    written = []
    tasks = list(dict.fromkeys(r["task"] for r in record["rows"]))
    for task in tasks:
        rows = [r for r in record["rows"] if r["task"] == task]
        for pooling in dict.fromkeys(r["pooling"] for r in rows):
            profs = {r["post"] or "raw": r["diagnostics"] for r in rows
                     if r["pooling"] == pooling}
            name = f"{_slug(task)}-{_slug(pooling)}.png"
            written.append(plot_spectra(folder / f"spectrum-{name}",
                                        f"{task}, {pooling}: covariance spectrum ({model})",
                                        profs))
            written.append(plot_occurrence(folder / f"hubness-{name}",
                                           f"{task}, {pooling}: N_{k} histogram ({model})", profs))
        raw = {r["pooling"]: r["diagnostics"] for r in rows if r["post"] is None}
        written.append(plot_jl(folder / f"jl-{_slug(task)}.png",
                               f"{task}: JL distortion of a Gaussian random projection "
                               f"({model})", raw))
    return written


def _setup_lines(record: dict[str, Any]) -> list[str]:
    s, m, t = record["settings"], record["model"], record["timings"]
    sample = (f"a seeded sample of {s['sample']} vectors per row (seed {s['seed']}; all vectors "
              "when fewer)" if s["sample"] else "all vectors")
    occurrences = "unique sentences" if s["fit_unique"] else "every occurrence"
    fit = f"fitted on {s['fit_on']} ({occurrences})" if s["fit_on"] else "nothing fitted"
    lines = [
        f"- Model: `{m['name']}` (identity `{m['identity']}`), hidden {m.get('hidden_size')}; "
        f"dtype {s['dtype']}, device {s['device']}",
        f"- Rows: poolings {', '.join(s['poolings'])} x (raw, "
        + ", ".join(f"`{p}`" for p in s["post"]) + f"); postprocessors {fit}",
        "- Max length: " + ", ".join(f"{k} {v}" for k, v in s["max_length"].items()),
        f"- Diagnostics on {sample}: anisotropy from {s['n_pairs']} random pairs; hubness at "
        f"k = {s['k']} by exact cosine search (FAISS); JL distortion of a Gaussian random "
        f"projection over {s['n_pairs']} random pairs of all vectors, at "
        f"{', '.join(map(str, s['jl_dims']))} and 8.33 ln N dimensions",
    ]
    if s.get("retrieval_tasks"):
        lines.append(f"- Retrieval: {', '.join(s['retrieval_tasks'])} (positives as relevant "
                     f"documents, as `index eval` builds them; exact search), recall@"
                     f"{s['retrieval_k']} plain and with CSLS (penalty over {s['csls_k']} "
                     f"corpus neighbours, top {s['csls_candidates']} re-ranked)")
    lines.append(f"- Timings: diagnostics {t.get('seconds_diagnostics', 0):.1f} s, retrieval "
                 f"{t.get('seconds_retrieval', 0):.1f} s; {t.get('encoded', 0)} sentences "
                 f"encoded, {t.get('cache_hits', 0)} from the cache; total "
                 f"{t.get('seconds_total', 0):.1f} s")
    return lines


def _column_notes(k: int) -> list[str]:
    return [
        "## Columns", "",
        "- mean cos: mean cosine of random pairs of distinct vectors (Ethayarajh 2019); "
        "norm(mu)/norm(x): norm of the mean vector over the mean norm.",
        "- eff. rank: exp of the entropy of the normalised singular values (Roy & Vetterli "
        "2007); IsoScore (Rudman et al. 2022): 1 isotropic, 0 one direction; d90/95/99%: "
        "principal components holding that share of the variance.",
        f"- N_k skew: skewness of the k-occurrence N_{k} (Radovanovic et al. 2010); Robin Hood "
        "index (Feldbauer et al. 2018); antihubs: share with N_k = 0; top-1% share: share of "
        "all k-NN slots taken by the 1% most frequent points.",
        "- l1/l2: ||x||_1 / (sqrt(d) ||x||_2), Hoyer: sparseness in [0, 1] (1 one-hot); means "
        "over the vectors.",
        "- Spearman: x 100, cosine similarity, mean over the scored splits (the STS evaluator); "
        f"R@{RETRIEVAL_K}: recall x 100, plain cosine and CSLS re-ranked (Conneau et al. 2018).",
        "",
    ]


def _plot_lines(record: dict[str, Any], plots: Sequence[Path],
                markdown_path: str | os.PathLike | None) -> list[str]:
    if not plots:
        return []
    base = Path(markdown_path).parent if markdown_path else None

    def rel(p: Path) -> str:
        return os.path.relpath(p, base) if base is not None else str(p)

    out = ["## Plots", "",
           "Per task: JL distortion against the dimension (raw poolings, with 8.33 ln N and the "
           "JL bounds); per task and pooling: the eigenvalue spectrum and the N_k histogram of "
           "each row.", ""]
    for task in dict.fromkeys(r["task"] for r in record["rows"]):
        mine = [p for p in plots if p.name.endswith(".png")
                and (p.name == f"jl-{_slug(task)}.png" or f"-{_slug(task)}-" in p.name)]
        out.append(f"- {task}: " + ", ".join(f"[{p.stem}]({rel(p)})" for p in mine))
    jl = [p for p in plots if p.name.startswith("jl-")]
    if jl:
        out += ["", f"![{jl[0].stem}]({rel(jl[0])})"]
    return out + [""]


def diagnose_markdown(record: dict[str, Any], plots: Sequence[Path] | None = None,
                      markdown_path: str | os.PathLike | None = None) -> str:
    """The report: how to regenerate it, machine, versions, setup, the measured answers, the
    summary and per-task tables, retrieval, JL and the sweep comparison, plots, data."""
    s = record["settings"]
    out = [f"# embedkit diagnose: {run_title(record)}", ""]
    out += provenance_lines(record) + _setup_lines(record)
    out += ["", "## Measured answers", ""] + [f"- {c}" for c in record["conclusions"]]
    if len(s["tasks"]) > 1:
        out += ["", "## Summary: mean over the tasks", "", format_summary_table(record, True)]
    for task in s["tasks"]:
        d = record["data"].get(task, {})
        n = d.get("n_sentences", d.get("n_unique", "?"))
        out += ["", f"## {task} ({n} distinct sentences)", "",
                format_diagnose_table(record, markdown=True, task=task)]
    if _has_retrieval(record["rows"]):
        out += ["", f"## Retrieval: plain cosine vs CSLS (x 100, k = {RETRIEVAL_K})", "",
                format_retrieval_table(record, True)]
    out += ["", "## Johnson-Lindenstrauss: measured distortion and the estimates", "",
            "99th percentile of |d'^2/d^2 - 1| over random pairs under a Gaussian random "
            "projection (raw vectors); 8.33 ln N: the practical estimate; JL eps: "
            "sklearn's johnson_lindenstrauss_min_dim(N, eps).", "", format_jl_table(record, True)]
    if record.get("sweep"):
        sw = record["sweep"]
        out += ["", "## JL estimate vs the whitening sweep", "",
                f"Spearman x 100 on {sw['report_on']} from `{sw['file']}`; 'stops falling': the "
                f"smallest k from which Spearman stays within {100 * sw['tolerance']:.0f} point "
                "of its value at all dimensions.", "", format_sweep_table(record, True)]
    out += [""] + _plot_lines(record, plots or [], markdown_path) + _column_notes(s["k"])
    out += _data_lines(record)
    return "\n".join(out) + "\n"


def _data_lines(record: dict[str, Any]) -> list[str]:
    out = ["## Data", "", "| task | split | pairs | skipped | sha256 |", "|---|---|---:|---:|---|"]
    for task, splits in record["data"].items():
        if "sha256" in splits:  # a corpus file
            out.append(f"| {task} | - | {splits.get('n_texts', '-')} texts | - | "
                       f"`{splits['sha256'][:16]}` |")
            continue
        for split, d in splits.items():
            if isinstance(d, dict) and "n_pairs" in d:
                out.append(f"| {task} | {split} | {d['n_pairs']} | {d['skipped']} | "
                           f"`{d['sha256'][:16]}` |")
    return out + [""]
