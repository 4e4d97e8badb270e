"""``embedkit index eval``: retrieval quality on the STS sets and the cost of approximate search.

Quality: each task's split becomes a retrieval task (:func:`pairs_to_retrieval`; positives are
pairs with ``label >= threshold``, the threshold taken from the task's label range: binary ->
1, 0-5 -> 4, in general ``low + 0.8 * (high - low)``); the corpus is every unique sentence of the
split; a query's own entry is left out of its ranking. Rows: the raw pooled vectors and each
``--post`` chain, fitted as ``embedkit bench --fit-on`` does (by default on every split of the
task, the published protocol). Exact (Flat) search.

Cost: the unique sentences of ``--cost-corpus-tasks`` are encoded once, ``n_queries`` of them
(seeded sample) are the queries, and :func:`approximation_costs` times each FAISS factory and
search setting against exact search. A row meets the target when ``recall@k >= 0.95`` (against
Flat) at ``>= 5x`` Flat's batch QPS.

>>> split_factories("Flat,IVF1024,Flat,HNSW32,IVF1024,PQ32")
['Flat', 'IVF1024,Flat', 'HNSW32', 'IVF1024,PQ32']
>>> label_threshold((0, 5), None), label_threshold((0, 1), None)
(4.0, 1.0)
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from embedkit.errors import ConfigError
from embedkit.provenance import sha256_text

__all__ = [
    "DEFAULT_FACTORIES",
    "TARGET_RECALL",
    "TARGET_SPEEDUP",
    "cost_eval",
    "format_cost_table",
    "format_quality_table",
    "label_threshold",
    "markdown_eval_report",
    "parse_int_list",
    "quality_eval",
    "run_index_eval",
    "split_factories",
]

DEFAULT_FACTORIES = ("Flat", "IVF1024,Flat", "HNSW32", "IVF1024,PQ64")
TARGET_RECALL = 0.95
TARGET_SPEEDUP = 5.0
QUALITY_METRICS = ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10")

# FAISS factory components that need a following component (a coarse quantizer or a transform)
_PREFIX = re.compile(r"^(IVF|IMI|OPQ|PCA|PCAR|PCAW|PCAWR|RR|ITQ|L2norm|IDMap|IDMap2|Pad)",
                     re.IGNORECASE)
# components that complete an HNSW graph's storage (HNSW32,PQ16 / HNSW32,SQ8)
_HNSW_STORAGE = re.compile(r"^(PQ|SQ|RaBitQ)", re.IGNORECASE)


def split_factories(arg: str | Sequence[str] | None) -> list[str]:
    """FAISS factory strings from ``--factories`` / repeated ``--factory`` values.

    ``;`` separates factories unambiguously. Without it a comma list is grouped: a prefix
    component (IVF..., OPQ..., PCA...) takes the next component with it, HNSWn takes a PQ / SQ
    storage that follows; everything else starts a new factory.

    >>> split_factories(["HNSW32,SQ8;Flat", "IVF16,PQ8"])
    ['HNSW32,SQ8', 'Flat', 'IVF16,PQ8']
    """
    if arg is None:
        return []
    items = [arg] if isinstance(arg, str) else list(arg)
    out: list[str] = []
    for item in items:
        if ";" in item:
            out += [f.strip() for f in item.split(";") if f.strip()]
            continue
        tokens = [t.strip() for t in item.split(",") if t.strip()]
        current: list[str] = []
        for tok in tokens:
            if not current:
                current = [tok]
            else:
                last = current[-1]
                joins = bool(_PREFIX.match(last)) or (
                    last.upper().startswith("HNSW") and len(current) == 1
                    and bool(_HNSW_STORAGE.match(tok)))
                if joins:
                    current.append(tok)
                else:
                    out.append(",".join(current))
                    current = [tok]
        if current:
            out.append(",".join(current))
    return list(dict.fromkeys(out))


def parse_int_list(arg: str | Sequence[int] | None, name: str) -> list[int]:
    """``"1,8,32"`` -> [1, 8, 32]; each value must be a positive integer.

    >>> parse_int_list("1, 8,32", "--nprobe")
    [1, 8, 32]
    """
    if arg is None:
        return []
    parts = arg.split(",") if isinstance(arg, str) else list(arg)
    out = []
    for p in parts:
        if isinstance(p, str) and not p.strip():
            continue
        try:
            v = int(str(p).strip())
        except ValueError:
            raise ConfigError(f"{name}: {p!r} is not an integer") from None
        if v < 1:
            raise ConfigError(f"{name}: values must be >= 1, got {v}")
        out.append(v)
    return out


def label_threshold(label_range: Sequence[float] | None, labels: np.ndarray | None) -> float:
    """The label from which a pair counts as a retrieval positive.

    Binary sets (range of width 1) -> the top label; graded ones -> ``low + 0.8 (high - low)``
    (4 on STS-B's 0-5). Without a declared range the labels' own min and max are used.
    """
    if label_range is not None:
        lo, hi = float(label_range[0]), float(label_range[1])
    else:
        if labels is None or len(labels) == 0:
            raise ConfigError("cannot derive a positive threshold without labels")
        lo, hi = float(np.min(labels)), float(np.max(labels))
    if hi - lo <= 1:
        return hi
    return lo + 0.8 * (hi - lo)


def _task_splits(tasks: str | Sequence[str], splits: Sequence[str]) -> list[tuple[Any, str]]:
    from embedkit.data import get_task
    from embedkit.data.spec import canonical_split
    from embedkit.retrieval.pipeline import _split_task_arg

    items = [tasks] if isinstance(tasks, str) else list(tasks)
    names = [t.strip() for item in items for t in item.split(",") if t.strip()]
    out = []
    for name in names:
        base, split = _split_task_arg(name)
        spec = get_task(base)
        for s in [split] if split else list(splits) or list(spec.default_splits):
            out.append((spec, canonical_split(s)))
    return out


def quality_eval(
    encoder,
    tasks: str | Sequence[str],
    *,
    splits: Sequence[str] = ("test",),
    pooling: str | None = None,
    posts: Sequence[str] = (),
    max_length: int | None = None,
    both_directions: bool = False,
    threshold: float | None = None,
    fit_on: str = "task",
    fit_unique: bool = False,
    metric: str = "cosine",
    k: int = 10,
    data_dir: str | os.PathLike | None = None,
    source: str = "auto",
    skip_invalid: bool = False,
    force: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows ``{task, split, row, post, recall@1.., mrr@k, ndcg@k, n_queries, n_corpus, ...}``
    (raw first, then each post, per task/split) and the data record."""
    from embedkit.experiments.bench import fit_sentences
    from embedkit.data import load_split
    from embedkit.encoders import parse_pooling
    from embedkit.evaluation.protocols import get_protocol
    from embedkit.retrieval.pipeline import prepare_post
    from embedkit.retrieval.tasks import evaluate_retrieval, pairs_to_retrieval

    pooling = parse_pooling(pooling or encoder.default_pooling)
    proto = get_protocol("whitening")
    rows: list[dict[str, Any]] = []
    data_record: dict[str, Any] = {}
    for spec, split in _task_splits(tasks, splits):
        _log(f"quality: {spec.name}/{split}")
        data = load_split(spec, split, data_dir=data_dir, source=source,
                          skip_invalid=skip_invalid)
        thr = float(threshold) if threshold is not None else label_threshold(spec.label_range,
                                                                             data.labels)
        task = pairs_to_retrieval(data.sentences1, data.sentences2, data.labels, threshold=thr,
                                  both_directions=both_directions)
        max_len = proto.max_length(spec, encoder.model_max_length(), max_length)
        rec = data_record.setdefault(spec.name, {})
        rec[data.split] = {"source": data.source, "sha256": data.sha256,
                           "n_pairs": data.n_pairs, "skipped": data.skipped,
                           "threshold": thr, "max_length": max_len,
                           "n_queries": len(task.queries), "n_corpus": len(task.corpus)}
        corpus_x = encoder.encode(task.corpus, pooling, max_length=max_len)
        query_x = corpus_x[np.asarray(task.query_ids, dtype=np.int64)]
        base = {"task": spec.name, "split": data.split, "pooling": pooling}
        raw = evaluate_retrieval(task, corpus_x, query_x, metric=metric, k=k)
        rows.append({**base, "row": f"{pooling}", "post": None, **raw})
        fit_cache: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}

        def fit_data(spec=spec, data=data, max_len=max_len, cache=fit_cache):
            if "x" not in cache:
                sents, what = fit_sentences(fit_on, spec, {data.split: data}, data_dir=data_dir,
                                            source=source, skip_invalid=skip_invalid,
                                            unique=fit_unique)
                x = encoder.encode(sents, pooling, max_length=max_len)
                cache["x"] = (x, {"on": what, "n_sentences": len(sents), "unique": fit_unique,
                                  "sha256": sha256_text("\n".join(sents))})
            return cache["x"]

        for spec_str in posts:
            fitted = prepare_post(spec_str, encoder=encoder, pooling=pooling,
                                  dim=int(corpus_x.shape[1]), fit_data=fit_data, metric=metric,
                                  force=force)
            res = evaluate_retrieval(task, corpus_x, query_x, metric=metric, k=k,
                                     transform=fitted.transform)
            rows.append({**base, "row": f"{pooling} + {fitted.spec}", "post": fitted.spec,
                         "fit": fitted.fit, "dim": int(fitted.kernel.shape[1]), **res})
        if "x" in fit_cache:
            rec[data.split]["fit"] = fit_cache["x"][1]
    return rows, data_record


def cost_eval(
    encoder,
    corpus_tasks: str | Sequence[str],
    *,
    factories: Sequence[str] = DEFAULT_FACTORIES,
    nprobes: Sequence[int] = (1, 8, 32, 64),
    ef_searches: Sequence[int] = (16, 64, 128, 256),
    n_queries: int = 2000,
    seed: int = 0,
    k: int = 10,
    metric: str = "cosine",
    pooling: str | None = None,
    post: str | None = None,
    max_length: int | None = None,
    single_queries: int | None = None,
    data_dir: str | os.PathLike | None = None,
    source: str = "auto",
    skip_invalid: bool = False,
    force: bool = False,
) -> dict[str, Any]:
    """``{"rows": [...], "best": ..., "flat_qps_batch", "n_corpus", "n_queries", "data", ...}``.

    Every row gets ``speedup`` (its batch QPS over Flat's) and ``meets_target``.
    """
    from embedkit.encoders import parse_pooling
    from embedkit.retrieval.costs import SINGLE_QUERIES, approximation_costs
    from embedkit.retrieval.pipeline import corpus_from_tasks, prepare_post

    pooling = parse_pooling(pooling or encoder.default_pooling)
    max_len = int(max_length or 64)
    texts, info = corpus_from_tasks(corpus_tasks, data_dir=data_dir, source=source,
                                    skip_invalid=skip_invalid)
    if not texts:
        raise ConfigError("the cost corpus is empty")
    _log(f"cost: encoding {len(texts)} corpus texts")
    x = encoder.encode(texts, pooling, max_length=max_len)
    rng = np.random.default_rng(seed)
    nq = min(int(n_queries), len(texts))
    if nq < 1:
        raise ConfigError("--queries must be >= 1")
    q_idx = np.sort(rng.choice(len(texts), size=nq, replace=False))
    fitted = prepare_post(
        post, encoder=encoder, pooling=pooling, dim=int(x.shape[1]), metric=metric, force=force,
        fit_data=lambda: (x, {"on": "cost corpus", "n_sentences": len(texts),
                              "sha256": info["sha256"]}))
    _log(f"cost: building and timing {', '.join(factories)} ({nq} queries)")
    rows = approximation_costs(
        x, x[q_idx], list(factories), nprobes=tuple(nprobes), ef_searches=tuple(ef_searches),
        k=k, metric=metric, transform=fitted.transform if fitted else None, seed=seed,
        single_queries=SINGLE_QUERIES if single_queries is None else single_queries)
    flat = rows[0]
    key = f"recall@{k}"
    for r in rows:
        r["speedup"] = r["qps_batch"] / flat["qps_batch"] if flat["qps_batch"] else None
        r["meets_target"] = bool(
            r is not flat and r[key] >= TARGET_RECALL
            and r["speedup"] is not None and r["speedup"] >= TARGET_SPEEDUP)
    meeting = [r for r in rows if r["meets_target"]]
    best = max(meeting, key=lambda r: r["qps_batch"]) if meeting else None
    return {
        "rows": rows,
        "best": None if best is None else {"factory": best["factory"], "param": best["param"],
                                           key: best[key], "qps_batch": best["qps_batch"],
                                           "speedup": best["speedup"]},
        "target": {"recall": TARGET_RECALL, "speedup": TARGET_SPEEDUP, "k": k},
        "flat_qps_batch": flat["qps_batch"],
        "n_corpus": len(texts),
        "n_queries": nq,
        "queries_sha256": _sha_ids(q_idx),
        "post": fitted.spec if fitted else None,
        "max_length": max_len,
        "data": info,
    }


def _log(message: str) -> None:
    print(f"embedkit: {message}", file=sys.stderr, flush=True)


def _sha_ids(ids: np.ndarray) -> str:
    return sha256_text(",".join(map(str, ids.tolist())))


def run_index_eval(
    model,
    *,
    tasks: str | Sequence[str] | None = None,
    splits: Sequence[str] = ("test",),
    cost_corpus_tasks: str | Sequence[str] | None = None,
    pooling: str | None = None,
    posts: Sequence[str] = (),
    max_length: int | None = None,
    both_directions: bool = False,
    threshold: float | None = None,
    fit_on: str = "task",
    fit_unique: bool = False,
    metric: str = "cosine",
    k: int = 10,
    factories: Sequence[str] = DEFAULT_FACTORIES,
    nprobes: Sequence[int] = (1, 8, 32, 64),
    ef_searches: Sequence[int] = (16, 64, 128, 256),
    n_queries: int = 2000,
    seed: int = 0,
    cost_post: str | None = None,
    single_queries: int | None = None,
    data_dir: str | os.PathLike | None = None,
    source: str = "auto",
    skip_invalid: bool = False,
    force: bool = False,
    cache=True,
    device: str | None = "cpu",
    dtype: str = "float32",
    batch_size: int = 64,
    lowercase: bool = False,
    progress: bool | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Run the quality and/or cost parts; a JSON-ready record."""
    from embedkit.encoders import Encoder, parse_pooling
    from embedkit.provenance import library_versions, machine_description
    from embedkit.retrieval.pipeline import make_encoder

    if not tasks and not cost_corpus_tasks:
        raise ConfigError("nothing to evaluate: give --tasks (quality) and/or "
                          "--cost-corpus-tasks (cost)")
    t0 = time.perf_counter()
    encoder = model if isinstance(model, Encoder) else make_encoder(
        model, pooling, cache=cache, device=device, dtype=dtype, batch_size=batch_size,
        lowercase=lowercase, progress=progress)
    pooling = parse_pooling(pooling or encoder.default_pooling)
    record: dict[str, Any] = {
        "embedkit": library_versions()["embedkit"],
        "versions": library_versions(),
        "machine": machine_description(),
        "command": command,
        "model": encoder.describe(),
        "settings": {
            "pooling": pooling, "metric": metric, "k": k, "max_length": max_length,
            "tasks": tasks, "splits": list(splits), "both_directions": both_directions,
            "threshold": threshold, "posts": list(posts), "fit_on": fit_on if posts else None,
            "fit_unique": fit_unique if posts else None,
            "cost_corpus_tasks": cost_corpus_tasks, "factories": list(factories),
            "nprobes": list(nprobes), "ef_searches": list(ef_searches), "n_queries": n_queries,
            "seed": seed, "cost_post": cost_post, "faiss_threads": _faiss_threads(),
            "device": str(encoder.device), "dtype": encoder.dtype_name,
            "data_dir": str(data_dir or os.environ.get("EMBEDKIT_DATA") or ""), "source": source,
            "cache": str(encoder.cache.root) if encoder.cache is not None else None,
        },
        "data": {},
        "quality": None,
        "cost": None,
    }
    if tasks:
        rows, data = quality_eval(
            encoder, tasks, splits=splits, pooling=pooling, posts=posts, max_length=max_length,
            both_directions=both_directions, threshold=threshold, fit_on=fit_on,
            fit_unique=fit_unique, metric=metric, k=k, data_dir=data_dir, source=source,
            skip_invalid=skip_invalid, force=force)
        record["quality"] = rows
        record["data"]["quality"] = data
    if cost_corpus_tasks:
        cost = cost_eval(
            encoder, cost_corpus_tasks, factories=factories, nprobes=nprobes,
            ef_searches=ef_searches, n_queries=n_queries, seed=seed, k=k, metric=metric,
            pooling=pooling, post=cost_post, max_length=max_length,
            single_queries=single_queries, data_dir=data_dir, source=source,
            skip_invalid=skip_invalid, force=force)
        record["data"]["cost"] = cost.pop("data")
        record["cost"] = cost
    record["timings"] = {**encoder.stats.as_dict(),
                         "seconds_total": round(time.perf_counter() - t0, 3)}
    return record


def _faiss_threads() -> int | None:
    try:
        import faiss
    except ImportError:  # pragma: no cover
        return None
    return int(faiss.omp_get_max_threads())


# --------------------------------------------------------------------------------------------
# tables


def _align(header: list[str], rows: list[list[str]], left: int = 1) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(r: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()

    return "\n".join(fmt(r) for r in [header, *rows])


def _markdown(header: list[str], rows: list[list[str]], left: int = 1) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] * left + ["---:"] * (len(header) - left)) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _quality_table(rows: list[dict[str, Any]], k: int = 10) -> tuple[list[str], list[list[str]]]:
    cuts = [c for c in (1, 5, 10) if c < k] + [k]
    keys = [f"recall@{c}" for c in cuts] + [f"mrr@{k}", f"ndcg@{k}"]
    header = ["task/split", "row"] + [key.replace("recall", "R") for key in keys] + [
        "queries", "corpus"]
    body = []
    for r in rows:
        body.append([f"{r['task']}/{r['split']}", r["row"]]
                    + [f"{100 * r[key]:.2f}" for key in keys]
                    + [str(r["n_queries"]), str(r["n_corpus"])])
    return header, body


def format_quality_table(rows: list[dict[str, Any]], k: int = 10, markdown: bool = False) -> str:
    """Recall / MRR / nDCG x 100, one line per task/split and row (raw, then each post)."""
    header, body = _quality_table(rows, k)
    return _markdown(header, body, 2) if markdown else _align(header, body, 2)


def _num(x: float | None, digits: int = 1) -> str:
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def _cost_table(cost: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    k = cost["target"]["k"]
    header = ["factory", "param", f"recall@{k}", "QPS batch", "QPS single", "speedup",
              "build s", "size MB", "target"]
    body = []
    for i, r in enumerate(cost["rows"]):
        body.append([r["factory"], r["param"] or "-", f"{r[f'recall@{k}']:.4f}",
                     _num(r["qps_batch"], 0), _num(r["qps_single"], 0),
                     f"{r['speedup']:.1f}x" if r["speedup"] is not None else "-",
                     f"{r['build_seconds']:.2f}", f"{r['disk_bytes'] / 2**20:.1f}",
                     "exact" if i == 0 else ("yes" if r["meets_target"] else "no")])
    return header, body


def best_line(cost: dict[str, Any]) -> str:
    k = cost["target"]["k"]
    what = (f"recall@{k} >= {cost['target']['recall']} of Flat at >= "
            f"{cost['target']['speedup']:g}x Flat's batch QPS")
    b = cost["best"]
    if b is None:
        return f"No approximate index meets {what}."
    param = f" ({b['param']})" if b["param"] else ""
    return (f"Best approximate index meeting {what}: {b['factory']}{param}, recall@{k} "
            f"{b[f'recall@{k}']:.4f}, {b['speedup']:.1f}x Flat ({b['qps_batch']:,.0f} QPS).")


def format_cost_table(cost: dict[str, Any], markdown: bool = False) -> str:
    """One line per factory and search setting; then the best approximate index."""
    header, body = _cost_table(cost)
    table = _markdown(header, body, 2) if markdown else _align(header, body, 2)
    return table + "\n\n" + best_line(cost)


def markdown_eval_report(record: dict[str, Any]) -> str:
    """The Markdown report: provenance (regenerate command, machine, versions), then tables."""
    from embedkit.experiments.report import provenance_lines

    model = record["model"]
    s = record["settings"]
    out = [f"# embedkit index eval: {model['name']}", ""]
    out += provenance_lines(record)
    out += [f"- Model: `{model['name']}` (identity `{model['identity']}`), pooling "
            f"{s['pooling']}, metric {s['metric']}, dtype {s['dtype']}, device {s['device']}"]
    if record.get("quality"):
        out += ["", f"## Retrieval quality (x 100, exact search, k = {s['k']})", "",
                f"STS pairs as retrieval: positives have label >= the task's threshold; corpus = "
                f"all unique sentences of the split; both directions: {s['both_directions']}; "
                f"postprocessors fitted on: {s['fit_on'] or '-'}.", "",
                format_quality_table(record["quality"], s["k"], markdown=True), "",
                "| task | split | pairs | threshold | queries | corpus | sha256 |",
                "|---|---|---:|---:|---:|---:|---|"]
        for task, splits in record["data"]["quality"].items():
            for split, d in splits.items():
                out.append(f"| {task} | {split} | {d['n_pairs']} | {d['threshold']:g} | "
                           f"{d['n_queries']} | {d['n_corpus']} | `{d['sha256'][:16]}` |")
    if record.get("cost"):
        c = record["cost"]
        out += ["", "## Cost of approximate search", "",
                f"Corpus: {c['n_corpus']} unique sentences of {s['cost_corpus_tasks']}; "
                f"{c['n_queries']} of them (seed {s['seed']}) as queries; post: "
                f"{c['post'] or 'none'}; FAISS threads: {s['faiss_threads']}. recall@"
                f"{c['target']['k']} is the overlap with exact (Flat) search.", "",
                format_cost_table(c, markdown=True)]
    t = record.get("timings") or {}
    if t:
        out += ["", "## Timings", "",
                f"- {t.get('unique_sentences', 0)} unique sentences asked for, "
                f"{t.get('cache_hits', 0)} from the cache, {t.get('encoded', 0)} encoded in "
                f"{t.get('seconds_encoding', 0):.1f} s; total {t.get('seconds_total', 0):.1f} s"]
    return "\n".join(out) + "\n"
