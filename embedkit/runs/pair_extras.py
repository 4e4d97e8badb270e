"""What ``bench`` adds beside Spearman: pair classification with thresholds chosen on another
split, and bootstrap intervals.

For a binary task (labels 0/1) each evaluated split gets ``classification``: per similarity
(cosine by default; dot, euclidean on request), the thresholds of best accuracy and best F1
chosen on the *selection split* and the accuracy, F1, precision and recall they give on the
evaluated split, its average precision, and ``oracle`` (mteb's numbers, thresholds chosen on
the evaluated split itself). The selection split is ``valid`` when ``test`` is evaluated, else
``train`` (AFQMC, whose ``valid`` is what C-MTEB scores), sampled (seeded) to at most
``select_pairs`` pairs. With ``ci`` resamples, ``ci`` holds the bootstrap interval of
Spearman (and of the calibrated accuracy and of AP on binary tasks).

``sweep`` reports the same numbers for the setting it selects (:func:`setting_classification`):
thresholds chosen on its ``select_on`` split, metrics on its ``report_on`` split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from embedkit.data import PairSplit, load_split
from embedkit.data.loading import DataOptions, task_splits
from embedkit.data.spec import TaskSpec
from embedkit.evaluation.bootstrap import bootstrap_interval
from embedkit.evaluation.classification import SIMILARITIES, calibrated_scores, pair_similarities

if TYPE_CHECKING:
    from embedkit.postprocess import RunningMoments

__all__ = ["PairExtras", "load_selection", "score_extras", "selection_split",
           "setting_classification"]

_Embed = Callable[[list[str]], np.ndarray]
Transform = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class PairExtras:
    """``classify``: pair-classification metrics on binary tasks; ``ci``: bootstrap resamples
    (0: no intervals); ``seed`` of the resamples and of the selection sample."""

    classify: bool = False
    ci: int = 0
    seed: int = 0
    similarities: tuple[str, ...] = ("cosine",)
    select_pairs: int = 10000

    @property
    def active(self) -> bool:
        return self.classify or self.ci > 0


def selection_split(spec: TaskSpec, split: str) -> str | None:
    """The split whose pairs choose the thresholds reported on ``split``.

    >>> from embedkit.data import get_task
    >>> selection_split(get_task("LCQMC"), "test"), selection_split(get_task("AFQMC"), "valid")
    ('valid', 'train')
    """
    have = task_splits(spec)
    for cand in ("valid", "train"):
        if cand != split and cand in have and split != "train":
            return cand
    return None


def load_selection(spec: TaskSpec, splits: list[str], extras: PairExtras,
                   data: DataOptions) -> dict[str, PairSplit]:
    """The selection split (sampled) of each evaluated split of a binary task."""
    if not (extras.classify and spec.is_binary):
        return {}
    out: dict[str, PairSplit] = {}
    for split in splits:
        sel = selection_split(spec, split)
        if sel is not None:
            s = load_split(spec, sel, data_dir=data.data_dir, source=data.source,
                           skip_invalid=data.skip_invalid)
            out[split] = s.sample(extras.select_pairs, extras.seed)
    return out


def _sides(embed: _Embed, s: PairSplit, transform: Transform | None
           ) -> tuple[np.ndarray, np.ndarray]:
    e1, e2 = embed(s.sentences1), embed(s.sentences2)
    return (transform(e1), transform(e2)) if transform is not None else (e1, e2)


def _classify(e: tuple[np.ndarray, np.ndarray], labels: np.ndarray, sel: PairSplit,
              sel_e: tuple[np.ndarray, np.ndarray], extras: PairExtras) -> dict[str, Any]:
    sims = pair_similarities(*e, extras.similarities)
    sel_sims = pair_similarities(*sel_e, extras.similarities)
    sampled = sel.source.endswith(")")  # PairSplit.sample's source ends "#sample(...)"
    out: dict[str, Any] = {
        "selected_on": f"{sel.split} ({sel.n_pairs} pairs{f', seed {extras.seed}' if sampled else ''})",
        "selection": {"split": sel.split, "n_pairs": sel.n_pairs, "sha256": sel.sha256,
                      "source": sel.source}}
    for name, scores in sims.items():
        out[name] = calibrated_scores((sel_sims[name], sel.labels), (scores, labels),
                                      SIMILARITIES[name])
    return out


def score_extras(splits: dict[str, PairSplit], embed: _Embed, transform: Transform | None,
                 selection: dict[str, PairSplit], sel_embed: _Embed | None,
                 extras: PairExtras) -> dict[str, dict[str, Any]]:
    """Per evaluated split: ``classification`` and/or ``ci`` (see the module)."""
    out: dict[str, dict[str, Any]] = {}
    for split, s in splits.items():
        e = _sides(embed, s, transform)
        add: dict[str, Any] = {}
        sel = selection.get(split)
        if sel is not None and sel_embed is not None:
            add["classification"] = _classify(e, s.labels, sel, _sides(sel_embed, sel, transform),
                                              extras)
        if extras.ci > 0:
            add["ci"] = _intervals(e, s.labels, add.get("classification"), extras)
        out[split] = add
    return out


def _intervals(e: tuple[np.ndarray, np.ndarray], labels: np.ndarray,
               cls: dict[str, Any] | None, extras: PairExtras) -> dict[str, Any]:
    cos = pair_similarities(*e)["cosine"]
    opts = {"n_resamples": extras.ci, "seed": extras.seed}
    out = {"spearman": bootstrap_interval("spearman", cos, labels, **opts)}
    if cls is not None:
        c = cls["cosine"]
        out["accuracy"] = bootstrap_interval("accuracy", cos, labels,
                                             threshold=c["accuracy_threshold"], **opts)
        out["ap"] = bootstrap_interval("ap", cos, labels, **opts)
    return out


def setting_classification(moments: RunningMoments, setting: dict[str, Any], eps: float,
                           pairs: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
                           select: PairSplit, report_on: str) -> dict[str, Any]:
    """``classification`` of one whitening setting of a sweep (``beta``, ``gamma``, ``k_dim``
    fitted on ``moments``): cosine thresholds chosen on the pairs of ``select`` (its vectors
    ``pairs[select.split]``), accuracy / F1 / precision / recall / AP on ``pairs[report_on]``,
    as bench reports them (``PairExtras.classify``)."""
    from embedkit.postprocess import WhiteningFamily

    fam = WhiteningFamily.from_stats(moments, float(setting["beta"]), eps)
    m = fam.map(float(setting["gamma"]), int(setting["k_dim"]))
    x1, x2, labels = pairs[report_on]
    s1, s2, _ = pairs[select.split]
    return _classify((m.apply(x1), m.apply(x2)), labels, select, (m.apply(s1), m.apply(s2)),
                     PairExtras(classify=True))
