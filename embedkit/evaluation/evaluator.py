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
import numbers
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from embedkit.aliases import JSONDict, StrPath
from embedkit.data import PairSplit, get_task, load_task
from embedkit.data.registry import DEFAULT_TASKS
from embedkit.data.spec import TaskSpec
from embedkit.encoders import SentenceEncoder
from embedkit.errors import ConfigError
from embedkit.evaluation.metrics import pair_scores
from embedkit.evaluation.protocols import EvalProtocol, get_protocol

PRIMARY_METRIC = "avg/spearman"


def _check_max_length(max_length: int | None) -> int | None:
    """``max_length`` if it is None or an integer >= 3 ([CLS], one token, [SEP]); else a
    :class:`ConfigError` (0 is refused, not read as "the default").

    >>> _check_max_length(None), _check_max_length(16)
    (None, 16)
    """
    if max_length is None:
        return None
    if isinstance(max_length, bool) or not isinstance(max_length, numbers.Integral) or (
            max_length < 3):
        raise ConfigError(f"max_length must be at least 3 ([CLS], one token, [SEP]), not "
                          f"{max_length!r}", param="max_length")
    return int(max_length)


class UndefinedScoreWarning(UserWarning):
    """A split's Spearman is undefined (constant labels or cosines): every average that
    includes it is NaN, never a mean of the rest."""


def _mean(xs: list[float]) -> float:
    """The mean; NaN when any value is NaN (an undefined score is never dropped silently)."""
    return float(np.mean(xs)) if xs else float("nan")


def undefined_scores(per_split: dict[str, dict[str, JSONDict]]) -> list[tuple[str, str, str]]:
    """``(task, split, reason)`` of every split whose Spearman is undefined (NaN).

    >>> undefined_scores({"T": {"test": {"spearman": float("nan"), "undefined": "constant labels"},
    ...                         "valid": {"spearman": 0.5}}})
    [('T', 'test', 'constant labels')]
    """
    return [(task, split, str(r.get("undefined") or "NaN"))
            for task, splits in per_split.items() for split, r in splits.items()
            if r["spearman"] is None or math.isnan(r["spearman"])]


def undefined_message(task: str, split: str, reason: str) -> str:
    """The one line that says a score is undefined (the warning, the CLI, the table footer)."""
    return f"{task}/{split}: Spearman is undefined ({reason})"


def aggregate(per_split: dict[str, dict[str, JSONDict]]) -> dict[str, float]:
    """Flat metrics from ``{task: {split: {"spearman", "pearson", "n_pairs"}}}``.

    A split whose score is undefined (NaN) makes its task's averages and the across-task
    average NaN, and is named in an :class:`UndefinedScoreWarning`.
    """
    for task, split, reason in undefined_scores(per_split):
        warnings.warn(undefined_message(task, split, reason) + "; the averages that include it "
                      "are undefined (NaN)", UndefinedScoreWarning, stacklevel=2)
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
                 embed: Callable[[list[str]], np.ndarray],
                 similarity: str = "cosine") -> dict[str, float]:
    """Score each split with ``embed`` (sentences -> vectors); flat metrics as :func:`aggregate`."""
    per: dict[str, dict[str, JSONDict]] = {}
    for task, splits in data.items():
        per[task] = {}
        for split, s in splits.items():
            per[task][split] = pair_scores(embed(s.sentences1), embed(s.sentences2), s.labels,
                                           similarity)
    return aggregate(per)


#: vectors -> vectors, applied to both sides of every pair (a fitted postprocessor's transform)
Transform = Callable[[np.ndarray], np.ndarray]


class STSEvaluator:
    """Spearman of cosine similarity on STS tasks: the one STS scoring path of embedkit.

    Loads the tasks' splits once (those the protocol names, or ``splits``); calling it with an
    encoder returns flat metrics (``<task>/<split>/spearman`` ..., ``avg/spearman`` the primary
    one). Runners that encode once and score many rows (poolings x postprocessors) use
    :meth:`sentences`, :meth:`max_length_for` and :meth:`score_task` directly.

    >>> ev = STSEvaluator(["STS-B"], data_dir="../shared/data")      # doctest: +SKIP
    >>> metrics = ev(Encoder("m3e-small"))                           # doctest: +SKIP
    >>> metrics[ev.primary_metric]                                   # doctest: +SKIP
    0.7...
    """

    greater_is_better = True

    def __init__(self, tasks: Sequence[str | TaskSpec] | None = None,
                 splits: Sequence[str] | None = None, *, protocol: str = "whitening",
                 max_length: int | None = None, data_dir: StrPath | None = None,
                 source: str = "auto", skip_invalid: bool = False, name: str = "") -> None:
        self.specs = [t if isinstance(t, TaskSpec) else get_task(t)
                      for t in (tasks or DEFAULT_TASKS)]
        self.protocol: EvalProtocol = get_protocol(protocol)
        self.max_length = _check_max_length(max_length)
        self.name = name
        self.data: dict[str, dict[str, PairSplit]] = {
            spec.name: load_task(spec, self.protocol.splits(spec, tuple(splits or ())),
                                 data_dir=data_dir, source=source, skip_invalid=skip_invalid)
            for spec in self.specs
        }
        self.primary_metric = f"{name}/{PRIMARY_METRIC}" if name else PRIMARY_METRIC

    @classmethod
    def from_splits(cls, data: dict[str, dict[str, PairSplit]], specs: Sequence[TaskSpec], *,
                    protocol: str = "whitening", max_length: int | None = None,
                    name: str = "") -> STSEvaluator:
        """An evaluator over splits already loaded (or sampled), ``{task: {split: PairSplit}}``."""
        ev = cls.__new__(cls)
        ev.specs, ev.protocol, ev.max_length, ev.name = list(specs), get_protocol(protocol), (
            _check_max_length(max_length)), name
        ev.data = {s.name: data[s.name] for s in ev.specs}
        ev.primary_metric = f"{name}/{PRIMARY_METRIC}" if name else PRIMARY_METRIC
        return ev

    def sentences(self, task: str) -> list[str]:
        """The distinct sentences of a task's loaded splits, in first-seen order."""
        return list(dict.fromkeys(t for d in self.data[task].values()
                                  for t in (*d.sentences1, *d.sentences2)))

    def max_length_for(self, spec: TaskSpec, encoder: SentenceEncoder) -> int:
        """The max length the protocol uses for this task and encoder."""
        return self.protocol.max_length(spec, encoder.model_max_length(), self.max_length)

    def score_task(self, task: str, embed: Callable[[list[str]], np.ndarray],
                   transform: Transform | None = None,
                   similarity: str = "cosine") -> dict[str, dict[str, Any]]:
        """``{split: {"spearman", "pearson", "n_pairs"}}`` with ``embed`` (sentences -> vectors),
        ``transform`` applied to both sides, pairs compared by ``similarity``.

        A ``transform`` of a chain that ends in a quantiser (a fitted pipeline's bound
        ``transform``, or the pipeline) is scored as the quantiser says, whatever
        ``similarity``: its codes decoded (int8/uint8: cosine of the dequantised vectors;
        binary: Hamming similarity of the bits). This is the one place where a chain's output
        becomes scores, so bench and diagnose score quantisers alike.
        """
        quant = None
        if transform is not None:  # scikit-learn is imported for runs with a chain only
            from embedkit.postprocess.quantize import quantizer_of

            quant = quantizer_of(transform)
        apply = getattr(transform, "transform", transform)
        if quant is not None:
            similarity = quant.similarity
        out: dict[str, dict[str, Any]] = {}
        for split, d in self.data[task].items():
            e1, e2 = embed(d.sentences1), embed(d.sentences2)
            if apply is not None:
                e1, e2 = apply(e1), apply(e2)
            if quant is not None:
                e1, e2 = quant.decode(e1), quant.decode(e2)
            out[split] = pair_scores(e1, e2, d.labels, similarity)
        return out

    def __call__(self, encoder: SentenceEncoder, pooling: str | None = None,
                 transform: Transform | None = None,
                 similarity: str | None = None) -> dict[str, float]:
        """Evaluate ``encoder`` (with ``pooling``; ``transform`` maps vectors to vectors;
        ``similarity``: the one the model declares unless given)."""
        sim = similarity or declared_similarity(encoder)
        per: dict[str, dict[str, dict[str, Any]]] = {}
        for spec in self.specs:
            max_len = self.max_length_for(spec, encoder)
            vecs = lookup(self.sentences(spec.name),
                          encoder.encode(self.sentences(spec.name), pooling, max_length=max_len))
            per[spec.name] = self.score_task(spec.name, vecs, transform, sim)
        flat = aggregate(per)
        return {f"{self.name}/{k}" if self.name else k: v for k, v in flat.items()}


def declared_similarity(encoder: SentenceEncoder) -> str:
    """The similarity an encoder's model folder declares (``cosine`` when it declares none)."""
    return str(encoder.describe().get("similarity") or "cosine")


def lookup(sentences: Sequence[str], vectors: np.ndarray) -> Callable[[list[str]], np.ndarray]:
    """``texts -> rows of vectors`` for texts among ``sentences`` (encoded once, looked up).

    >>> f = lookup(["a", "b"], np.array([[1.0], [2.0]]))
    >>> f(["b", "a", "b"]).ravel().tolist()
    [2.0, 1.0, 2.0]
    """
    row = {s: i for i, s in enumerate(sentences)}
    return lambda texts: vectors[[row[t] for t in texts]]
