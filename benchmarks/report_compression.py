"""Compression frontier: bytes per vector against quality, every method on one chart.

:func:`run_compression_report` (``make eval-compression`` writes
``eval/compression-m3e-small.md`` with it, rendered by :func:`render`). For every method and
combination of the grid (:func:`methods`: whitening beta/gamma/k, PCA-k, random projection,
truncation, int8, binary, product quantisation, and k x int8 / binary) it measures

- STS: Spearman on the valid and test splits of the five STS sets (one
  :func:`~embedkit.runs.bench.run_bench` call; each chain fitted on the task's valid sentences,
  no labels; quantised chains scored on their decoded codes, binary by Hamming similarity; PQ
  by faiss's ``ProductQuantizer`` encode/decode, :class:`ProductQuantizerStep`);
- retrieval: recall@10 and nDCG@10 of LCQMC as a retrieval task (as ``make
  eval-lcqmc-retrieval`` builds it: queries the sentence1 of positive pairs, corpus every
  sentence2, graded scoring as trec_eval), on LCQMC valid and LCQMC test, with FAISS indexes:
  ``IndexFlatIP`` (float), ``SQ8`` (int8), ``PQm`` and ``IndexBinaryFlat`` on the packed sign
  bits, plus binary with 4x oversampling rescored by the float vectors.

Selection is honest: per method family and byte size the hyperparameters are chosen on valid
and reported on test (:func:`choose`); "best at B bytes" is the valid-best among every
method of at most B bytes (:func:`best_within`); the Pareto front (:func:`pareto_front`) is
drawn through the chosen points' test scores. Then a static encoder distilled from the model
(``embedkit distill``) is scored on the STS test splits and timed.

>>> [m.chain for m in methods(512) if m.family == "pq"]
['pq:m=16', 'pq:m=32', 'pq:m=64', 'pq:m=128']
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from _common import add_from_record, make_parser, read_record, run, write_report

from embedkit.data import DEFAULT_TASKS
from embedkit.postprocess._base import LinearStep
from embedkit.postprocess.quantize import _Quantizer
from embedkit.reports.bench import provenance_lines
from embedkit.runs.record import data_dir_setting, run_record, timings

if TYPE_CHECKING:  # the library is imported where the work is
    from embedkit.encoders import SentenceEncoder
    from embedkit.retrieval.tasks import RetrievalTask

logger = logging.getLogger("embedkit.benchmarks.report_compression")

SCRIPT = "report_compression.py"
BUDGETS = (64, 128, 256)
RESCORE = 4
WHITEN_BG = tuple((b, g) for b in (0, 1) for g in (0, 0.5, 1))


# --------------------------------------------------------------------------------------------
# the product quantiser as a chain step (STS scoring on decoded codes)


class ProductQuantizerStep(_Quantizer):
    """``pq:m=M[,nbits=B]``: faiss's ``ProductQuantizer`` (``m`` sub-vectors of ``2**nbits``
    centroids each, trained on the fit vectors); codes are its packed uint8 codes, scores the
    cosine of the decoded (reconstructed) vectors. Registered as a step by :func:`register_pq`.

    >>> X = np.random.default_rng(0).normal(size=(300, 8)).astype("float32")
    >>> q = ProductQuantizerStep(m=4, nbits=4).fit(X)
    >>> q.transform(X).shape, q.bytes_per_vector_, q.decode(q.transform(X)).shape
    ((300, 2), 2, (300, 8))
    """

    _parameter_constraints: dict = {"m": [int], "nbits": [int]}

    def __init__(self, m: int = 16, nbits: int = 8) -> None:
        self.m = m
        self.nbits = nbits

    def fit(self, X: Any, y: Any = None) -> ProductQuantizerStep:
        import faiss

        from embedkit.postprocess._base import validate_float_matrix

        X = validate_float_matrix(self, X, reset=True)
        from embedkit.errors import ConfigError

        (n, d), centroids = X.shape, 2 ** int(self.nbits)
        if d % int(self.m):
            raise ConfigError(f"pq:m={self.m} does not divide the {d} dimensions; give an m "
                              "that does", param="post")
        if n < centroids:
            raise ConfigError(f"pq:m={self.m},nbits={self.nbits} trains {centroids} centroids "
                              f"per sub-vector on {n} fit vectors; give a smaller nbits or more "
                              "fit sentences", param="post")
        self.pq_ = faiss.ProductQuantizer(d, int(self.m), int(self.nbits))
        self.pq_.train(np.ascontiguousarray(X, dtype=np.float32))
        return self

    def _dtype(self) -> np.dtype:
        return np.dtype(np.uint8)

    def transform(self, X: Any) -> np.ndarray:
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self)
        return self.pq_.compute_codes(np.ascontiguousarray(X, dtype=np.float32))

    def decode(self, codes: Any) -> np.ndarray:
        arr = self._codes(codes, int(self.pq_.code_size))
        return self.pq_.decode(np.ascontiguousarray(arr)).astype(np.float64)

    def bytes_for(self, k: int) -> int:
        return (int(self.m) * int(self.nbits) + 7) // 8

    @property
    def bytes_per_vector_(self) -> int:
        return int(self.pq_.code_size)


def register_pq() -> None:
    """Make ``pq:m=M,nbits=B`` a step of the ``--post`` language (idempotent)."""
    from embedkit.postprocess.spec import Key, _int, register_step

    register_step("pq", ProductQuantizerStep, keys={
        "m": Key(_int, "a positive integer dividing d"), "nbits": Key(_int, "bits per code")},
        describe=lambda est: f"pq:m={est.m}" + (f",nbits={est.nbits}" if est.nbits != 8 else ""))


# --------------------------------------------------------------------------------------------
# the grid


@dataclass(frozen=True)
class Method:
    """One point of the grid: a float chain (``linear``, "" for the raw vectors) followed by
    an optional quantiser (``int8``, ``binary`` or ``pq:m=M``); ``rescore``: binary search with
    that oversampling, rescored by the float vectors (retrieval only)."""

    family: str
    linear: str = ""
    quant: str = ""
    rescore: int = 0

    @property
    def chain(self) -> str:
        return ",".join(p for p in (self.linear, self.quant) if p)

    @property
    def label(self) -> str:
        return (self.chain or "float32") + (f" + rescore {self.rescore}x" if self.rescore else "")


def method_bytes(m: Method, k: int) -> int:
    """Bytes per vector of ``m`` whose float chain outputs ``k`` dimensions (in memory: a
    rescored binary index keeps its float vectors on disk).

    >>> [method_bytes(Method("x", quant=q), 512) for q in ("", "int8", "binary", "pq:m=64")]
    [2048, 512, 64, 64]
    """
    if m.quant == "int8":
        return int(k)
    if m.quant == "binary":
        return (int(k) + 7) // 8
    if m.quant.startswith("pq:"):
        pq_m, nbits = pq_params(m.quant)
        return (pq_m * nbits + 7) // 8
    return 4 * int(k)


def pq_params(quant: str) -> tuple[int, int]:
    """``(m, nbits)`` of a ``pq:m=M[,nbits=B]`` step.

    >>> pq_params("pq:m=8,nbits=4"), pq_params("pq:m=64")
    ((8, 4), (64, 8))
    """
    keys = dict(kv.split("=") for kv in quant.removeprefix("pq:").split(","))
    return int(keys["m"]), int(keys.get("nbits", 8))


def methods(d: int, pq_ms: Sequence[int] = (16, 32, 64, 128), pq_nbits: int = 8
            ) -> list[Method]:
    """The grid for ``d``-dimensional vectors (dimensions above ``d`` left out)."""
    def ks(*wanted: int) -> list[int]:
        return [k for k in wanted if k < d]

    def wh(b: float, g: float, k: int | str) -> str:
        return f"whiten:beta={b:g},gamma={g:g},k={k}"

    out = [Method("float32")]
    out += [Method("whiten", wh(b, g, k)) for k in [*ks(64, 128, 256), "all"] for b, g in WHITEN_BG]
    out += [Method("pca", f"pca:k={k}") for k in ks(32, 64, 128, 256)]
    out += [Method("rp", f"rp:k={k},seed=0") for k in ks(64, 128, 256)]
    out += [Method("truncate", f"truncate:k={k}") for k in ks(32, 64, 128, 256)]
    out += [Method("int8", quant="int8")]
    out += [Method("whiten x int8", wh(b, g, k), "int8") for k in ks(64, 128, 256)
            for b, g in WHITEN_BG]
    out += [Method("pca x int8", f"pca:k={k}", "int8") for k in ks(64, 128, 256)]
    out += [Method("truncate x int8", f"truncate:k={k}", "int8") for k in ks(64, 128, 256)]
    out += [Method("binary", quant="binary")]
    out += [Method("whiten x binary", wh(b, g, k), "binary") for k in [*ks(256), "all"]
            for b, g in WHITEN_BG]
    out += [Method("pca x binary", f"pca:k={k}", "binary") for k in ks(256)]
    out += [Method("truncate x binary", f"truncate:k={k}", "binary") for k in ks(256)]
    bits = f",nbits={pq_nbits}" if pq_nbits != 8 else ""
    out += [Method("pq", quant=f"pq:m={m}{bits}") for m in pq_ms if d % m == 0]
    return out


# --------------------------------------------------------------------------------------------
# honest selection and the frontier


def choose(rows: Sequence[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Per (family, bytes) the row whose ``valid[metric]`` is best (first on ties), reported
    with its ``test`` score: the hyperparameters of a method at a size chosen on valid.

    >>> rows = [{"family": "w", "bytes": 8, "label": "a", "valid": {"s": .9}, "test": {"s": .1}},
    ...         {"family": "w", "bytes": 8, "label": "b", "valid": {"s": .5}, "test": {"s": .8}}]
    >>> [r["label"] for r in choose(rows, "s")]
    ['a']
    """
    best: dict[tuple[str, int], dict[str, Any]] = {}
    for r in rows:
        key = (r["family"], int(r["bytes"]))
        if key not in best or r["valid"][metric] > best[key]["valid"][metric]:
            best[key] = r
    return sorted(best.values(), key=lambda r: (r["bytes"], r["family"]))


def best_within(rows: Sequence[dict[str, Any]], budget: int, metric: str,
                skip: Callable[[dict[str, Any]], bool] = lambda r: False) -> dict[str, Any] | None:
    """The valid-best row of at most ``budget`` bytes (None if none fits)."""
    fits = [r for r in rows if r["bytes"] <= budget and not skip(r)]
    return max(fits, key=lambda r: r["valid"][metric]) if fits else None


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates (fewer or equal bytes and higher or
    equal quality, one of them strictly), by increasing bytes.

    >>> pareto_front([(64, .5), (128, .4), (256, .7), (64, .6), (1024, .7)])
    [3, 2]
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front: list[int] = []
    best = -np.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


# --------------------------------------------------------------------------------------------
# fitting: one eigen-decomposition per beta, every whitening and PCA map derived from it


class FittedMap(LinearStep):
    """A linear step whose map was fitted elsewhere (a :class:`WhiteningFamily` map): ``fit``
    only records the dimension, so a grid of maps costs one eigen-decomposition per beta."""

    def __init__(self, kernel: Any = None, bias: Any = None) -> None:
        self.kernel = kernel
        self.bias = bias

    def fit(self, X: Any, y: Any = None) -> FittedMap:
        from embedkit.postprocess._base import validate_float_matrix

        validate_float_matrix(self, X, reset=True)
        self.kernel_ = np.asarray(self.kernel, dtype=np.float64)
        self.bias_ = np.asarray(self.bias, dtype=np.float64)
        return self


def _keys(spec: str) -> dict[str, str]:
    return dict(kv.split("=") for kv in spec.split(":", 1)[1].split(","))


def fit_method(m: Method, X: np.ndarray, families: dict[float, Any]) -> Any:
    """``m``'s chain fitted on ``X`` as a Pipeline: whitening / PCA maps from ``families``
    (beta -> :class:`WhiteningFamily` of ``X``, made on first use; ``pca:k=K`` is the beta = 1,
    gamma = 0 map), other steps fitted as the spec language builds them."""
    from sklearn.pipeline import Pipeline

    from embedkit.postprocess import WhiteningFamily, parse_post

    register_pq()
    steps: list[tuple[str, Any]] = []
    lin = m.linear
    if lin.startswith(("whiten:", "pca:")):
        keys = _keys(lin)
        beta, gamma = ((float(keys["beta"]), float(keys["gamma"])) if lin.startswith("whiten")
                       else (1.0, 0.0))
        if beta not in families:
            families[beta] = WhiteningFamily.fit(X, beta)
        k = keys.get("k", "all")
        amap = families[beta].map(gamma, k if k == "all" else int(k))
        steps.append(("map", FittedMap(amap.kernel, amap.bias)))
    elif lin:
        steps += parse_post(lin).steps
    if m.quant:
        steps += parse_post(m.quant).steps
    if not steps:
        return None
    return Pipeline(steps).fit(X)


# --------------------------------------------------------------------------------------------
# STS: the five sets, valid and test


def sts_rows(enc: SentenceEncoder, grid: Sequence[Method], tasks: Sequence[str],
             data_dir: str | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per method: bytes, valid and test average Spearman over ``tasks`` (and per task); each
    chain fitted on the task's unique valid sentences, scored by the one STS path
    (:meth:`~embedkit.evaluation.STSEvaluator.score_task`: quantised codes decoded)."""
    from embedkit.evaluation import STSEvaluator, lookup
    from embedkit.postprocess import bytes_per_vector

    evaluator = STSEvaluator(list(tasks), ["valid", "test"], data_dir=data_dir)
    per: dict[Method, dict[str, dict[str, float]]] = {m: {} for m in grid}
    nbytes: dict[Method, int] = {}
    data: dict[str, Any] = {}
    for spec in evaluator.specs:
        splits = evaluator.data[spec.name]
        max_len = evaluator.max_length_for(spec, enc)
        sentences = evaluator.sentences(spec.name)
        vecs = enc.encode(sentences, max_length=max_len)
        valid = splits["valid"]
        fit_x = enc.encode(list(dict.fromkeys([*valid.sentences1, *valid.sentences2])),
                           max_length=max_len)
        families: dict[float, Any] = {}
        for m in grid:
            pipe = fit_method(m, fit_x, families)
            scores = evaluator.score_task(spec.name, lookup(sentences, vecs), pipe)
            per[m][spec.name] = {s: float(scores[s]["spearman"]) for s in ("valid", "test")}
            nbytes[m] = bytes_per_vector(pipe, int(vecs.shape[1])) if pipe is not None \
                else 4 * int(vecs.shape[1])
        data[spec.name] = {s: {"source": d.source, "sha256": d.sha256, "n_pairs": d.n_pairs}
                           for s, d in splits.items()}
        data[spec.name]["fit_sentences"] = int(fit_x.shape[0])
        logger.info("STS %s: %d methods scored", spec.name, len(grid))
    rows = []
    for m in grid:
        names = list(per[m])
        rows.append({"family": m.family, "label": m.label, "method": asdict(m),
                     "bytes": nbytes[m],
                     "valid": {"spearman": float(np.mean([per[m][t]["valid"] for t in names]))},
                     "test": {"spearman": float(np.mean([per[m][t]["test"] for t in names]))},
                     "tasks": per[m]})
    return rows, {"data": data, "max_length": {s.name: evaluator.max_length_for(s, enc)
                                               for s in evaluator.specs}}


# --------------------------------------------------------------------------------------------
# retrieval: LCQMC as a retrieval task, FAISS indexes


@dataclass
class RetrievalSplitData:
    """One split of the retrieval task, encoded."""

    task: RetrievalTask
    corpus_x: np.ndarray
    query_x: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def fit_x(self) -> np.ndarray:
        """What the float chains are fitted on: the corpus and the queries."""
        return np.vstack([self.corpus_x, self.query_x])


def load_retrieval(enc: SentenceEncoder, pairs_task: str, split: str, out_dir: Path,
                   data_dir: str | None) -> RetrievalSplitData:
    """``pairs_task``'s ``split`` written as a retrieval task (BEIR layout, as ``make
    eval-lcqmc-retrieval``), read back and encoded (max length as the whitening protocol)."""
    from embedkit.data import get_task, load_split
    from embedkit.data.retrieval import load_retrieval_split, write_pairs_as_retrieval
    from embedkit.evaluation import get_protocol
    from embedkit.retrieval.tasks import task_from_split

    pairs_spec = get_task(pairs_task)
    pairs = load_split(pairs_spec, split, data_dir=data_dir)
    spec = get_task(str(write_pairs_as_retrieval(pairs, out_dir / f"{pairs_spec.name}-{split}")))
    data = load_retrieval_split(spec, split)
    task = task_from_split(data)
    max_len = get_protocol("whitening").max_length(spec, enc.model_max_length())
    corpus_x = enc.encode(task.corpus, max_length=max_len)
    query_x = enc.encode(task.queries, max_length=max_len)
    info = {"sha256": data.sha256, "pairs_sha256": pairs.sha256, "n_queries": len(task.queries),
            "n_corpus": len(task.corpus), "max_length": max_len}
    return RetrievalSplitData(task, corpus_x, query_x, info)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def search(m: Method, corpus: np.ndarray, queries: np.ndarray, k: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (scores, ids) of ``queries`` in ``corpus`` (float vectors, unit length) by
    ``m``'s quantiser as a FAISS index: ``Flat`` (inner product), ``SQ8``, ``PQm`` or
    ``IndexBinaryFlat`` on the packed sign bits (scores minus the Hamming distance); with
    ``m.rescore`` the binary search takes ``rescore * k`` candidates, rescored by the float
    vectors (numpy; ``index build --vectors binary --rescore`` replaces this when it lands)."""
    import faiss

    d = int(corpus.shape[1])
    if m.quant == "binary":
        index = faiss.IndexBinaryFlat(8 * ((d + 7) // 8))
        index.add(np.packbits(corpus > 0, axis=1))
        depth = min(k * max(m.rescore, 1), len(corpus))
        dist, ids = index.search(np.packbits(queries > 0, axis=1), depth)
        if not m.rescore:
            return -dist.astype(np.float32), ids
        exact = np.einsum("qd,qcd->qc", queries, corpus[ids])
        top = np.argsort(-exact, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(exact, top, 1), np.take_along_axis(ids, top, 1)
    factory = {"": "Flat", "int8": "SQ8"}.get(m.quant) or "PQ{}x{}".format(*pq_params(m.quant))
    index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        index.train(corpus)
    index.add(corpus)
    return index.search(queries, k)


def retrieval_scores_of(m: Method, split: RetrievalSplitData, k: int = 10,
                        families: dict[float, Any] | None = None
                        ) -> tuple[dict[str, float], int]:
    """recall@k / nDCG@k (graded, as ``index eval`` scores tasks read from files) of ``m`` on
    ``split``: its float chain fitted on the split's corpus and queries; and bytes per vector."""
    from embedkit.retrieval.metrics import graded_retrieval_scores

    corpus, queries = split.corpus_x, split.query_x
    if m.linear:
        pipe = fit_method(Method(m.family, m.linear), split.fit_x,
                          {} if families is None else families)
        corpus, queries = pipe.transform(corpus), pipe.transform(queries)
    corpus, queries = _unit(corpus), _unit(queries)
    scores, ids = search(m, corpus, queries, k)
    task = split.task
    assert task.qrels is not None
    run = {task.query_keys[q]: {key: float(s) for s, i in zip(scores[q], ids[q], strict=True)
                                if i >= 0 for key in task.corpus_keys[i]}
           for q in range(len(task.queries))}
    means, _ = graded_retrieval_scores(run, task.qrels, (k,))
    return ({f"recall@{k}": float(means[f"recall@{k}"]), f"ndcg@{k}": float(means[f"ndcg@{k}"])},
            method_bytes(m, int(corpus.shape[1])))


def retrieval_rows(grid: Sequence[Method], valid: RetrievalSplitData,
                   test: RetrievalSplitData) -> list[dict[str, Any]]:
    """Per method (and binary rows with rescoring): bytes, valid and test recall/nDCG@10."""
    rows = []
    extra = [Method(f"{m.family} + rescore {RESCORE}x", m.linear, m.quant, RESCORE)
             for m in grid if m.quant == "binary"]
    fams: tuple[dict[float, Any], dict[float, Any]] = ({}, {})
    for m in [*grid, *extra]:
        v, nbytes = retrieval_scores_of(m, valid, families=fams[0])
        t, _ = retrieval_scores_of(m, test, families=fams[1])
        rows.append({"family": m.family, "label": m.label, "method": asdict(m),
                     "bytes": nbytes, "valid": v, "test": t})
        logger.info("retrieval %s: %d bytes, test recall@10 %.4f", m.label, nbytes,
                    t["recall@10"])
    return rows


# --------------------------------------------------------------------------------------------
# the static encoder and speeds


def sentences_per_second(enc: SentenceEncoder, texts: Sequence[str], max_length: int) -> float:
    """Sentences per second of one ``encode`` call on ``texts`` (the encoder uncached)."""
    t0 = time.perf_counter()
    enc.encode(list(texts), max_length=max_length)
    return len(texts) / max(time.perf_counter() - t0, 1e-9)


def static_point(opts: CompressionOptions, test: RetrievalSplitData,
                 speed_texts: Sequence[str]) -> dict[str, Any]:
    """Distil the static encoder, score it (STS test, LCQMC retrieval test), time it and the
    model on uncached encodes."""
    from embedkit.encoders import EncoderConfig
    from embedkit.runs.bench import run_bench
    from embedkit.runs.distill import distill

    out = Path(opts.runs_dir) / f"static-{Path(opts.model).name}-{opts.static_dim}"
    recipe = distill(EncoderConfig(opts.model), opts.static_dim, out)
    static = EncoderConfig(str(out), cache=False).build(False)
    rec = run_bench(static, None, list(opts.tasks), ["test"], data_dir=opts.data_dir)
    avg = rec["results"][str(static.default_pooling)]["avg"]["spearman"]
    max_len = int(test.info["max_length"])
    static_sps = sentences_per_second(static, test.task.corpus, max_len)
    q = static.encode(test.task.queries, max_length=max_len)
    c = static.encode(test.task.corpus, max_length=max_len)
    probe = RetrievalSplitData(test.task, c, q, test.info)
    ret, nbytes = retrieval_scores_of(Method("static"), probe)
    model = EncoderConfig(opts.model, cache=False).build(False)
    model_sps = sentences_per_second(model, speed_texts, max_len)
    return {"folder": str(out), "dim": opts.static_dim, "distill_seconds": recipe["seconds"],
            "test_spearman_avg": avg, "bytes": nbytes, "retrieval_test": ret,
            "sentences_per_second": static_sps, "timed_sentences": len(test.task.corpus),
            "model_sentences_per_second": model_sps, "model_timed_sentences": len(speed_texts)}


# --------------------------------------------------------------------------------------------
# the report


@dataclass(frozen=True)
class CompressionOptions:
    """What the report measures (defaults: ``make eval-compression``)."""

    model: str = "m3e-small"
    tasks: tuple[str, ...] = tuple(DEFAULT_TASKS)
    retrieval_task: str = "LCQMC"
    runs_dir: str = "runs/compression"
    data_dir: str | None = None
    static_dim: int = 256
    speed_sentences: int = 2000
    pq_ms: tuple[int, ...] = (16, 32, 64, 128)
    static: bool = True
    pq_nbits: int = 8


def run_compression_report(opts: CompressionOptions | None = None, *,
                           command: str | None = None) -> dict[str, Any]:
    """Measure every method of the grid (STS and retrieval), then the static encoder; the
    report's record."""
    from embedkit.encoders import EncoderConfig

    opts = opts or CompressionOptions()
    t0 = time.perf_counter()
    enc = EncoderConfig(opts.model).build()
    grid = methods(int(enc.dim), opts.pq_ms, opts.pq_nbits)
    sts, sts_info = sts_rows(enc, grid, opts.tasks, opts.data_dir)
    logger.info("STS done in %.0f s", time.perf_counter() - t0)
    runs = Path(opts.runs_dir)
    valid = load_retrieval(enc, opts.retrieval_task, "valid", runs, opts.data_dir)
    test = load_retrieval(enc, opts.retrieval_task, "test", runs, opts.data_dir)
    ret = retrieval_rows(grid, valid, test)
    seconds = time.perf_counter() - t0
    static = None
    if opts.static:
        seen = set(test.task.corpus) | set(test.task.queries)
        fresh = [t for t in valid.task.corpus if t not in seen][: opts.speed_sentences]
        static = static_point(opts, test, fresh)
    settings = {"model": opts.model, "tasks": list(opts.tasks), "pooling": str(enc.default_pooling),
                "dim": int(enc.dim), "retrieval_task": opts.retrieval_task,
                "fit_on": {"sts": "valid (unique sentences, no labels)",
                           "retrieval": "the split's corpus and queries"},
                "select_on": "valid", "report_on": "test", "budgets": list(BUDGETS),
                "rescore": RESCORE, "data_dir": data_dir_setting(opts.data_dir),
                "static_dim": opts.static_dim, "pq_ms": list(opts.pq_ms),
                "pq_nbits": opts.pq_nbits}
    record = run_record("compression-report", command=command, encoder=enc, settings=settings,
                        data={"sts": sts_info["data"], "sts_max_length": sts_info["max_length"],
                              "retrieval": {"valid": valid.info, "test": test.info}})
    record.update(sts=sts, retrieval=ret, static=static,
                  timings=timings(enc, t0, seconds_grid=round(seconds, 3)))
    return record


def headline(record: dict[str, Any]) -> list[tuple[str, str, int, dict[str, float]]]:
    """The closing note's rows: (what, method label, bytes, test scores) of float32, int8,
    binary, binary + rescore, and the valid-best method within each budget."""
    rows = record["retrieval"]
    by = {r["label"]: r for r in rows}
    out = [(name, label, by[label]["bytes"], by[label]["test"]) for name, label in (
        ("float32", "float32"), ("int8", "int8"), ("binary", "binary"),
        (f"binary + rescore {RESCORE}x", f"binary + rescore {RESCORE}x")) if label in by]
    for b in record["settings"]["budgets"]:
        best = best_within(rows, b, "recall@10", skip=lambda r: bool(r["method"]["rescore"]))
        if best is not None:
            out.append((f"best at <= {b} bytes", best["label"], best["bytes"], best["test"]))
    return out


def _pct(v: float) -> str:
    return f"{100 * v:.2f}"


def _headline_lines(record: dict[str, Any]) -> list[str]:
    rows = headline(record)
    base = next((t for name, _, _, t in rows if name == "float32"), None)
    out = [f"## Headline: {record['settings']['retrieval_task']} retrieval (test), "
           f"{record['model']['name']}", "",
           "| what | method (chosen on valid) | bytes/vector | recall@10 | % of float32 | "
           "nDCG@10 |", "|---|---|---:|---:|---:|---:|"]
    for name, label, nbytes, t in rows:
        share = f"{100 * t['recall@10'] / base['recall@10']:.1f}" if base else "-"
        out.append(f"| {name} | `{label}` | {nbytes} | {_pct(t['recall@10'])} | {share} | "
                   f"{_pct(t['ndcg@10'])} |")
    s = record.get("static")
    if s:
        model_avg = next(r["test"]["spearman"] for r in record["sts"] if r["label"] == "float32")
        out += ["", "| encoder | sentences/s (this machine) | avg test Spearman (5 STS) | "
                "LCQMC recall@10 | bytes/vector |", "|---|---:|---:|---:|---:|",
                f"| {record['model']['name']} | {s['model_sentences_per_second']:.0f} | "
                f"{_pct(model_avg)} | {_pct(base['recall@10']) if base else '-'} | "
                f"{4 * record['settings']['dim']} |",
                f"| static (distilled, {s['dim']} d) | {s['sentences_per_second']:.0f} | "
                f"{_pct(s['test_spearman_avg'])} | {_pct(s['retrieval_test']['recall@10'])} | "
                f"{s['bytes']} |", "",
                f"Speeds: one uncached `encode` call on this machine (shared; see Machine): "
                f"{record['model']['name']} on {s['model_timed_sentences']} sentences of the "
                f"retrieval task's valid corpus that the test split does not hold (no embedding "
                f"cache), the static encoder on the {s['timed_sentences']} sentences of the test "
                f"corpus; same max length, the encoders' default batch size and threads."]
    return out


def _table(rows: Sequence[dict[str, Any]], metrics: Sequence[str]) -> list[str]:
    head = " | ".join(f"valid {m} | test {m}" for m in metrics)
    out = [f"| family | bytes | chosen setting | {head} |",
           "|---|---:|---|" + "---:|---:|" * len(metrics)]
    for r in rows:
        vals = " | ".join(f"{_pct(r['valid'][m])} | {_pct(r['test'][m])}" for m in metrics)
        out.append(f"| {r['family']} | {r['bytes']} | `{r['label']}` | {vals} |")
    return out


def render(record: dict[str, Any]) -> str:
    """The report in Markdown."""
    s = record["settings"]
    m = record["model"]
    out = [f"# Compression frontier: {m['name']}", ""] + provenance_lines(record) + [
        f"- Model: `{m['name']}` (identity `{m['identity']}`), pooling {s['pooling']}, "
        f"{s['dim']} dimensions (float32: {4 * s['dim']} bytes per vector)",
        f"- STS: test Spearman averaged over {', '.join(s['tasks'])}; every chain fitted on "
        "the task's valid sentences (unique, no labels); quantised chains scored on their "
        "decoded codes (int8: cosine of the dequantised vectors, ranges fitted on the same "
        "vectors; binary: Hamming similarity; PQ: faiss ProductQuantizer, 8 bits per code, "
        "trained on the fit vectors, cosine of the reconstructions)",
        f"- Retrieval: {s['retrieval_task']} valid and test as retrieval tasks (queries the "
        "sentence1 of positive pairs, corpus every sentence2, as `make eval-lcqmc-retrieval`), "
        "graded recall@10 / nDCG@10 as `index eval`; float chains fitted on the split's corpus "
        "and queries, unit length; FAISS IndexFlatIP (float32), SQ8 (int8), PQm, "
        "IndexBinaryFlat (packed signs, Hamming), and binary with "
        f"{s['rescore']}x oversampling rescored by the float vectors (kept on disk, not counted "
        "in bytes/vector; excluded from 'best at B bytes')",
        "- Selection: per family and byte size, the setting with the best valid score (STS: "
        "average valid Spearman; retrieval: recall@10 on LCQMC valid), reported on test; "
        "the Pareto front is drawn through those chosen points' test scores",
        "- Second model (multilingual-e5-small): not run, its weights are not installed and "
        "this machine has no hub access", ""]
    out += _headline_lines(record)
    out += ["", "## STS: chosen setting per family and size (Spearman x 100)", ""]
    out += _table(choose(record["sts"], "spearman"), ["spearman"])
    out += ["", f"## {s['retrieval_task']} retrieval: chosen setting per family and size (x 100)",
            ""]
    out += _table(choose(record["retrieval"], "recall@10"), ["recall@10", "ndcg@10"])
    out += ["", "![quality vs bytes](compression-plots/frontier.png)", "",
            f"Every setting measured: {len(record['sts'])} STS rows, "
            f"{len(record['retrieval'])} retrieval rows, in the JSON record beside this file. "
            f"Total {record['timings']['seconds_total']:.0f} s.",
            "", "Library note: the binary + rescore search here is this driver's numpy code; "
            "`index build --vectors binary --rescore` (embedkit.retrieval) should replace it "
            "once it lands.", ""]
    return "\n".join(out)


def plot(record: dict[str, Any], path: Path) -> None:
    """Quality vs bytes (log x), the chosen points per family, the Pareto front, and the
    static encoder's point: STS (left) and retrieval (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    n_sts = len(record["settings"]["tasks"])
    panels = (("sts", "spearman", f"avg test Spearman ({n_sts} STS)"),
              ("retrieval", "recall@10", f"{record['settings']['retrieval_task']} test recall@10"))
    fams = sorted({r["family"] for key, _, _ in panels for r in record[key]})
    colour = {f: plt.get_cmap("tab20")(i % 20) for i, f in enumerate(fams)}
    for ax, (key, metric, title) in zip(axes, panels, strict=True):
        rows = choose(record[key], metric)
        for fam in dict.fromkeys(r["family"] for r in rows):
            pts = [(r["bytes"], r["test"][metric]) for r in rows if r["family"] == fam]
            hollow = "rescore" in fam  # the float vectors on disk are not counted
            ax.scatter(*zip(*pts, strict=True), label=fam, s=22, color=colour[fam],
                       facecolors="none" if hollow else colour[fam])
        pts = [(r["bytes"], r["test"][metric]) for r in rows if not r["method"]["rescore"]]
        front = [pts[i] for i in pareto_front(pts)]
        ax.step(*zip(*front, strict=True), where="post", color="k", lw=1, label="Pareto front")
        st = record.get("static")
        if st:
            y = st["test_spearman_avg"] if key == "sts" else st["retrieval_test"][metric]
            ax.scatter([st["bytes"]], [y], marker="*", s=160, color="red",
                       label=f"static encoder ({st['dim']} d)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("bytes per vector (log)")
        ax.set_ylabel(metric + " (test, setting chosen on valid)")
        ax.set_title(title)
        ax.grid(alpha=.3)
    axes[1].legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# the script: python benchmarks/report_compression.py [options]


def build_parser() -> argparse.ArgumentParser:
    from embedkit.cli.common import add_data_dir

    d = CompressionOptions()
    p = make_parser(SCRIPT,
        "Bytes per vector against STS Spearman and LCQMC retrieval for every compression "
        "method (selection on valid, reported on test), with a distilled static encoder. "
        "Example: python benchmarks/report_compression.py --data-dir ../shared/data "
        "--out eval/compression-m3e-small.md")
    p.add_argument("--model", default=d.model)
    p.add_argument("--tasks", default=",".join(d.tasks))
    p.add_argument("--retrieval-task", default=d.retrieval_task)
    p.add_argument("--runs-dir", default=d.runs_dir)
    add_data_dir(p)
    p.add_argument("--static-dim", type=int, default=d.static_dim)
    p.add_argument("--speed-sentences", type=int, default=d.speed_sentences)
    p.add_argument("--pq-m", default=",".join(map(str, d.pq_ms)),
                   help="product quantisers' sub-vector counts (bytes per vector)")
    p.add_argument("--pq-nbits", type=int, default=d.pq_nbits, help="bits per PQ code")
    p.add_argument("--no-static", action="store_true", help="skip the static encoder")
    p.add_argument("--plots", default="eval/compression-plots")
    p.add_argument("--out", default="eval/compression-m3e-small.md")
    add_from_record(p, "eval/compression-m3e-small.json")
    p.set_defaults(func=run_compression_cmd)
    return p


def run_compression_cmd(args: argparse.Namespace) -> int:
    from embedkit.cli.common import check_output_path
    from embedkit.cli.parsing import split_list

    check_output_path(args.out, "out")
    if args.from_record:
        record = read_record(args.from_record, SCRIPT, build_parser(), "compression-report")
    else:
        opts = CompressionOptions(args.model, tuple(split_list(args.tasks)), args.retrieval_task,
                                  args.runs_dir, args.data_dir, args.static_dim,
                                  args.speed_sentences,
                                  tuple(int(m) for m in split_list(args.pq_m)),
                                  not args.no_static, args.pq_nbits)
        record = run_compression_report(opts, command=args.command_line)
    plot(record, Path(args.plots) / "frontier.png")
    write_report(Path(args.out), record, render(record))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), SCRIPT, argv)


if __name__ == "__main__":
    sys.exit(main())
