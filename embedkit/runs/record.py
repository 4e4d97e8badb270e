"""The one run-record builder every experiment uses: what a result needs to be reproduced
(versions, machine, command, model identity, settings, data checksums, timings), the
``speed`` block of every run that encodes (:func:`speed_block`), and the record types: :class:`RunRecord`, the header every record starts with, and one ``TypedDict``
per runner's record (:class:`BenchRecord`, :class:`SweepRecord`, :class:`IndexEvalRecord`,
:class:`DiagnoseRecord`), which the readers (compare, the mteb results, the reports, the
command line) take.

>>> rec = run_record("demo", command="embedkit demo", encoder=None, settings={"k": 3}, data={})
>>> rec["kind"], rec["settings"], "numpy" in rec["versions"], rec["data_source"]["kind"]
('demo', {'k': 3}, True, 'none')
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict

from embedkit.aliases import JSONDict, StrPath
from embedkit.errors import ConfigError
from embedkit.provenance import library_versions, machine_description

if TYPE_CHECKING:  # the library is imported where the work is
    from embedkit.data import PairSplit
    from embedkit.encoders import SentenceEncoder


class _Header(TypedDict):
    kind: str
    embedkit: str
    versions: dict[str, str]
    machine: JSONDict
    command: str | None
    settings: JSONDict
    data: JSONDict


class SpeedBlock(TypedDict):
    """How fast a run encoded (:func:`speed_block`): ``sentences_per_second`` (None when
    nothing was encoded: ``status`` says why, ``cached`` when every vector came from the
    cache), ``seconds_encoding``, ``encoded`` (sentences run through the model),
    ``cache_hits``, ``backend``, ``precision`` (:func:`precision_name`), ``threads``,
    ``device`` and ``hardware``: the machine's fingerprint digest (``machine.fingerprint``),
    equal for two records measured on the same hardware with the same threads."""

    sentences_per_second: float | None
    status: str
    seconds_encoding: float
    encoded: int
    cache_hits: int
    backend: str
    precision: str
    threads: int | None
    device: str
    hardware: str


class RunRecord(_Header, total=False):
    """The header :func:`run_record` builds: ``kind``, the library ``versions`` (``embedkit``
    alone too), ``machine``, ``command``, ``model`` (the encoder's description; None without
    an encoder; absent from a ``bench-models`` record, whose models each have theirs),
    ``settings``, ``data`` (per task and split: source, checksum, pair count), ``data_source``
    (where the task data came from; absent from records older than it) and ``timings``."""

    model: Any  # JSONDict; None for a run without an encoder (readers of such kinds check)
    data_source: JSONDict
    timings: JSONDict
    speed: SpeedBlock  # bench, sweep and index eval records (absent from older ones)


class BenchRecord(RunRecord, total=False):
    """An ``embedkit bench`` record (kind ``bench``), or several models' (``bench-models``:
    ``models``, one ``bench`` record each). ``results``: per row label, per task its splits'
    scores, ``avg`` and ``w-avg``, the across-task ``avg``, the row's ``pooling`` and ``post``;
    ``bytes_per_vector`` per row; ``undefined``: the NaN scores, when any. Each score is
    stored once: :func:`~embedkit.runs.bench.bench_metrics` derives the flat metrics;
    ``metrics`` is only in records written before that (``bench_metrics`` returns it)."""

    results: dict[str, JSONDict]
    bytes_per_vector: dict[str, int | None]
    undefined: list[dict[str, str]]
    truncated: dict[str, dict[str, int]]
    truncated_of: dict[str, dict[str, int]]
    primary_metric: str
    mteb: JSONDict
    models: list[BenchRecord]
    metrics: dict[str, dict[str, float]]


class SweepRecord(RunRecord, total=False):
    """An ``embedkit sweep`` record: ``results`` per task and pooling (the grid's scores),
    the truncation counts and the ``plots`` a report added."""

    results: dict[str, JSONDict]
    truncated: JSONDict
    truncated_of: JSONDict
    plots: list[str]


class IndexEvalRecord(RunRecord, total=False):
    """An ``embedkit index eval`` record: ``quality`` (one row per task, split, pooling and
    post: the ranking metrics at each cut-off; None when only the cost was measured) and
    ``cost`` (build and search cost of each index; None when not measured)."""

    quality: Any  # list[JSONDict]; None when not measured
    cost: Any  # JSONDict; None when not measured


class EncodeRecord(RunRecord, total=False):
    """An ``embedkit encode`` record: ``status`` (``written``, or ``complete`` when the folder
    already was), the folder ``out``, its ``manifest``, and what this run encoded."""

    status: str
    out: str
    manifest: JSONDict
    rows_encoded: int
    shards_encoded: list[int]


class DiagnoseRecord(RunRecord, total=False):
    """An ``embedkit diagnose`` record: ``rows`` (per task, pooling and post: the diagnostics
    and the score), their ``summary``, the dimension ``sweep`` (None without one), the
    ``conclusions`` a report drew and its ``plots``."""

    rows: list[JSONDict]
    summary: list[JSONDict]
    sweep: Any  # JSONDict; None without a dimension sweep
    conclusions: list[str]
    plots: list[str]


def run_record(kind: str, *, command: str | None, encoder: SentenceEncoder | None,
               settings: Mapping[str, Any], data: Mapping[str, Any],
               versions_extra: Sequence[str] = (),
               source: Mapping[str, Any] | None = None) -> RunRecord:
    """The common header of a record: ``kind``, versions, machine, command, the encoder's
    description and run settings (merged under ``settings``, the caller's keys first), data,
    and ``data_source``: where the task data came from (``source``, else
    :func:`~embedkit.data.data_source` of every ``source`` in ``data``, against
    ``settings["data_dir"]``)."""
    from embedkit.data import data_source
    from embedkit.encoders import settings_record

    versions = library_versions(tuple(versions_extra))
    run = settings_record(encoder) if encoder is not None else {}
    model = encoder.describe() if encoder is not None else None
    return {
        "kind": kind,
        "embedkit": versions["embedkit"],
        "versions": versions,
        "machine": machine_description(*_threads_device(model)),
        "command": command,
        "model": model,
        "settings": {**dict(settings), **{k: v for k, v in run.items() if k not in settings}},
        "data": dict(data),
        "data_source": dict(source) if source is not None else data_source(
            _split_sources(data), settings.get("data_dir") or None),
    }


def _threads_device(model: Mapping[str, Any] | None) -> tuple[int | None, str | None]:
    """The threads and device an encoder's description states (None for what it does not)."""
    threads = (model or {}).get("threads")
    return (threads if isinstance(threads, int) else None), (model or {}).get("device")


def precision_name(dtype: str | None, quantize: str | None) -> str:
    """The precision an encoder computed in, from its description's ``quantize`` and ``dtype``:
    the quantisation when there is one (``int8``, ``int8-static``), else the dtype's short
    name (``fp32``, ``bf16``, ``fp16``).

    >>> precision_name("float32", "none"), precision_name("bfloat16", None)
    ('fp32', 'bf16')
    >>> precision_name("float32", "int8-static")
    'int8-static'
    """
    if quantize and quantize != "none":
        return quantize
    short = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
    return short.get(dtype or "float32", str(dtype))


def speed_block(encoder: SentenceEncoder | None, record: Mapping[str, Any]) -> SpeedBlock:
    """The ``speed`` block of a run that encoded (see :class:`SpeedBlock`), from the encoder
    stack's counters and the ``model`` and ``machine`` of ``record`` (its header). Every
    vector from the cache: no speed (``status`` ``cached``), never a misleading number.

    >>> rec = {"model": {"backend": "onnx", "quantize": "int8", "threads": 2},
    ...        "machine": {"fingerprint": "0123456789ab"}}
    >>> b = speed_block(None, rec)
    >>> b["sentences_per_second"], b["status"], b["precision"], b["hardware"]
    (None, 'not measured', 'int8', '0123456789ab')
    """
    from embedkit.encoders import encode_stats

    stats = encode_stats(encoder)
    model = record.get("model") or {}
    encoded = int(stats["encoded"])
    status = ("measured" if encoded and stats["sentences_per_second"] > 0 else
              "cached" if stats["cache_hits"] else "not measured")
    threads, device = _threads_device(model)
    return {"sentences_per_second": stats["sentences_per_second"] if status == "measured"
            else None, "status": status, "seconds_encoding": stats["seconds_encoding"],
            "encoded": encoded, "cache_hits": int(stats["cache_hits"]),
            "backend": str(model.get("backend") or "torch"),
            "precision": precision_name(model.get("dtype"), model.get("quantize")),
            "threads": threads, "device": str(device or "cpu"),
            "hardware": str((record.get("machine") or {}).get("fingerprint") or "")}


def _split_sources(data: Any) -> list[str]:
    """Every split's ``source`` (a file path or ``hub:...``) anywhere in a record's ``data``
    (a split summary is a mapping with ``source`` and ``n_pairs``).

    >>> _split_sources({"T": {"test": {"source": "/d/t.tsv", "n_pairs": 3}, "fit": {"on": "x"}}})
    ['/d/t.tsv']
    """
    if isinstance(data, Mapping):
        found = [data["source"]] if isinstance(data.get("source"), str) and "n_pairs" in data else []
        return found + [s for v in data.values() for s in _split_sources(v)]
    if isinstance(data, list | tuple):
        return [s for v in data for s in _split_sources(v)]
    return []


def data_dir_setting(data_dir: StrPath | None) -> str:
    """The data folder a run read (the argument, else ``EMBEDKIT_DATA``, else the default
    folder found; "" for none: the hub)."""
    from embedkit.data import find_data_dir

    try:
        return str(find_data_dir(data_dir).path or "")
    except ConfigError:  # named but missing: a hub run never read it
        return str(data_dir or os.environ.get("EMBEDKIT_DATA") or "")


def refresh_data_source(record: RunRecord) -> None:
    """Recompute ``record["data_source"]`` after the runner filled ``record["data"]``."""
    from embedkit.data import data_source

    record["data_source"] = data_source(_split_sources(record.get("data")),
                                        (record.get("settings") or {}).get("data_dir") or None)


def split_summary(splits: Mapping[str, PairSplit]) -> dict[str, dict[str, Any]]:
    """Per split: where it came from, its checksum, pair count and skipped rows."""
    return {s: {"source": d.source, "sha256": d.sha256, "n_pairs": d.n_pairs,
                "skipped": d.skipped} for s, d in splits.items()}


def timings(encoder: SentenceEncoder | None, t_start: float, **extra: Any) -> dict[str, Any]:
    """The encoder's counters, the caller's extra timings and the total wall time."""
    from embedkit.encoders import encode_stats

    return {**encode_stats(encoder), **extra,
            "seconds_total": round(time.perf_counter() - t_start, 3)}


def add_timings(record: RunRecord, encoder: SentenceEncoder | None, t_start: float,
                **extra: Any) -> None:
    """Close a record of a run that encoded: its ``timings`` (:func:`timings`) and its
    ``speed`` block (:func:`speed_block`)."""
    record["timings"] = timings(encoder, t_start, **extra)
    record["speed"] = speed_block(encoder, record)


def truncation_counts(encoder: Any, data: Mapping[str, Mapping[str, PairSplit]],
                      max_lengths: Mapping[str, int]
                      ) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]] | None:
    """Per task and split of ``data``, how many of its distinct sentences are longer than the
    task's max length (so truncated), and how many distinct sentences it has; None when the
    encoder cannot tell (it has no ``count_truncated(sentences, max_length)``).

    >>> class Enc:  # "tokens" are characters here
    ...     def count_truncated(self, sentences, max_length):
    ...         return sum(len(s) > max_length for s in sentences)
    >>> from embedkit.data import PairSplit
    >>> split = PairSplit("T", "test", "t.tsv", "0", ["ab", "abcdef"], ["ab", "abc"], [1.0, 0.0])
    >>> truncation_counts(Enc(), {"T": {"test": split}}, {"T": 4})
    ({'T': {'test': 1}}, {'T': {'test': 3}})
    >>> truncation_counts(object(), {"T": {"test": split}}, {"T": 4}) is None
    True
    """
    count = getattr(encoder, "count_truncated", None)
    if count is None:
        return None
    truncated: dict[str, dict[str, int]] = {}
    of: dict[str, dict[str, int]] = {}
    for task, splits in data.items():
        for split, d in splits.items():
            sentences = d.unique_sentences()
            truncated.setdefault(task, {})[split] = int(count(sentences, max_lengths[task]))
            of.setdefault(task, {})[split] = len(sentences)
    return truncated, of


def run_revision(settings: Mapping[str, Any] | None, model: Mapping[str, Any] | None) -> str:
    """The model revision a run used: the one asked for, else the hub commit
    its identity pins (12 digits); "" for a local folder (its identity is its files' sha256).

    >>> run_revision({}, {"identity": "moka-ai/m3e-small@0123456789abcdef"})
    '0123456789ab'
    >>> run_revision({"revision": "v2"}, None), run_revision({}, {"identity": "sha256:ab"})
    ('v2', '')
    """
    rev = (settings or {}).get("revision") or (model or {}).get("revision")
    if rev:
        return str(rev)
    identity = str((model or {}).get("identity") or "").split(";")[0]
    commit = identity.rsplit("@", 1)[1] if "@" in identity else ""
    return commit[:12] if commit and commit != "unknown" else ""
