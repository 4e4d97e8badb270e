"""Default search settings chosen when an index is built, so that an IVF or HNSW index searched
without ``nprobe`` / ``ef_search`` does not quietly fall back to FAISS's ``nprobe=1``.

A :class:`RecallProbe` takes a seeded sample of the indexed vectors as queries, collects their
exact nearest neighbours (a Flat search behind the same baked transform) while the vectors are
added, and :meth:`RecallProbe.choose` then searches the built index with growing ``nprobe``
(IVF) or ``efSearch`` (HNSW) and keeps the smallest value whose recall@10 against the exact
neighbours reaches :data:`TARGET_RECALL`. A query's own vector is left out of both lists (it is
indexed, so it would be found for free). The choice, the recall it reached and how it was
measured are stored in the index recipe as ``search_defaults``.

>>> import numpy as np
>>> from embedkit.retrieval.faiss_ops import build_faiss
>>> x = np.random.default_rng(0).standard_normal((2000, 16)).astype("float32")
>>> index, _ = build_faiss(x, "IVF32,Flat", "cosine", None)
>>> probe = RecallProbe.for_matrix(x, "cosine", None, seed=0)
>>> probe.observe(x, 0)
>>> chosen = probe.choose(index, "IVF32,Flat")
>>> chosen["nprobe"] > 1 and chosen["recall_at_10"] >= 0.95
True
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from embedkit.postprocess.affine import AffineMap
from embedkit.retrieval.faiss_ops import (
    ivf_nlist,
    make_faiss_index,
    search_parameters,
    tunable_parameters,
)
from embedkit.store.encode_folder import draw_rows

logger = logging.getLogger(__name__)

__all__ = ["TARGET_RECALL", "TUNE_QUERIES", "RecallProbe",
           "RowProbe", "search_defaults_of", "tune_defaults"]

TARGET_RECALL = 0.95
_TUNE_K = 10
TUNE_QUERIES = 200
EF_SEARCH_CANDIDATES = (16, 32, 64, 128, 256, 512, 1024)
_LARGER_IS_BETTER = {"cosine": True, "ip": True, "l2": False}


def search_defaults_of(recipe: dict[str, Any] | None) -> dict[str, int]:
    """The stored default settings of a recipe: ``{"nprobe": N}`` / ``{"ef_search": E}``
    (``{}`` for folders built before defaults were stored, or indexes with nothing to tune).

    >>> search_defaults_of({"search_defaults": {"nprobe": 8, "recall_at_10": 0.97}})
    {'nprobe': 8}
    >>> search_defaults_of({})
    {}
    """
    stored = (recipe or {}).get("search_defaults") or {}
    return {k: int(stored[k]) for k in ("nprobe", "ef_search")
            if isinstance(stored, dict) and isinstance(stored.get(k), int)}


class RecallProbe:
    """Exact top-``k`` neighbours of a few query vectors, gathered chunk by chunk as the
    vectors are added to an index (labels in insertion order)."""

    def __init__(self, queries: np.ndarray, query_labels: np.ndarray, metric: str,
                 transform: AffineMap | None, *, k: int = _TUNE_K, seed: int = 0) -> None:
        self.queries = np.ascontiguousarray(queries, dtype=np.float32)
        self.query_labels = np.asarray(query_labels, dtype=np.int64)
        self.metric, self.transform, self.k, self.seed = metric, transform, int(k), int(seed)
        nq = self.queries.shape[0]
        worst = -np.inf if _LARGER_IS_BETTER[metric] else np.inf
        self._scores = np.full((nq, self.k + 1), worst, dtype=np.float32)
        self._labels = np.full((nq, self.k + 1), -1, dtype=np.int64)

    @classmethod
    def for_matrix(cls, x: np.ndarray, metric: str, transform: AffineMap | None, *,
                   seed: int = 0, n_queries: int = TUNE_QUERIES) -> RecallProbe:
        """Queries: ``n_queries`` rows of ``x`` drawn with ``seed + 1`` (another stream than
        the training sample's); their labels are their row numbers."""
        rows = draw_rows(x.shape[0], n_queries, int(seed) + 1)
        return cls(x[rows], rows, metric, transform, seed=seed)

    def observe(self, x: np.ndarray, first_label: int) -> None:
        """Fold the vectors ``x`` (labels ``first_label ..``) into the exact neighbours."""
        if x.shape[0] == 0 or self.queries.shape[0] == 0:
            return
        flat = make_faiss_index(x.shape[1], "Flat", self.metric, self.transform)
        flat.add(np.ascontiguousarray(x, dtype=np.float32))
        scores, labels = flat.search(self.queries, min(self.k + 1, x.shape[0]))
        labels = np.where(labels >= 0, labels + int(first_label), -1)
        self._merge(scores, labels)

    def _merge(self, scores: np.ndarray, labels: np.ndarray) -> None:
        s = np.concatenate([self._scores, scores], axis=1)
        lab = np.concatenate([self._labels, labels], axis=1)
        order = np.argsort(-s if _LARGER_IS_BETTER[self.metric] else s, axis=1,
                           kind="stable")[:, : self.k + 1]
        self._scores = np.take_along_axis(s, order, axis=1)
        self._labels = np.take_along_axis(lab, order, axis=1)

    def _without_self(self, labels: np.ndarray) -> list[set[int]]:
        out = []
        for row, own in zip(labels, self.query_labels, strict=True):
            kept = [int(i) for i in row if i >= 0 and i != own][: self.k]
            out.append(set(kept))
        return out

    def recall(self, index: Any, factory: str, **setting: int) -> float:
        """recall@k of ``index`` searched with ``setting`` against the exact neighbours."""
        params = search_parameters(index, factory, nprobe=setting.get("nprobe"),
                                   ef_search=setting.get("ef_search"))
        k = min(self.k + 1, int(index.ntotal))
        labels = index.search(self.queries, k, params=params)[1]
        truth, found = self._without_self(self._labels), self._without_self(labels)
        hits = [len(t & f) / len(t) for t, f in zip(truth, found, strict=True) if t]
        return float(np.mean(hits)) if hits else 1.0

    def choose(self, index: Any, factory: str, target: float = TARGET_RECALL
               ) -> dict[str, Any] | None:
        """The smallest ``nprobe`` (IVF) or ``efSearch`` (HNSW) whose recall@k reaches
        ``target``, with the recall it reached; when none does (PQ codes, or rescoring a few
        candidates, cap the recall), the smallest that reached the best recall tried, so a
        plateau is not searched to its end. None when the index has nothing to tune or no query."""
        names = tunable_parameters(index)
        if "nprobe" in names:
            nlist = int(ivf_nlist(index) or 1)
            key, candidates = "nprobe", powers_of_two(nlist)
        elif "efSearch" in names:
            key, candidates = "ef_search", list(EF_SEARCH_CANDIDATES)
        else:
            return None
        if self.queries.shape[0] == 0 or index.ntotal < 2:
            return None
        return choose_setting(key, candidates, lambda v: self.recall(index, factory, **{key: v}),
                              target, k=self.k, queries=int(self.queries.shape[0]),
                              seed=self.seed, factory=factory)


def choose_setting(key: str, candidates: Sequence[int], recall: Callable[[int], float],
                   target: float, *, k: int, queries: int, seed: int,
                   factory: str) -> dict[str, Any]:
    """Try ``candidates`` of the search setting ``key`` in order (``recall(value)``: recall@k
    against exact search) and keep the first reaching ``target``; when none does (PQ codes, or
    rescoring a few candidates, cap the recall), the smallest at the best recall tried, so a
    plateau is not searched to its end. Float and quantised indexes are tuned by it alike."""
    tried: list[dict[str, Any]] = []
    for value in candidates:
        got = recall(value)
        tried.append({key: value, f"recall_at_{k}": round(got, 4)})
        if got >= target:
            break
    chosen = tried[-1]
    if chosen[f"recall_at_{k}"] < target:
        best = max(t[f"recall_at_{k}"] for t in tried)
        chosen = next(t for t in tried if t[f"recall_at_{k}"] == best)
    logger.info("default %s=%d for %r (recall@%d %.3f against exact search)", key,
                chosen[key], factory, k, chosen[f"recall_at_{k}"])
    return {**chosen, "target": target, "k": k, "queries": queries, "seed": seed,
            "reached": chosen[f"recall_at_{k}"] >= target, "tried": tried}


class RowProbe:
    """A :class:`RecallProbe` fed batch by batch as rows are indexed: its queries are
    :data:`TUNE_QUERIES` of the ``total`` rows drawn with ``seed + 1`` (another stream than the
    training sample's) and read with ``read_rows``; their labels are learnt as the rows are
    kept (a query whose row is not indexed, a repeated text, keeps label -1)."""

    def __init__(self, total: int, read_rows: Callable[[np.ndarray], np.ndarray], metric: str,
                 transform: AffineMap | None, *, seed: int = 0,
                 n_queries: int = TUNE_QUERIES, chunk: int = 16384) -> None:
        self.rows = draw_rows(int(total), n_queries, int(seed) + 1)
        self.probe = RecallProbe(read_rows(self.rows), np.full(len(self.rows), -1), metric,
                                 transform, seed=seed)
        self.start = 0  # the source row of the next batch's first row
        self.chunk = int(chunk)

    def see(self, x: np.ndarray, keep: Sequence[int], first_label: int) -> None:
        """A batch's rows ``x`` of which ``keep`` were indexed from label ``first_label``."""
        if len(keep):
            kept_x = x if len(keep) == x.shape[0] else x[np.asarray(keep)]
            for lo in range(0, len(keep), self.chunk):
                self.probe.observe(np.ascontiguousarray(kept_x[lo:lo + self.chunk]),
                                   first_label + lo)
            kept = self.start + np.asarray(keep, dtype=np.int64)
            pos = np.searchsorted(self.rows, kept)
            hit = pos < len(self.rows)
            hit[hit] = self.rows[pos[hit]] == kept[hit]
            self.probe.query_labels[pos[hit]] = first_label + np.flatnonzero(hit)
        self.start += x.shape[0]


def tune_defaults(index: Any, x: np.ndarray, factory: str, metric: str,
                  transform: AffineMap | None, *, seed: int = 0) -> dict[str, Any] | None:
    """:meth:`RecallProbe.choose` for an index holding exactly the rows of ``x`` (in order);
    None (and no work) when the index has nothing to tune."""
    if not {"nprobe", "efSearch"} & tunable_parameters(index):
        return None
    probe = RowProbe(x.shape[0], lambda rows: x[rows], metric, transform, seed=seed)
    probe.see(x, range(x.shape[0]), 0)
    return probe.probe.choose(index, factory)


def powers_of_two(nlist: int) -> list[int]:
    """The ``nprobe`` values tried: 1, 2, 4, ... below ``nlist``, then ``nlist``."""
    values, v = [], 1
    while v < nlist:
        values.append(v)
        v *= 2
    return [*values, nlist]
