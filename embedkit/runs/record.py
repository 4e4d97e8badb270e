"""The one run-record builder every experiment uses: what a result needs to be reproduced
(versions, machine, command, model identity, settings, data checksums, timings).

>>> rec = run_record("demo", command="embedkit demo", encoder=None, settings={"k": 3}, data={})
>>> rec["kind"], rec["settings"], "numpy" in rec["versions"], rec["data_source"]["kind"]
('demo', {'k': 3}, True, 'none')
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from embedkit.errors import ConfigError
from embedkit.provenance import library_versions, machine_description

if TYPE_CHECKING:  # the library is imported where the work is
    from embedkit.data import PairSplit

if TYPE_CHECKING:  # the library is imported where the work is
    from embedkit.encoders import SentenceEncoder


def run_record(kind: str, *, command: str | None, encoder: SentenceEncoder | None,
               settings: Mapping[str, Any], data: Mapping[str, Any],
               versions_extra: Sequence[str] = (),
               source: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The common header of a record: ``kind``, versions, machine, command, the encoder's
    description and run settings (merged under ``settings``, the caller's keys first), data,
    and ``data_source``: where the task data came from (``source``, else
    :func:`~embedkit.data.data_source` of every ``source`` in ``data``, against
    ``settings["data_dir"]``)."""
    from embedkit.data import data_source
    from embedkit.encoders import settings_record

    versions = library_versions(tuple(versions_extra))
    run = settings_record(encoder) if encoder is not None else {}
    return {
        "kind": kind,
        "embedkit": versions["embedkit"],
        "versions": versions,
        "machine": machine_description(),
        "command": command,
        "model": encoder.describe() if encoder is not None else None,
        "settings": {**dict(settings), **{k: v for k, v in run.items() if k not in settings}},
        "data": dict(data),
        "data_source": dict(source) if source is not None else data_source(
            split_sources(data), settings.get("data_dir") or None),
    }


def split_sources(data: Any) -> list[str]:
    """Every split's ``source`` (a file path or ``hub:...``) anywhere in a record's ``data``
    (a split summary is a mapping with ``source`` and ``n_pairs``).

    >>> split_sources({"T": {"test": {"source": "/d/t.tsv", "n_pairs": 3}, "fit": {"on": "x"}}})
    ['/d/t.tsv']
    """
    if isinstance(data, Mapping):
        found = [data["source"]] if isinstance(data.get("source"), str) and "n_pairs" in data else []
        return found + [s for v in data.values() for s in split_sources(v)]
    if isinstance(data, list | tuple):
        return [s for v in data for s in split_sources(v)]
    return []


def data_dir_setting(data_dir: str | os.PathLike | None) -> str:
    """The data folder a run read (the argument, else ``EMBEDKIT_DATA``, else the default
    folder found; "" for none: the hub)."""
    from embedkit.data import find_data_dir

    try:
        return str(find_data_dir(data_dir).path or "")
    except ConfigError:  # named but missing: a hub run never read it
        return str(data_dir or os.environ.get("EMBEDKIT_DATA") or "")


def refresh_data_source(record: dict[str, Any]) -> None:
    """Recompute ``record["data_source"]`` after the runner filled ``record["data"]``."""
    from embedkit.data import data_source

    record["data_source"] = data_source(split_sources(record.get("data")),
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
