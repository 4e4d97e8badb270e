"""Compression frontier: bytes per vector against quality, every method on one chart.

:func:`run_compression_report` (``make eval-compression`` writes
``eval/compression-m3e-small.md`` with it, rendered by :func:`render`). For every method and
combination of the grid (:func:`methods`: whitening beta/gamma/k, PCA-k, random projection,
truncation, int8, binary, product quantisation, and k x int8 / binary) it measures

- STS: Spearman on the valid and test splits of the five STS sets (one
  :func:`~embedkit.runs.bench.run_bench` call; each chain fitted on the task's valid sentences,
  no labels; quantised chains scored on their decoded codes, binary by Hamming similarity; PQ
  by faiss's ``ProductQuantizer`` encode/decode, :class:`~embedkit.postprocess.quantize.ProductQuantizer`);
- retrieval: recall@10 and nDCG@10 of LCQMC as a retrieval task (as ``make
  eval-lcqmc-retrieval`` builds it: queries the sentence1 of positive pairs, corpus every
  sentence2, graded scoring as trec_eval), on LCQMC valid and LCQMC test, with FAISS indexes:
  ``IndexFlatIP`` (float), ``SQ8`` (int8), ``PQm`` and ``IndexBinaryFlat`` on the packed sign
  bits, plus binary with 4x oversampling rescored by the float vectors.

Selection is honest: per method family and byte size the hyperparameters are chosen on valid
and reported on test; "best at B bytes" is the valid-best among every method of at most B
bytes; the Pareto front is drawn through the chosen points' test scores (``_frontier.py``:
the selection, the Markdown and the plot). Then a static encoder distilled from the model
(``embedkit distill``) is scored on the STS test splits and timed.

>>> [m.chain for m in methods(512) if m.family == "pq"]
['pq:m=16', 'pq:m=32', 'pq:m=64', 'pq:m=128']
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from _common import add_report_files, add_run_options, make_parser, recorded, run, write_report
from _frontier import BUDGETS, RESCORE, plot, render

from embedkit.data import DEFAULT_TASKS
from embedkit.postprocess._base import LinearStep
from embedkit.postprocess.quantize import PQ_TRAIN_PER_CENTROID, pq_train_sample
from embedkit.runs.record import data_dir_setting, run_record, timings

if TYPE_CHECKING:  # the library is imported where the work is
    from embedkit.encoders import SentenceEncoder
    from embedkit.retrieval.tasks import RetrievalTask

logger = logging.getLogger("embedkit.benchmarks.report_compression")

SCRIPT = "report_compression.py"
WHITEN_BG = tuple((b, g) for b in (0, 1) for g in (0, 0.5, 1))
WHITEN_BG_QUANT = tuple((b, g) for b in (0, 1) for g in (0.5, 1))  # before int8 / binary


# --------------------------------------------------------------------------------------------
# the product quantiser as a chain step (STS scoring on decoded codes)


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
            for b, g in WHITEN_BG_QUANT]
    out += [Method("pca x int8", f"pca:k={k}", "int8") for k in ks(64, 128, 256)]
    out += [Method("truncate x int8", f"truncate:k={k}", "int8") for k in ks(64, 128, 256)]
    out += [Method("binary", quant="binary")]
    out += [Method("whiten x binary", wh(b, g, k), "binary") for k in [*ks(256), "all"]
            for b, g in WHITEN_BG_QUANT]
    out += [Method("pca x binary", f"pca:k={k}", "binary") for k in ks(256)]
    out += [Method("truncate x binary", f"truncate:k={k}", "binary") for k in ks(256)]
    bits = f",nbits={pq_nbits}" if pq_nbits != 8 else ""
    out += [Method("pq", quant=f"pq:m={m}{bits}") for m in pq_ms if d % m == 0]
    return out


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
        self._f32 = (self.kernel_.astype(np.float32), self.bias_.astype(np.float32))
        return self

    def transform(self, X: Any) -> np.ndarray:
        """``(X + bias_) @ kernel_`` in float32 (the grid's maps applied to 10^5 vectors each;
        float64, the library's, changes no score at the reported precision but costs 2x)."""
        kernel, bias = self._f32
        return (np.asarray(X, dtype=np.float32) + bias) @ kernel


def _keys(spec: str) -> dict[str, str]:
    return dict(kv.split("=") for kv in spec.split(":", 1)[1].split(","))


def fit_method(m: Method, X: np.ndarray, families: dict[float, Any]) -> Any:
    """``m``'s chain fitted on ``X`` as a Pipeline: whitening / PCA maps from ``families``
    (beta -> :class:`WhiteningFamily` of ``X``, made on first use; ``pca:k=K`` is the beta = 1,
    gamma = 0 map), other steps fitted as the spec language builds them."""
    from sklearn.pipeline import Pipeline

    from embedkit.postprocess import WhiteningFamily, parse_post

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
        for i, m in enumerate(grid):
            if i % 10 == 0:
                logger.info("STS %s: method %d of %d", spec.name, i + 1, len(grid))
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

    from embedkit.retrieval.faiss_ops import make_faiss_index

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
    # the library's factory: cosine (inner product of unit vectors), no polysemous PQ training
    index = make_faiss_index(d, factory, "cosine", None)
    if not index.is_trained:
        index.train(pq_train_sample(corpus, 256))
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
    from embedkit.retrieval.faiss_ops import faiss_thread_count

    opts = opts or CompressionOptions()
    t0 = time.perf_counter()
    enc = EncoderConfig(opts.model).build()
    grid = methods(int(enc.dim), opts.pq_ms, opts.pq_nbits)
    # one FAISS thread: OpenMP threads spin against each other on a shared 2-core machine
    with faiss_thread_count(1):
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
                "faiss_threads": 1, "pq_train": f"<= {PQ_TRAIN_PER_CENTROID} vectors per "
                "centroid (seeded sample)", "static_dim": opts.static_dim, "pq_ms": list(opts.pq_ms),
                "pq_nbits": opts.pq_nbits}
    record = run_record("compression-report", command=command, encoder=enc, settings=settings,
                        data={"sts": sts_info["data"], "sts_max_length": sts_info["max_length"],
                              "retrieval": {"valid": valid.info, "test": test.info}})
    record.update(sts=sts, retrieval=ret, static=static,
                  timings=timings(enc, t0, seconds_grid=round(seconds, 3)))
    return record


# --------------------------------------------------------------------------------------------
# the script: python benchmarks/report_compression.py [options]


def build_parser() -> argparse.ArgumentParser:
    d = CompressionOptions()
    p = make_parser(SCRIPT,
        "Bytes per vector against STS Spearman and LCQMC retrieval for every compression "
        "method (selection on valid, reported on test), with a distilled static encoder. "
        "Example: python benchmarks/report_compression.py --data-dir ../shared/data "
        "--out eval/compression-m3e-small.md")
    add_run_options(p, d.model, d.tasks, d.runs_dir)
    p.add_argument("--retrieval-task", default=d.retrieval_task)
    p.add_argument("--static-dim", type=int, default=d.static_dim)
    p.add_argument("--speed-sentences", type=int, default=d.speed_sentences)
    p.add_argument("--pq-m", default=",".join(map(str, d.pq_ms)),
                   help="product quantisers' sub-vector counts (bytes per vector)")
    p.add_argument("--pq-nbits", type=int, default=d.pq_nbits, help="bits per PQ code")
    p.add_argument("--no-static", action="store_true", help="skip the static encoder")
    p.add_argument("--plots", default=None,
                   help="folder of the plot (default: compression-plots beside --out, where "
                        "the report's image link points)")
    add_report_files(p, "eval/compression-m3e-small")
    p.set_defaults(func=run_compression_cmd)
    return p


def run_compression_cmd(args: argparse.Namespace) -> int:
    from embedkit.cli.parsing import split_list

    record = recorded(args, SCRIPT, build_parser, "compression-report")
    if record is None:
        opts = CompressionOptions(args.model, tuple(split_list(args.tasks)), args.retrieval_task,
                                  args.runs_dir, args.data_dir, args.static_dim,
                                  args.speed_sentences,
                                  tuple(int(m) for m in split_list(args.pq_m)),
                                  not args.no_static, args.pq_nbits)
        record = run_compression_report(opts, command=args.command_line)
    plots = Path(args.plots) if args.plots else Path(args.out).parent / "compression-plots"
    plot(record, plots / "frontier.png")
    write_report(Path(args.out), record, render(record))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), SCRIPT, argv)


if __name__ == "__main__":
    sys.exit(main())
