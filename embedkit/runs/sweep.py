"""``embedkit sweep``: the whitening family ``(beta, gamma, k)`` on one encoding per task, with
honest selection (its tables, Markdown report and plots: :mod:`embedkit.reports.sweep`).

Each task is encoded once (through the encoder's cache); the moments are accumulated once per
task and pooling, Sigma is eigen-decomposed once per ``beta`` and every ``(gamma, k)`` is scored
from the same decomposition (:class:`~embedkit.postprocess.WhiteningFamily`), so a 60-setting
grid on five tasks takes seconds once the vectors are cached. The best setting per task is
chosen on ``select_on`` (valid) and reported on ``report_on`` (test), beside the raw score and
the classic ``beta = gamma = 1, k = all``.

>>> opts = SweepOptions(beta=(1.0,), gamma=(0.5, 1.0), k=(64, "all"))
>>> opts.n_settings, _setting_label(1.0, 0.5, "all")
(4, 'whiten:beta=1,gamma=0.5,k=all')
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from embedkit.aliases import JSONDict
from embedkit.data import PairSplit, load_task, parse_tasks
from embedkit.data.registry import get_task
from embedkit.data.selection import collect_fit_sentences
from embedkit.data.spec import TaskSpec, canonical_split
from embedkit.encoders import EncoderConfig, Pooling, SentenceEncoder, as_encoder
from embedkit.errors import ConfigError
from embedkit.evaluation import get_protocol, pair_scores, quantize_cosines, spearman
from embedkit.postprocess import (
    RunningMoments,
    WhiteningFamily,
    describe_post,
    parse_post,
    quantizer_of,
    score_grid,
)
from embedkit.postprocess.family import score_quantized_grid
from embedkit.postprocess.spec import PostOptions, _num  # the number format of whitening specs
from embedkit.runs.bench import DataOptions
from embedkit.runs.pair_extras import setting_classification
from embedkit.runs.record import (
    SweepRecord,
    add_timings,
    data_dir_setting,
    run_record,
    split_summary,
    truncation_counts,
)

__all__ = [
    "SweepOptions",
    "run_sweep",
    "sweep_vectors",
]

_CLASSIC = (1.0, 1.0, "all")
#: rows of vectors added to the moments at a time (bounds memory whatever the repeats)
_CHUNK = 8192


def _unique(values: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(dict.fromkeys(values))


def _check_grid(name: str, values: Sequence[Any]) -> tuple[Any, ...]:
    out = _unique(values)
    if not out:
        raise ConfigError(f"{name}: empty grid", param=name)
    for v in out:
        if name == "k":
            ok = v == "all" or (isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                and v >= 1)
        else:
            ok = isinstance(v, (int, float, np.number)) and math.isfinite(float(v))
        if not ok:
            expected = "positive integers or 'all'" if name == "k" else "finite numbers"
            raise ConfigError(f"{name}: {v!r} is not valid; expected {expected}", param=name)
    return tuple(out if name == "k" else (float(v) for v in out))


@dataclass(frozen=True)
class SweepOptions:
    """The grid (``beta``, ``gamma``, ``k`` values; ``eps`` of the eigenvalue floor), what the
    maps are fitted on (``post``: its ``fit_on``, task, a split name or a file, and
    ``fit_unique``; its chains are unused, the grid makes them) and the split
    the best setting is chosen on (``select_on``) and reported on (``report_on``);
    ``classify``: on binary tasks, the best setting's pair classification too (thresholds
    chosen on ``select_on``, reported on ``report_on``; ``best["classification"]``);
    ``quantize_vectors``: a quantiser step (``int8``, ``uint8:clip=0.99``, ``binary``,
    ``ubinary``)
    after every setting (and the classic one), fitted on the fit vectors that setting maps and
    scored as bench scores it (cosine of the dequantised vectors, Hamming similarity)."""

    beta: Sequence[float] = (0.0, 0.5, 1.0)
    gamma: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0)
    k: Sequence[int | str] = (64, 128, 256, "all")
    eps: float = 1e-6
    post: PostOptions = field(default_factory=PostOptions)
    select_on: str = "valid"
    report_on: str = "test"
    classify: bool = False
    quantize_vectors: str | None = None

    def __post_init__(self) -> None:
        for name in ("beta", "gamma", "k"):
            object.__setattr__(self, name, _check_grid(name, getattr(self, name)))
        if self.quantize_vectors is not None:
            object.__setattr__(self, "quantize_vectors", describe_post(self.quantizer()))
        object.__setattr__(self, "select_on", canonical_split(self.select_on))
        object.__setattr__(self, "report_on", canonical_split(self.report_on))

    @property
    def n_settings(self) -> int:
        return len(self.beta) * len(self.gamma) * len(self.k)

    def quantizer(self) -> Any:
        """The unfitted quantiser step of ``quantize_vectors`` (None without one)."""
        if self.quantize_vectors is None:
            return None
        steps = parse_post(self.quantize_vectors).steps
        if len(steps) != 1 or quantizer_of(steps[0][1]) is None:
            raise ConfigError(f"quantize_vectors {self.quantize_vectors!r}: expected one "
                              "quantiser step (int8, uint8, binary or ubinary, e.g. "
                              "int8:clip=0.99)", param="quantize_vectors")
        return steps[0][1]

    @property
    def honest(self) -> bool:
        """Whether the best setting is reported on another split than it was chosen on."""
        return self.select_on != self.report_on


def _setting_label(beta: float, gamma: float, k: int | str) -> str:
    """The post-processing spec of a setting: ``whiten:beta=1,gamma=0.5,k=256``."""
    return f"whiten:beta={_num(beta)},gamma={_num(gamma)},k={k}"


def _spearman_of_cosines(cos: np.ndarray, labels: np.ndarray) -> float:
    """The evaluation layer's score of cosines: Spearman of the quantised cosines."""
    return spearman(quantize_cosines(cos), labels)


# -- one task and pooling ---------------------------------------------------------------------

def _setting(beta: float, gamma: float, k: int | str, k_dim: int,
             scores: Mapping[str, np.ndarray], at: tuple[int, int], opts: SweepOptions) -> JSONDict:
    quant = opts.quantizer()
    return {"beta": float(beta), "gamma": float(gamma), "k": k, "k_dim": k_dim,
            "bytes_per_vector": 4 * k_dim if quant is None else quant.bytes_for(k_dim),
            "post": _setting_label(beta, gamma, k)
            + (f",{opts.quantize_vectors}" if quant else ""),
            "select": float(scores[opts.select_on][at]),
            "report": float(scores[opts.report_on][at])}


def _grid_scores(fam: WhiteningFamily, gammas: Sequence[float], ks: Sequence[int],
                 wanted: Mapping[str, tuple], opts: SweepOptions,
                 fit_x: np.ndarray | None) -> dict[str, np.ndarray]:
    """Every ``(gamma, k)`` scored: from the decomposition, or each map then the quantiser."""
    if opts.quantize_vectors is None:
        return score_grid(fam, gammas, ks, wanted, _spearman_of_cosines)
    if fit_x is None:
        raise ConfigError("quantize: the quantiser's ranges are fitted on the fit vectors; "
                          "pass them (fit_x)", param="quantize_vectors")
    return score_quantized_grid(fam, gammas, ks, fit_x, wanted, opts.quantizer(),
                                lambda a, b, y, sim: pair_scores(a, b, y, sim)["spearman"])


def sweep_vectors(moments: RunningMoments, pairs: Mapping[str, tuple], opts: SweepOptions,
                  fit_x: np.ndarray | None = None) -> dict[str, Any]:
    """The sweep of one task and pooling, from the fit vectors' moments and the evaluation
    pairs (``{split: (X1, X2, labels)}``); ``fit_x``, the fit vectors (every occurrence), is
    needed only with ``opts.quantize_vectors``.

    Returns ``{"d", "raw", "classic", "settings" (one dict per setting, grid order), "best",
    "skipped_k"}``; scores are Spearman (fractions, not x 100).
    """
    d = int(moments.d or 0)
    kept = [k for k in opts.k if k == "all" or int(k) <= d]
    if not kept:
        raise ConfigError(f"every k value is larger than the dimension d={d}; use k <= {d} "
                          "or all", param="k")
    k_dims = [d if k == "all" else int(k) for k in kept]
    distinct = moments.distinct
    if max(k_dims) > distinct:
        raise ConfigError(
            f"the grid keeps up to k={max(k_dims)} directions but the fit vectors hold only "
            f"{distinct} distinct ones (of {moments.n}): the other directions would be "
            f"arbitrary; give k values <= {distinct} (no 'all') or fit on more sentences",
            param="k")
    raw = {role: pair_scores(*pairs[split])["spearman"]
           for role, split in (("select", opts.select_on), ("report", opts.report_on))}
    wanted = {s: pairs[s] for s in (opts.select_on, opts.report_on)}
    settings = []
    families: dict[float, WhiteningFamily] = {}
    for beta in opts.beta:
        fam = families[beta] = WhiteningFamily.from_stats(moments, beta, opts.eps)
        scores = _grid_scores(fam, opts.gamma, k_dims, wanted, opts, fit_x)
        settings += [_setting(beta, gamma, k, k_dims[ki], scores, (gi, ki), opts)
                     for gi, gamma in enumerate(opts.gamma) for ki, k in enumerate(kept)]
    classic = next((s for s in settings if (s["beta"], s["gamma"], s["k"]) == _CLASSIC), None)
    if classic is None and distinct < d:  # cannot be meaningful: not scored
        classic = {"beta": 1.0, "gamma": 1.0, "k": "all", "k_dim": d,
                   "post": _setting_label(1.0, 1.0, "all"), "select": math.nan,
                   "report": math.nan,
                   "note": f"not scored: {distinct} distinct fit vectors < d={d}"}
    elif classic is None:
        fam = families.get(1.0) or WhiteningFamily.from_stats(moments, 1.0, opts.eps)
        scores = _grid_scores(fam, [1.0], [d], wanted, opts, fit_x)
        classic = _setting(1.0, 1.0, "all", d, scores, (0, 0), opts)
    finite = [i for i, s in enumerate(settings) if not math.isnan(s["select"])]
    best = None
    if finite:
        i = max(finite, key=lambda j: (settings[j]["select"], -j))  # ties: first in the grid
        best = {**settings[i], "index": i}
    return {"d": d, "raw": raw, "classic": dict(classic), "settings": settings, "best": best,
            "skipped_k": [k for k in opts.k if k not in kept]}


def _moments(vectors: np.ndarray, rows: np.ndarray, counts: np.ndarray) -> RunningMoments:
    """Moments of ``vectors[rows]`` each repeated ``counts`` times, in bounded memory."""
    stats = RunningMoments()
    for start in range(0, len(rows), _CHUNK):
        r = rows[start:start + _CHUNK]
        c = counts[start:start + _CHUNK]
        block = vectors[r]
        stats.update(np.repeat(block, c, axis=0) if c.max() > 1 else block)
    return stats


# -- the run ----------------------------------------------------------------------------------

def run_sweep(encoder: SentenceEncoder | EncoderConfig | str,
              poolings: Sequence[str] | None = None,
              tasks: Sequence[str | TaskSpec] | str | None = None,
              options: SweepOptions | None = None, *, protocol: str = "whitening",
              max_length: int | None = None, data: DataOptions | None = None,
              command: str | None = None) -> SweepRecord:
    """Encode each task once, sweep the grid per pooling, select honestly; the JSON record.

    The max length per task follows the evaluation ``protocol`` (``max_length`` overrides it).
    """
    t_start = time.perf_counter()
    opts = options or SweepOptions()
    data = data or DataOptions()
    enc = as_encoder(encoder)
    pools = list(dict.fromkeys(Pooling(p) for p in (poolings or ()))) or [enc.default_pooling]
    specs = _task_specs(tasks, opts)
    _check_grid_k(opts.k, int(enc.dim or 0))  # before any encoding
    proto = get_protocol(protocol)
    max_lengths = {s.name: proto.max_length(s, enc.model_max_length(), max_length)
                   for s in specs}
    data_record: dict[str, Any] = {}
    results: dict[str, Any] = {}
    seconds = 0.0
    truncated: dict[str, dict[str, dict[str, int]]] = {"truncated": {}, "truncated_of": {}}
    for spec in specs:
        data_record[spec.name], results[spec.name], sec, counts = _sweep_task(
            spec, enc, pools, opts, data, max_lengths[spec.name])
        seconds += sec
        for key, value in zip(truncated, counts or (), strict=False):
            truncated[key].update(value)
    settings = {
        "poolings": [str(p) for p in pools], "tasks": [s.name for s in specs],
        "task_specs": {s.name: s.origin for s in specs},
        "betas": list(opts.beta), "gammas": list(opts.gamma), "ks": list(opts.k),
        "eps": opts.eps, "fit_on": opts.post.fit_on, "fit_unique": opts.post.fit_unique,
        "select_on": opts.select_on, "report_on": opts.report_on, "classify": opts.classify,
        "quantize": opts.quantize_vectors,
        "protocol": proto.name,
        "max_length": max_lengths, "data_dir": data_dir_setting(data.data_dir),
        "source": data.source, "skip_invalid": data.skip_invalid, "honest": opts.honest}
    record = cast(SweepRecord, run_record("sweep", command=command, encoder=enc,
                                          settings=settings, data=data_record,
                                          versions_extra=("matplotlib",)))
    record["results"] = results
    if truncated["truncated"]:  # the encoder counts truncated sentences (count_truncated)
        record["truncated"], record["truncated_of"] = (truncated["truncated"],
                                                       truncated["truncated_of"])
    n_scored = sum(len(r["settings"]) for by_pool in results.values() for r in by_pool.values())
    add_timings(record, enc, t_start, seconds_sweep=round(seconds, 3),
                n_settings=opts.n_settings, n_scored=n_scored)
    return record


def _check_grid_k(ks: Sequence[int | str], d: int, distinct: int | None = None) -> None:
    """Refuse, before any encoding, a grid whose every k exceeds the dimension ``d``, or
    whose largest kept k exceeds the ``distinct`` fit sentences (their vectors span at most
    that many directions); ``d`` 0: unknown, not checked.

    >>> _check_grid_k([64, "all"], 32)
    >>> _check_grid_k([64, 128], 32)
    Traceback (most recent call last):
    embedkit.errors.ConfigError: every k value is larger than the dimension d=32; use k <= 32 or all
    """
    if not d:
        return
    kept = [d if k == "all" else int(k) for k in ks if k == "all" or int(k) <= d]
    if not kept:
        raise ConfigError(f"every k value is larger than the dimension d={d}; use k <= {d} "
                          "or all", param="k")
    if distinct is not None and max(kept) > distinct:
        raise ConfigError(
            f"the grid keeps up to k={max(kept)} directions but the fit sentences hold only "
            f"{distinct} distinct ones: the other directions would be arbitrary; give k values "
            f"<= {distinct} (no 'all') or fit on more sentences", param="k")


def _task_specs(tasks: Sequence[str | TaskSpec] | str | None, opts: SweepOptions
                ) -> list[TaskSpec]:
    specs = parse_tasks(tasks) if tasks is None or isinstance(tasks, str) else [
        t if isinstance(t, TaskSpec) else get_task(t) for t in tasks]
    for spec in specs:
        for param, split in (("select_on", opts.select_on), ("report_on", opts.report_on)):
            if split not in spec.splits:
                raise ConfigError(f"{param} {split}: task {spec.name} has no {split} split (it "
                                  f"has {', '.join(spec.splits)})", param=param)
    return specs


def _sweep_task(spec: TaskSpec, enc: SentenceEncoder, pools: list[Pooling], opts: SweepOptions,
                data: DataOptions, max_len: int) -> tuple[JSONDict, JSONDict, float, tuple | None]:
    """One task: load, encode the evaluation and fit sentences once, sweep every pooling.
    Returns the task's data record, its results per pooling, the seconds spent sweeping and
    the truncation counts (:func:`truncation_counts`; None when the encoder cannot count)."""
    splits = load_task(spec, list(dict.fromkeys([opts.select_on, opts.report_on])),
                       data_dir=data.data_dir, source=data.source,
                       skip_invalid=data.skip_invalid)
    fit = collect_fit_sentences(opts.post.fit_on, spec, splits, data_dir=data.data_dir,
                                source=data.source, skip_invalid=data.skip_invalid,
                                unique=opts.post.fit_unique)
    if not fit.sentences:
        raise ConfigError(f"fit_on {opts.post.fit_on}: no sentences to fit on for {spec.name}",
                          param="fit_on")
    _check_grid_k(opts.k, int(enc.dim or 0), len(set(fit.sentences)))  # before encoding
    record: dict[str, Any] = {**split_summary(splits), "fit": fit.record()}
    counts: dict[str, int] = {}
    for s in fit.sentences:
        counts[s] = counts.get(s, 0) + 1
    union = list(dict.fromkeys([*(t for d in splits.values()
                                  for t in (*d.sentences1, *d.sentences2)), *counts]))
    row_of = {s: i for i, s in enumerate(union)}
    vecs = enc.encode_multi(union, pools, max_length=max_len)
    fit_rows = np.fromiter((row_of[s] for s in counts), dtype=np.int64, count=len(counts))
    fit_counts = np.fromiter(counts.values(), dtype=np.int64, count=len(counts))
    results: dict[str, Any] = {}
    seconds = 0.0
    for pooling in pools:
        v = vecs[str(pooling)]
        t0 = time.perf_counter()
        moments = _moments(v, fit_rows, fit_counts)
        pairs = _pairs(splits, v, row_of)
        fit_x = (np.repeat(v[fit_rows], fit_counts, axis=0)
                 if opts.quantize_vectors is not None else None)
        res = sweep_vectors(moments, pairs, opts, fit_x)
        seconds += time.perf_counter() - t0
        if opts.classify and spec.is_binary and res["best"] is not None:
            res["best"]["classification"] = setting_classification(
                moments, res["best"], opts.eps, pairs, splits[opts.select_on], opts.report_on)
        res["n_fit"] = int(moments.n)
        results[str(pooling)] = res
    truncated = truncation_counts(enc, {spec.name: splits}, {spec.name: max_len})
    return record, results, seconds, truncated


def _pairs(splits: Mapping[str, PairSplit], v: np.ndarray, row_of: Mapping[str, int]
           ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return {split: (v[[row_of[t] for t in d.sentences1]], v[[row_of[t] for t in d.sentences2]],
                    d.labels) for split, d in splits.items()}
