"""STS / paraphrase pairs turned into retrieval tasks.

Every unique sentence of the split (both columns, negatives included as distractors) becomes a
corpus entry; every first sentence of a positive pair becomes a query whose relevant entries are
its partners. Queries are corpus sentences too, so by default :func:`evaluate_retrieval` removes
a query's own corpus entry from its ranking, *unless* that entry is relevant: a positive pair of
identical sentences is kept and the query's own text counts as its relevant document.

>>> task = pairs_to_retrieval(["a", "a", "b"], ["x", "y", "z"], [1, 1, 0])
>>> task.corpus, task.queries, task.relevant
(['a', 'x', 'y', 'b', 'z'], ['a'], [{1, 2}])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from embedkit.errors import ConfigError
from embedkit.retrieval.metrics import DEFAULT_KS, graded_retrieval_scores, retrieval_scores

if TYPE_CHECKING:  # pragma: no cover
    from embedkit.data.retrieval import RetrievalSplit
    from embedkit.postprocess.affine import AffineMap
    from embedkit.retrieval.index import EmbeddingIndex, Hit

__all__ = ["RetrievalTask", "evaluate_retrieval", "hit_keys", "pairs_to_retrieval",
           "task_from_split"]


@dataclass
class RetrievalTask:
    """A retrieval task: ``relevant[q]`` holds the corpus ids relevant to ``queries[q]``.

    ``query_ids[q]`` is the corpus id of the query's own text (queries come from the corpus).
    """

    corpus: list[str]
    queries: list[str]
    relevant: list[set[int]]
    query_ids: list[int] = field(default_factory=list)
    #: a task read from files (:func:`task_from_split`): graded judgements by string ids,
    #: ``qrels[query_key][corpus_key] = score``; ``corpus_keys[i]`` the ids of ``corpus[i]``
    #: (several when entries share a text); ``query_keys[q]`` the id of ``queries[q]``
    qrels: dict[str, dict[str, int]] | None = None
    corpus_keys: list[list[str]] = field(default_factory=list)
    query_keys: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.relevant) != len(self.queries):
            raise ConfigError(f"{len(self.queries)} queries but {len(self.relevant)} relevant sets")
        if not self.query_ids:
            pos = {t: i for i, t in enumerate(self.corpus)}
            self.query_ids = [pos.get(q, -1) for q in self.queries]

    @property
    def n_positive_pairs(self) -> int:
        return sum(len(r) for r in self.relevant)


def pairs_to_retrieval(
    sentences1: Sequence[str],
    sentences2: Sequence[str],
    labels: Sequence[float] | np.ndarray,
    *,
    threshold: float = 1.0,
    both_directions: bool = False,
) -> RetrievalTask:
    """Turn labelled sentence pairs into a :class:`RetrievalTask`.

    A pair is positive when ``label >= threshold`` (1 for binary sets, e.g. 4 for STS-B's 0-5
    scale). Corpus: the unique sentences in first-seen order (s1 then s2, pair by pair). Query:
    sentence1 with relevant sentence2 (and, with ``both_directions``, sentence2 with relevant
    sentence1); several positives of one query merge into one query with several relevant ids.
    A pair of identical sentences is kept: the query's own text is its relevant entry.

    >>> t = pairs_to_retrieval(["a", "b"], ["b", "c"], [5, 3], threshold=4, both_directions=True)
    >>> t.queries, t.relevant
    (['a', 'b'], [{1}, {0}])
    """
    s1, s2 = list(sentences1), list(sentences2)
    labels = list(labels)
    if not (len(s1) == len(s2) == len(labels)):
        raise ConfigError(
            f"sentences1, sentences2 and labels differ in length ({len(s1)}, {len(s2)}, "
            f"{len(labels)})"
        )
    corpus: list[str] = []
    pos: dict[str, int] = {}

    def cid(text: str) -> int:
        if not isinstance(text, str):
            raise ConfigError(f"sentences must be strings, got {type(text).__name__}")
        if text not in pos:
            pos[text] = len(corpus)
            corpus.append(text)
        return pos[text]

    queries: list[str] = []
    relevant: list[set[int]] = []
    qpos: dict[str, int] = {}

    def link(query: str, doc: str) -> None:
        if query not in qpos:
            qpos[query] = len(queries)
            queries.append(query)
            relevant.append(set())
        relevant[qpos[query]].add(pos[doc])

    for a, b, label in zip(s1, s2, labels, strict=True):
        cid(a)
        cid(b)
        try:
            positive = float(label) >= threshold
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"label {label!r} is not a number") from exc
        if positive:
            link(a, b)
            if both_directions:
                link(b, a)
    if not queries:
        raise ConfigError(
            f"no pair has a label >= {threshold}; is the threshold right for this set's scale "
            "(1 for binary labels, e.g. 4 for 0-5 STS scores)?"
        )
    return RetrievalTask(corpus, queries, relevant, [pos[q] for q in queries])


def task_from_split(split: RetrievalSplit) -> RetrievalTask:
    """A retrieval task read from files (corpus, queries, qrels) as a :class:`RetrievalTask`:
    the corpus is its distinct texts (entries sharing a text share a vector and a score), the
    queries are not corpus entries (nothing is excluded from their rankings), ``relevant``
    holds the positions judged > 0 and ``qrels`` the graded judgements."""
    corpus: list[str] = []
    keys: list[list[str]] = []
    pos: dict[str, int] = {}
    for cid, text in zip(split.corpus_ids, split.corpus_texts, strict=True):
        if text not in pos:
            pos[text] = len(corpus)
            corpus.append(text)
            keys.append([])
        keys[pos[text]].append(cid)
    at = {cid: pos[t] for cid, t in zip(split.corpus_ids, split.corpus_texts, strict=True)}
    relevant = [{at[d] for d, g in split.qrels[q].items() if g > 0} for q in split.query_ids]
    return RetrievalTask(corpus, list(split.query_texts), relevant, [-1] * len(split.query_ids),
                         qrels={q: dict(split.qrels[q]) for q in split.query_ids},
                         corpus_keys=keys, query_keys=list(split.query_ids))


def hit_keys(task: RetrievalTask, index: EmbeddingIndex) -> list[list[str]]:
    """The task's corpus ids of each of ``index``'s entries: the entry's own id (given when it
    was built) and the ids of the task's entries with the same text that the index left out as
    duplicates. Every judged relevant id must be found, else a :class:`ConfigError` (an index
    built from other data, or without the corpus file's ``_id`` as ids)."""
    texts = index.texts
    user = index.user_ids
    by_text = {t: i for i, t in enumerate(task.corpus)}
    indexed = {u for u in user if u is not None}
    known = {k for ks in task.corpus_keys for k in ks}
    out: list[list[str]] = []
    for text, uid in zip(texts, user, strict=True):
        if uid is None or uid not in known:  # not one of the task's entries
            out.append([uid] if uid is not None else [])
            continue
        same = task.corpus_keys[by_text[text]] if text in by_text else []
        out.append([uid] + [k for k in same if k != uid and k not in indexed])
    found = {k for ks in out for k in ks}
    wanted = {d for judged in (task.qrels or {}).values() for d, g in judged.items() if g > 0}
    missing = sorted(wanted - found)
    if missing:
        raise ConfigError(
            f"the index lacks {len(missing)} of the {len(wanted)} relevant corpus ids of the "
            f"qrels (e.g. {missing[0]!r}); build it from the task's corpus file with its _id "
            "values as the ids", param="index")
    return out


def _graded(task: RetrievalTask, hits: list[list[Hit]], keys: list[list[str]], metric: str,
            ks: tuple[int, ...]) -> dict[str, Any]:
    sign = -1.0 if metric == "l2" else 1.0  # l2 scores are distances
    run = {}
    for q, row in enumerate(hits):
        run[task.query_keys[q]] = {key: sign * h.score for h in row for key in keys[h.id]}
    assert task.qrels is not None
    means, per = graded_retrieval_scores(run, task.qrels, ks)
    return {**means, "per_query": per}


def _vectors(value: Any, texts: list[str], name: str) -> np.ndarray:
    x = value(texts) if callable(value) else value
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] != len(texts):
        raise ConfigError(f"{name}: expected {len(texts)} vectors, got an array of shape {x.shape}")
    return x


def evaluate_retrieval(
    task: RetrievalTask,
    encode_corpus_vectors: np.ndarray | Callable[[list[str]], np.ndarray] | None,
    query_vectors: np.ndarray | Callable[[list[str]], np.ndarray],
    *,
    factory: str = "Flat",
    metric: str = "cosine",
    transform: AffineMap | tuple[np.ndarray, np.ndarray] | None = None,
    k: int = 10,
    exclude_self: bool = True,
    index: EmbeddingIndex | None = None,
    ks: tuple[int, ...] | None = None,
    **search_kwargs: Any,
) -> dict[str, Any]:
    """Index the corpus, search the queries, return :func:`retrieval_scores` + counts.

    ``encode_corpus_vectors`` / ``query_vectors`` are raw pooled vectors aligned with
    ``task.corpus`` / ``task.queries``, or an ``encode`` callable applied to those texts. With
    ``exclude_self`` a query's own corpus entry is dropped from its ranking unless it is relevant
    (identical-sentence positives). ``transform`` is baked into the index (see
    :meth:`EmbeddingIndex.build`). ``search_kwargs`` (nprobe, ef_search) go to the search.

    A task read from files (``task.qrels``) is scored with graded relevance as trec_eval and
    mteb score it (:func:`graded_retrieval_scores`: nDCG, recall, MRR and MAP at each of ``ks``
    and ``k``, default 1, 5, 10, 100), with ``per_query`` values; ``index`` is then an index
    already built (its ``ids`` the corpus ids; ``encode_corpus_vectors`` is not used).

    >>> import numpy as np
    >>> t = pairs_to_retrieval(["a", "c"], ["b", "d"], [1, 1])
    >>> enc = lambda ts: np.array([[1, 0.1], [1, 0], [0, 1], [0.1, 1]], "float32")[
    ...     ["abcd".index(s) for s in ts]]
    >>> r = evaluate_retrieval(t, enc, enc, k=10)
    >>> r["recall@1"], r["n_queries"], r["n_corpus"]
    (1.0, 2, 4)
    """
    from embedkit.retrieval.index import EmbeddingIndex

    query_x = _vectors(query_vectors, task.queries, "query vectors")
    if index is None:
        if encode_corpus_vectors is None:
            raise ConfigError("give the corpus vectors (or an encode function) or an index")
        corpus_x = _vectors(encode_corpus_vectors, task.corpus, "corpus vectors")
        first = [ks[0] for ks in task.corpus_keys] if task.corpus_keys else None
        index = EmbeddingIndex.build(corpus_x, task.corpus, factory=factory, metric=metric,
                                     transform=transform, ids=first)
    if task.qrels is not None:
        cuts = tuple(sorted(set(ks or DEFAULT_KS) | {int(k)}))
        hits = index.search(query_x, max(cuts), **search_kwargs)
        out = _graded(task, hits, hit_keys(task, index), index.metric, cuts)
        return {**out, "n_queries": len(task.queries), "n_corpus": index.ntotal}
    if index.ntotal != len(task.corpus):
        raise ConfigError(
            "the task's corpus has duplicate sentences; build it with pairs_to_retrieval"
        )
    extra = 1 if exclude_self else 0
    hits = index.search(query_x, k + extra, **search_kwargs)
    ranked: list[list[int]] = []
    for q, row in enumerate(hits):
        own = task.query_ids[q] if q < len(task.query_ids) else -1
        ids = [h.id for h in row]
        if exclude_self and own >= 0 and own not in task.relevant[q]:
            ids = [i for i in ids if i != own]
        ranked.append(ids[:k])
    ks = tuple(c for c in (1, 5, 10) if c < k) + (k,)
    scores: dict[str, float | int] = dict(retrieval_scores(ranked, task.relevant, ks=ks))
    scores["n_queries"] = len(task.queries)
    scores["n_corpus"] = len(task.corpus)
    return scores
