"""``embedkit bench``: encoder x poolings (x postprocessors) on the STS tasks, one JSON record.

>>> rec = run_bench("m3e-small", ["cls"], ["STS-B"], data_dir="../shared/data")  # doctest: +SKIP
>>> rec["results"]["cls"]["STS-B"]["test"]["spearman"]                              # doctest: +SKIP
0.7...
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import numpy as np

from embedkit.encoders.cache import EmbeddingCache
from embedkit.data import PairSplit, load_task, parse_tasks
from embedkit.data.spec import TaskSpec, canonical_split
from embedkit.encoders import Encoder, parse_pooling
from embedkit.errors import ConfigError
from embedkit.evaluation.evaluator import PRIMARY_METRIC, aggregate
from embedkit.evaluation.metrics import pair_scores
from embedkit.evaluation.protocols import get_protocol
from embedkit.provenance import library_versions, machine_description, sha256_text


def split_poolings(arg: str | Sequence[str] | None) -> list[str]:
    """Parse ``--pooling`` values: comma-separated and/or repeated; ``layers-avg:1,-1`` keeps its
    comma-separated layer indices.

    >>> split_poolings(["cls,layers-avg:1,-1", "mean"])
    ['cls', 'layers-avg:1,-1', 'last-avg']
    """
    if arg is None:
        return []
    items = [arg] if isinstance(arg, str) else list(arg)
    out: list[str] = []
    for item in items:
        for tok in item.split(","):
            tok = tok.strip()
            if not tok:
                continue
            if out and out[-1].startswith("layers-avg:") and tok.lstrip("-").isdigit():
                out[-1] += "," + tok
            else:
                out.append(tok)
    return list(dict.fromkeys(parse_pooling(p) for p in out))


def fit_sentences(fit_on: str, spec: TaskSpec, data: dict[str, PairSplit], *, data_dir, source,
                  skip_invalid: bool, unique: bool) -> tuple[list[str], str]:
    """The sentences a postprocessor is fitted on, and a description for the record.

    ``fit_on`` is ``task`` (every split of ``spec``), a split name or a file; the same resolver
    as ``embedkit whiten`` (:func:`embedkit.postprocess.fitting.collect_fit_sentences`).
    """
    from embedkit.postprocess.fitting import collect_fit_sentences

    fs = collect_fit_sentences(fit_on, spec, data, data_dir=data_dir, source=source,
                               skip_invalid=skip_invalid, unique=unique)
    return fs.sentences, fs.description


def run_bench(model: str | Encoder, poolings: Sequence[str] | None = None,
              tasks: Sequence[str | TaskSpec] | str | None = None,
              splits: Sequence[str] | None = None, *, protocol: str = "whitening",
              max_length: int | None = None, batch_size: int = 64, device: str | None = "cpu",
              dtype: str = "float32", lowercase: bool = False,
              data_dir: str | os.PathLike | None = None, source: str = "auto",
              cache: EmbeddingCache | None | bool = True, skip_invalid: bool = False,
              post: Sequence[str] = (), fit_on: str = "task", fit_unique: bool = False,
              force: bool = False, progress: bool | None = None,
              command: str | None = None) -> dict:
    """Run the benchmark and return its JSON-ready record (see the README for the fields).

    ``post`` chains with a ``file:`` step use a saved map: one fitted for another model, pooling
    or dimension is a :class:`ConfigError` unless ``force`` (then a warning). When every chain
    is fixed (only ``file:`` and ``norm`` steps) nothing is fitted and no fit sentences are
    encoded.
    """
    t_start = time.perf_counter()
    if cache is True:
        cache = EmbeddingCache()
    elif cache is False:
        cache = None
    if isinstance(model, Encoder):
        encoder = model
    else:
        encoder = Encoder(model, device=device, dtype=dtype, lowercase=lowercase, cache=cache,
                          batch_size=batch_size, progress=progress)
    poolings = split_poolings(poolings) or [encoder.default_pooling]
    specs = parse_tasks(tasks) if tasks is None or isinstance(tasks, str) else [
        t if isinstance(t, TaskSpec) else parse_tasks(t)[0] for t in tasks]
    proto = get_protocol(protocol)
    req_splits = tuple(canonical_split(s) for s in (splits or ()))
    post_specs = list(post)
    pipelines = _parse_posts(post_specs)
    post_files = _check_fixed_steps(pipelines, encoder, poolings, force)
    need_fit = any(not _is_fixed(pipe) for _, pipe in pipelines)

    data_record: dict = {}
    per_row: dict[str, dict[str, dict[str, dict]]] = {}
    row_info: dict[str, dict] = {}
    max_lengths: dict[str, int] = {}
    for spec in specs:
        wanted = proto.splits(spec, req_splits or None)
        data = load_task(spec, wanted, data_dir=data_dir, source=source, skip_invalid=skip_invalid)
        max_len = proto.max_length(spec, encoder.model_max_length(), max_length)
        max_lengths[spec.name] = max_len
        data_record[spec.name] = {s: {"source": d.source, "sha256": d.sha256, "n_pairs": d.n_pairs,
                                      "skipped": d.skipped} for s, d in data.items()}
        sentences = list(dict.fromkeys(t for d in data.values()
                                       for t in (*d.sentences1, *d.sentences2)))
        vecs = encoder.encode_multi(sentences, poolings, max_length=max_len, batch_size=batch_size)
        row_of = {s: i for i, s in enumerate(sentences)}
        fit_vecs: dict[str, np.ndarray] = {}
        if need_fit:
            fsents, fwhat = fit_sentences(fit_on, spec, data, data_dir=data_dir, source=source,
                                          skip_invalid=skip_invalid, unique=fit_unique)
            fit_vecs = encoder.encode_multi(fsents, poolings, max_length=max_len,
                                            batch_size=batch_size)
            data_record[spec.name]["fit"] = {"on": fwhat, "n_sentences": len(fsents),
                                             "unique": fit_unique,
                                             "sha256": sha256_text("\n".join(fsents))}
        for pooling in poolings:
            v = vecs[pooling]
            rows = [(pooling, None, None)] + [
                (f"{pooling} + {label}", label, pipe) for label, pipe in pipelines]
            for label, post_label, pipe in rows:
                transform = None
                if pipe is not None:
                    from sklearn.base import clone

                    # A fixed chain learns nothing: fitting it on the vectors only checks d.
                    fitted = clone(pipe).fit(fit_vecs[pooling] if need_fit else v)
                    transform = fitted.transform
                    row_info[label] = {"pooling": pooling, "post": post_label}
                else:
                    row_info[label] = {"pooling": pooling, "post": None}
                res = per_row.setdefault(label, {}).setdefault(spec.name, {})
                for split, d in data.items():
                    e1 = v[[row_of[t] for t in d.sentences1]]
                    e2 = v[[row_of[t] for t in d.sentences2]]
                    if transform is not None:
                        e1, e2 = transform(e1), transform(e2)
                    res[split] = pair_scores(e1, e2, d.labels)

    results: dict[str, dict] = {}
    metrics: dict[str, dict] = {}
    for label, per_task in per_row.items():
        flat = aggregate(per_task)
        metrics[label] = flat
        results[label] = {
            **{task: {**splits_res,
                      "avg": {"spearman": flat[f"{task}/avg/spearman"],
                              "pearson": flat[f"{task}/avg/pearson"]},
                      "w-avg": {"spearman": flat[f"{task}/w-avg/spearman"],
                                "pearson": flat[f"{task}/w-avg/pearson"]}}
               for task, splits_res in per_task.items()},
            "avg": {"spearman": flat["avg/spearman"], "pearson": flat["avg/pearson"]},
            **row_info[label],
        }
    stats = encoder.stats.as_dict()
    return {
        "embedkit": library_versions()["embedkit"],
        "versions": library_versions(),
        "machine": machine_description(),
        "command": command,
        "model": encoder.describe(),
        "settings": {
            "poolings": poolings, "tasks": [s.name for s in specs],
            "task_specs": {s.name: s.origin for s in specs},
            "splits": {s.name: [k for k in data_record[s.name] if k != "fit"] for s in specs},
            "protocol": proto.name, "max_length": max_lengths, "batch_size": batch_size,
            "device": str(encoder.device), "dtype": encoder.dtype_name,
            "lowercase": encoder.lowercase,
            "data_dir": str(data_dir or os.environ.get("EMBEDKIT_DATA") or ""),
            "source": source, "cache": str(cache.root) if cache is not None else None,
            "skip_invalid": skip_invalid, "post": post_specs,
            "fit_on": fit_on if need_fit else None, "fit_unique": fit_unique if need_fit else None,
            "force": force, "post_files": post_files,
            "seed": 0,
        },
        "data": data_record,
        "results": results,
        "metrics": metrics,
        "primary_metric": PRIMARY_METRIC,
        "timings": {**stats, "seconds_total": round(time.perf_counter() - t_start, 3)},
    }


def _parse_posts(post_specs: list[str]) -> list[tuple[str, object]]:
    if not post_specs:
        return []
    from embedkit.postprocess import describe_post, parse_post

    out = []
    for spec in post_specs:
        pipe = parse_post(spec)
        out.append((describe_post(pipe), pipe))
    return out


def _is_fixed(pipe) -> bool:
    """True when no step of the chain learns from data (``file:`` and ``norm`` only)."""
    from embedkit.postprocess import FixedTransform, Normalize

    return all(isinstance(est, (FixedTransform, Normalize)) for _, est in pipe.steps)


def _check_fixed_steps(pipelines, encoder: Encoder, poolings: Sequence[str],
                       force: bool) -> dict[str, dict]:
    """Load every ``file:`` step's metadata now (before any encoding) and refuse a map fitted
    for another model, pooling or input dimension (:func:`check_compatible`; ``force`` warns).
    Returns ``{path: metadata}`` for the record."""
    from embedkit.postprocess import FixedTransform, check_compatible, load_transform

    files: dict[str, dict] = {}
    hidden = int(getattr(encoder.model.config, "hidden_size", 0) or 0) or None
    for _, pipe in pipelines:
        for i, (_, est) in enumerate(pipe.steps):
            if not isinstance(est, FixedTransform):
                continue
            meta = load_transform(est.path).metadata
            files[str(est.path)] = meta
            for pooling in poolings:
                try:
                    # the input dimension is the encoder's only for a chain's first step
                    check_compatible(meta, model=encoder.identity, pooling=pooling,
                                     dim=hidden if i == 0 else None, force=force)
                except ConfigError as e:
                    raise ConfigError(f"--post file:{est.path}: {e}") from None
    return files
