"""The STS evaluator: a callable returning a flat dict of named metrics, with a primary metric,
in the way sentence-transformers' evaluators are built.

Metric names: ``<task>/<split>/spearman`` (and ``pearson``, ``n_pairs``), ``<task>/avg/spearman``
(unweighted over the splits evaluated), ``<task>/w-avg/spearman`` (weighted by pairs) and
``avg/spearman`` (the mean over tasks of their ``avg``: the primary metric).

>>> import numpy as np
>>> from embedkit.data import PairSplit
>>> s = PairSplit("T", "test", "-", "", ["a", "b", "c"], ["a", "x", "y"], np.array([1.0, 0, 0]))
>>> vec = {"a": [1.0, 0.0], "b": [0.0, 1.0], "c": [1.0, 1.0], "x": [1.0, 0.2], "y": [1.0, 0.1]}
>>> m = score_splits({"T": {"test": s}}, lambda sents: np.array([vec[t] for t in sents]))
>>> round(m["T/test/spearman"], 4), m["T/test/n_pairs"], round(m["avg/spearman"], 4)
(0.866, 3, 0.866)
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

import numpy as np

from embedkit.data import PairSplit, get_task, load_task
from embedkit.data.spec import TaskSpec
from embedkit.evaluation.metrics import pair_scores
from embedkit.evaluation.protocols import get_protocol

PRIMARY_METRIC = "avg/spearman"


def _mean(xs: list[float]) -> float:
    xs = [x for x in xs if not math.isnan(x)]
    return float(np.mean(xs)) if xs else float("nan")


def aggregate(per_split: dict[str, dict[str, dict]]) -> dict[str, float]:
    """Flat metrics from ``{task: {split: {"spearman", "pearson", "n_pairs"}}}``."""
    out: dict[str, float] = {}
    task_avgs: dict[str, list[float]] = {"spearman": [], "pearson": []}
    for task, splits in per_split.items():
        n_total = sum(r["n_pairs"] for r in splits.values())
        for split, r in splits.items():
            for k in ("spearman", "pearson", "n_pairs"):
                out[f"{task}/{split}/{k}"] = r[k]
        for k in ("spearman", "pearson"):
            avg = _mean([r[k] for r in splits.values()])
            out[f"{task}/avg/{k}"] = avg
            out[f"{task}/w-avg/{k}"] = (sum(r[k] * r["n_pairs"] for r in splits.values()) / n_total
                                       if n_total else float("nan"))
            task_avgs[k].append(avg)
    for k, vals in task_avgs.items():
        out[f"avg/{k}"] = _mean(vals)
    return out


def score_splits(data: dict[str, dict[str, PairSplit]],
                 embed: Callable[[list[str]], np.ndarray]) -> dict[str, float]:
    """Score each split with ``embed`` (sentences -> vectors); flat metrics as :func:`aggregate`."""
    per: dict[str, dict[str, dict]] = {}
    for task, splits in data.items():
        per[task] = {}
        for split, s in splits.items():
            per[task][split] = pair_scores(embed(s.sentences1), embed(s.sentences2), s.labels)
    return aggregate(per)


class STSEvaluator:
    """Spearman of cosine similarity on STS tasks, for an :class:`~embedkit.encoders.Encoder`.

    >>> ev = STSEvaluator(["STS-B"], data_dir="../shared/data")      # doctest: +SKIP
    >>> metrics = ev(Encoder("m3e-small"))                           # doctest: +SKIP
    >>> metrics[ev.primary_metric]                                   # doctest: +SKIP
    0.7...
    """

    def __init__(self, tasks: Sequence[str | TaskSpec] | None = None,
                 splits: Sequence[str] | None = None, *, protocol: str = "whitening",
                 max_length: int | None = None, data_dir: str | os.PathLike | None = None,
                 source: str = "auto", skip_invalid: bool = False, name: str = ""):
        from embedkit.data.registry import DEFAULT_TASKS

        self.specs = [t if isinstance(t, TaskSpec) else get_task(t) for t in (tasks or DEFAULT_TASKS)]
        self.protocol = get_protocol(protocol)
        self.max_length = max_length
        self.name = name
        self.data = {
            spec.name: load_task(spec, self.protocol.splits(spec, tuple(splits or ())),
                                 data_dir=data_dir, source=source, skip_invalid=skip_invalid)
            for spec in self.specs
        }
        self.primary_metric = f"{name}/{PRIMARY_METRIC}" if name else PRIMARY_METRIC

    def __call__(self, encoder, pooling: str | None = None, transform=None) -> dict[str, float]:
        """Evaluate ``encoder`` (with ``pooling``; ``transform`` maps vectors to vectors)."""
        metrics: dict[str, float] = {}
        for spec in self.specs:
            max_len = self.protocol.max_length(spec, encoder.model_max_length(), self.max_length)

            def embed(sents, _m=max_len):
                v = encoder.encode(sents, pooling, max_length=_m)
                return transform(v) if transform is not None else v

            metrics.update(score_splits({spec.name: self.data[spec.name]}, embed))
        flat = aggregate_from_flat(metrics, [s.name for s in self.specs])
        return {f"{self.name}/{k}" if self.name else k: v for k, v in flat.items()}


def aggregate_from_flat(metrics: dict[str, float], tasks: list[str]) -> dict[str, float]:
    """Recompute the across-task means after tasks were scored one at a time."""
    out = {k: v for k, v in metrics.items() if not k.startswith("avg/")}
    for k in ("spearman", "pearson"):
        out[f"avg/{k}"] = _mean([metrics[f"{t}/avg/{k}"] for t in tasks])
    return out
