"""Per-pair predictions: for each task and split, every pair with its gold label and cosine, so
that errors can be inspected (the bench command's predictions option calls
:func:`bench_predictions`).

One file per (row, task, split): ``DIR/<row>/<task>/<split>.jsonl`` (JSON lines) or
``.parquet`` (when pyarrow is installed and ``fmt`` is ``auto`` or ``parquet``), with the
columns ``i`` (the pair's position in the split), ``sentence1``, ``sentence2``, ``label``,
``cosine`` (exactly the value Spearman ranks, :func:`~embedkit.evaluation.metrics.cosine_scores`),
``label_rank`` and ``cosine_rank`` (average ranks, as Spearman uses them; a large gap is a
pair the model gets wrong). ``DIR/predictions.json`` lists the files with each split's pair
count and the Spearman recomputed from the file's columns.

>>> import numpy as np, tempfile
>>> from embedkit.data import PairSplit
>>> s = PairSplit("T", "test", "-", "", ["a", "b", "c"], ["a", "x", "y"], np.array([2.0, 0, 1]))
>>> vec = {"a": [1.0, 0.0], "b": [0.0, 1.0], "c": [1.0, 1.0], "x": [1.0, 0.2], "y": [1.0, 0.1]}
>>> embed = lambda texts: np.array([vec[t] for t in texts])
>>> cols = _pair_columns(s, embed(s.sentences1), embed(s.sentences2))
>>> [round(c, 3) for c in cols["cosine"]], cols["cosine_rank"]
([1.0, 0.196, 0.774], [3.0, 1.0, 2.0])
>>> path = write_columns(cols, tempfile.mkdtemp() + "/T/test", fmt="jsonl")
>>> path.suffix, len(read_predictions(path)["i"])
('.jsonl', 3)
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedkit.aliases import StrPath
from embedkit.data import DataOptions, PairSplit, get_task, load_task
from embedkit.data.selection import collect_fit_sentences
from embedkit.data.spec import TaskSpec
from embedkit.encoders import SentenceEncoder
from embedkit.errors import ConfigError
from embedkit.evaluation.evaluator import STSEvaluator, lookup
from embedkit.evaluation.metrics import cosine_scores, spearman
from embedkit.evaluation.protocols import get_protocol
from embedkit.io.atomic import atomic_path, atomic_write_text
from embedkit.runs.choices import FORMATS

Transform = Callable[[np.ndarray], np.ndarray]


def has_pyarrow() -> bool:
    """Whether Parquet files can be written."""
    return importlib.util.find_spec("pyarrow") is not None


def _pair_columns(split: PairSplit, emb1: np.ndarray, emb2: np.ndarray) -> dict[str, list]:
    """The prediction columns of one split from its two sides' (transformed) vectors."""
    from scipy.stats import rankdata

    cos = cosine_scores(emb1, emb2)
    labels = np.asarray(split.labels, dtype=np.float64)
    return {"i": list(range(len(cos))), "sentence1": list(split.sentences1),
            "sentence2": list(split.sentences2), "label": labels.tolist(),
            "cosine": cos.tolist(), "label_rank": rankdata(labels).tolist(),
            "cosine_rank": rankdata(cos).tolist()}


def write_columns(columns: Mapping[str, list], base: StrPath, *,
                  fmt: str = "auto") -> Path:
    """Write columns to ``base.jsonl`` or ``base.parquet`` (atomically); returns the path."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown predictions format {fmt!r}; valid: {', '.join(FORMATS)}",
                          param="fmt")
    parquet = fmt == "parquet" or (fmt == "auto" and has_pyarrow())
    base = Path(base)
    base.parent.mkdir(parents=True, exist_ok=True)
    if parquet:
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = base.with_name(base.name + ".parquet")
        with atomic_path(path) as tmp:
            pq.write_table(pa.table(dict(columns)), str(tmp))
        return path
    path = base.with_name(base.name + ".jsonl")
    keys = list(columns)
    lines = (json.dumps(dict(zip(keys, row, strict=True)), ensure_ascii=False)
             for row in zip(*(columns[k] for k in keys), strict=True))
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return path


def read_predictions(path: StrPath) -> dict[str, list]:
    """The columns of a predictions file (``.jsonl`` or ``.parquet``)."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return {k: list(v) for k, v in pq.read_table(str(path)).to_pydict().items()}
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    keys = list(rows[0]) if rows else []
    return {k: [r[k] for r in rows] for k in keys}


def row_folder(label: str) -> str:
    """A folder name for a bench row label.

    >>> row_folder("cls + whiten:beta=1,k=256")
    'cls+whiten_beta=1,k=256'
    """
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", label.replace(" + ", "+"))


def write_predictions(out_dir: StrPath, evaluator: STSEvaluator,
                      encoder: SentenceEncoder, pooling: str | None = None, *,
                      transform: Transform | Mapping[str, Transform] | None = None,
                      row: str | None = None, max_length: Mapping[str, int] | None = None,
                      fmt: str = "auto") -> dict[str, dict[str, Any]]:
    """Per task and split of ``evaluator``, the pairs with label and cosine under ``encoder``
    (``pooling``; ``transform``, one for all tasks or ``{task: transform}``, applied to both
    sides, as :meth:`STSEvaluator.score_task` does), written under ``out_dir/<row>/``
    (``row`` default: the pooling). ``max_length``: per task, default the protocol's.
    Returns ``{task: {split: {"path", "n_pairs", "spearman"}}}``."""
    label = row or str(pooling or encoder.default_pooling)
    out: dict[str, dict[str, Any]] = {}
    for spec in evaluator.specs:
        sents = evaluator.sentences(spec.name)
        max_len = (max_length or {}).get(spec.name) or evaluator.max_length_for(spec, encoder)
        embed = lookup(sents, encoder.encode(sents, pooling, max_length=int(max_len)))
        t = transform.get(spec.name) if isinstance(transform, Mapping) else transform
        out[spec.name] = {}
        for split, d in evaluator.data[spec.name].items():
            e1, e2 = embed(d.sentences1), embed(d.sentences2)
            if t is not None:
                e1, e2 = t(e1), t(e2)
            cols = _pair_columns(d, e1, e2)
            path = write_columns(cols, Path(out_dir) / row_folder(label) / spec.name / split,
                                 fmt=fmt)
            out[spec.name][split] = {"path": str(path), "n_pairs": d.n_pairs,
                                     "spearman": spearman(cols["cosine"], cols["label"])}
    return out


def _fitted_transforms(record: Mapping[str, Any], evaluator: STSEvaluator,
                       encoder: SentenceEncoder, pooling: str, post: str,
                       data: DataOptions) -> dict[str, Transform]:
    """Refit a bench row's chain per task exactly as ``run_bench`` did (same fit sentences)."""
    from sklearn.base import clone

    from embedkit.postprocess import describe_post, pipeline_learns, resolve_post

    settings = record.get("settings") or {}
    chains = {describe_post(p): p for p in (resolve_post(c) for c in settings.get("post") or ())}
    if post not in chains:
        raise ConfigError(f"row post {post!r} is not among the record's chains "
                          f"{sorted(chains)}", param="record")
    pipe = chains[post]
    lengths = settings.get("max_length") or {}
    out: dict[str, Transform] = {}
    for spec in evaluator.specs:
        max_len = int(lengths.get(spec.name) or evaluator.max_length_for(spec, encoder))
        if pipeline_learns(pipe):
            fit = collect_fit_sentences(settings.get("fit_on") or "task", spec,
                                        evaluator.data[spec.name], data_dir=data.data_dir,
                                        source=data.source, skip_invalid=data.skip_invalid,
                                        unique=bool(settings.get("fit_unique")))
            vecs = encoder.encode(fit.sentences, pooling, max_length=max_len)
        else:  # a fixed chain learns nothing: fitting only checks the dimension
            sents = evaluator.sentences(spec.name)
            vecs = encoder.encode(sents, pooling, max_length=max_len)
        out[spec.name] = clone(pipe).fit(vecs).transform
    return out


def _record_specs(record: Mapping[str, Any]) -> list[TaskSpec]:
    settings = record.get("settings") or {}
    origins = settings.get("task_specs") or {}
    return [get_task(str(origins.get(t) or t)) for t in settings.get("tasks") or ()]


def bench_predictions(out_dir: StrPath, encoder: SentenceEncoder,
                      record: Mapping[str, Any], *, data: DataOptions | None = None,
                      rows: Sequence[str] | None = None, fmt: str = "auto"
                      ) -> dict[str, Any]:
    """Predictions for every row of a bench ``record`` (made with ``encoder``): same tasks,
    splits, max lengths and data; postprocessor chains refitted per task as the bench fitted
    them. Writes ``out_dir/predictions.json`` (files, pair counts, Spearman recomputed from the
    files next to the record's) and returns it.

    ``data``: where the data is (default: the record's ``data_dir``/``source``)."""
    settings = record.get("settings") or {}
    if record.get("kind") != "bench":
        raise ConfigError(f"bench_predictions takes a bench record, not kind "
                          f"{record.get('kind')!r}", param="record")
    data = data or DataOptions(settings.get("data_dir") or None, settings.get("source", "auto"),
                               bool(settings.get("skip_invalid")))
    specs = _record_specs(record)
    protocol = get_protocol(settings.get("protocol", "whitening"))
    splits = settings.get("splits") or {}
    loaded = {spec.name: load_task(spec, tuple(splits.get(spec.name) or protocol.splits(spec)),
                                   data_dir=data.data_dir, source=data.source,
                                   skip_invalid=data.skip_invalid) for spec in specs}
    evaluator = STSEvaluator.from_splits(loaded, specs, protocol=protocol.name)
    summary: dict[str, Any] = {"model": record.get("model"), "rows": {}}
    for label, row in (record.get("results") or {}).items():
        if rows is not None and label not in rows:
            continue
        pooling, post = row.get("pooling") or label, row.get("post")
        transform = (_fitted_transforms(record, evaluator, encoder, pooling, post, data)
                     if post else None)
        files = write_predictions(out_dir, evaluator, encoder, pooling, transform=transform,
                                  row=label, max_length=settings.get("max_length"), fmt=fmt)
        for task, by_split in files.items():
            for split, info in by_split.items():
                info["record_spearman"] = row.get(task, {}).get(split, {}).get("spearman")
        summary["rows"][label] = files
    atomic_write_text(Path(out_dir) / "predictions.json",
                      json.dumps(summary, indent=1, ensure_ascii=False, default=str))
    return summary
