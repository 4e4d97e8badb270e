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
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from embedkit.aliases import JSONDict, StrPath
from embedkit.data import DataOptions, PairSplit, parse_tasks
from embedkit.data.corpus import read_corpus
from embedkit.data.registry import get_task
from embedkit.data.selection import FILE_MAX_LENGTH, collect_fit_sentences
from embedkit.data.spec import TaskSpec, canonical_split
from embedkit.diagnostics import COLUMNS, DEFAULT_JL_DIMS, jl_at, profile, profile_columns
from embedkit.encoders import EncoderConfig, Pooling, SentenceEncoder, as_encoder
from embedkit.errors import ConfigError, MissingFileError, check_int
from embedkit.evaluation import STSEvaluator, lookup
from embedkit.postprocess import (
    bytes_per_vector,
    check_chain_files,
    describe_post,
    parse_post,
    pipeline_learns,
)
from embedkit.postprocess.checks import check_post_chains
from embedkit.postprocess.quantize import scored_output
from embedkit.postprocess.spec import PostOptions
from embedkit.retrieval.hubness import evaluate_csls
from embedkit.retrieval.tasks import RetrievalTask, pairs_to_retrieval
from embedkit.runs.index_eval import label_threshold
from embedkit.runs.record import (
    DiagnoseRecord,
    data_dir_setting,
    run_record,
    split_summary,
    timings,
)

__all__ = ["DiagnoseOptions", "run_diagnose", "sweep_dimensions", "mean_present", "row_recall",
           "RETRIEVAL_K"]

logger = logging.getLogger(__name__)

#: the cut-off of the retrieval columns (recall@10)
RETRIEVAL_K = 10
#: Spearman drop (x 100: one point) within which a sweep's k counts as "not fallen yet"
_STOP_TOLERANCE = 0.01


@dataclass(frozen=True)
class DiagnoseOptions:
    """What ``diagnose`` measures.

    Input: STS ``tasks`` (names or spec files; empty: the default five) scored on ``splits``
    (empty: the protocol's), or a ``corpus`` file (one text a line; no scores), or the
    vectors of an ``embeddings`` folder (``embedkit encode``; no model is run, no scores; with
    ``sample`` only that many rows are read). ``post``: postprocessor chains
    (:class:`~embedkit.postprocess.spec.PostOptions`) fitted on its ``fit_on`` (``task``, a split
    or a file; a corpus is fitted on itself). Diagnostics: hubness at ``k``, on a seeded sample of ``sample`` vectors (None:
    all), ``n_pairs`` random pairs for anisotropy and JL, JL at ``jl_dims``. ``retrieval``:
    recall@10 raw and with CSLS (``csls_k`` neighbours in the penalty, ``csls_candidates``
    re-ranked) on ``retrieval_tasks`` (empty: every task). ``sweep``: a sweep record to compare
    the JL estimate with.
    """

    tasks: tuple[str, ...] = ()
    corpus: str | None = None
    embeddings: str | None = None
    splits: tuple[str, ...] = ()
    post: PostOptions = field(default_factory=PostOptions)
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
            check_int(getattr(self, name), name, minimum)
        if self.sample is not None:
            check_int(self.sample, "sample", 2)
            if self.sample <= self.k:
                raise ConfigError(f"sample must be larger than k ({self.k}); got {self.sample}",
                                  param="sample")
        if not self.jl_dims:
            raise ConfigError("jl_dims must name at least one dimension", param="jl_dims")
        for m in self.jl_dims:
            check_int(m, "jl_dims", 1)
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
                 command: str | None = None) -> DiagnoseRecord:
    """Diagnose every pooling x postprocessor row; the JSON-ready record (``rows``,
    ``summary``, ``sweep`` beside the common header: numbers only; the report's sentences are
    :func:`embedkit.reports.diagnose.conclusions`)."""
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
    pipes = [(describe_post(p), p) for p in (_parse_chain(c) for c in options.post.chains)]
    post_files = check_chain_files(pipes, model=enc.identity, dim=enc.dim, poolings=pools)
    check_post_chains(pipes, enc.dim)  # k against d, before any encoding
    run = _Run(enc, pools, pipes, options)
    if options.corpus is not None:
        rows, data, extra = _corpus_rows(run)
    else:
        rows, data, extra = _task_rows(run)
    settings = {**_settings(options, pools, pipes, post_files), **extra}
    record = cast(DiagnoseRecord, run_record("diagnose", command=command, encoder=enc,
                                             settings=settings, data=data,
                                             versions_extra=("matplotlib",)))
    record["rows"] = rows
    record["summary"] = _summarise(rows)
    record["sweep"] = sweep_dimensions(sweep, rows, options.sweep) if sweep else None
    record["plots"] = []
    record["timings"] = timings(enc, t0, **{f"seconds_{k}": round(v, 3)
                                            for k, v in run.seconds.items()})
    return record


def _diagnose_embeddings(options: DiagnoseOptions, sweep: dict[str, Any] | None,
                         command: str | None, t0: float) -> DiagnoseRecord:
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
    pipes = [(describe_post(p), p) for p in (_parse_chain(c) for c in options.post.chains)]
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
    record = cast(DiagnoseRecord, run_record("diagnose", command=command, encoder=None,
                                             settings=settings, data=data,
                                             versions_extra=("matplotlib", "pyarrow")))
    record["model"] = {"name": r.model, "identity": r.model_identity, "path": r.model_path}
    record["rows"], record["summary"], record["plots"] = rows, _summarise(rows), []
    record["sweep"] = sweep_dimensions(sweep, rows, options.sweep) if sweep else None
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
              post_files: dict[str, JSONDict]) -> dict[str, Any]:
    learns = any(pipeline_learns(p) for _, p in pipes)
    return {
        "poolings": [str(p) for p in pools], "post": [label for label, _ in pipes],
        "fit_on": (options.post.fit_on if options.corpus is None else "corpus") if learns else None,
        "fit_unique": options.post.fit_unique if learns else None, "post_files": post_files,
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
            # a quantiser's codes decoded: the vectors its scores are computed on
            scored, similarity = scored_output(fitted, v)
            x = np.asarray(scored, dtype=np.float64)
            row = _diagnose_row(run, task, pooling, label, x)
            row.update(similarity=similarity or "cosine",
                       bytes_per_vector=bytes_per_vector(fitted, v.shape[1]))
            out.append((row, x))
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
        fit = collect_fit_sentences(o.post.fit_on, spec, splits, data_dir=o.data.data_dir,
                                    source=o.data.source, skip_invalid=o.data.skip_invalid,
                                    unique=o.post.fit_unique)
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
        row["spearman"] = evaluator.score_task(spec.name, embed,
                                               similarity=row.get("similarity") or "cosine")
        row["spearman_avg"] = mean_present([r["spearman"] for r in row["spearman"].values()])
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


def mean_present(values: Sequence[float | None]) -> float | None:
    """The mean of the values present (``None`` and NaN left out); ``None`` when none is."""
    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return float(np.mean(xs)) if xs else None


def row_recall(row: dict[str, Any], which: str) -> float | None:
    """A row's recall@10 (``which``: ``raw`` or ``csls``) averaged over its retrieval tasks."""
    if not row.get("retrieval"):
        return None
    return mean_present([r[which][f"recall@{RETRIEVAL_K}"] for r in row["retrieval"].values()])


def _summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per row label: the mean of every column over the tasks, the mean Spearman (bench's
    ``avg``) and the mean recall@10 raw and with CSLS over the tasks that have it."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["row"], []).append(r)
    out = []
    for label, rs in groups.items():
        cols = {key: mean_present([r["columns"][key] for r in rs]) for key, _, _ in COLUMNS}
        out.append({"row": label, "pooling": rs[0]["pooling"], "post": rs[0]["post"],
                    "n_tasks": len(rs), "columns": cols,
                    "spearman_avg": mean_present([r["spearman_avg"] for r in rs]),
                    "recall": mean_present([row_recall(r, "raw") for r in rs]),
                    "recall_csls": mean_present([row_recall(r, "csls") for r in rs])})
    return out


# --------------------------------------------------------------------------------------------
# the sweep comparison


def load_sweep(path: StrPath) -> dict[str, Any]:
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


def stop_dimension(scores: dict[int, float], tolerance: float = _STOP_TOLERANCE) -> int:
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
            "tolerance": _STOP_TOLERANCE, "entries": entries}
