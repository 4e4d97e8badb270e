"""The one run-record builder every experiment uses: what a result needs to be reproduced
(versions, machine, command, model identity, settings, data checksums, timings).

>>> rec = run_record("demo", command="embedkit demo", encoder=None, settings={"k": 3}, data={})
>>> rec["kind"], rec["settings"], "numpy" in rec["versions"]
('demo', {'k': 3}, True)
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from embedkit.data import PairSplit
from embedkit.encoders import SentenceEncoder, encode_stats, encoder_settings
from embedkit.provenance import library_versions, machine_description


def run_record(kind: str, *, command: str | None, encoder: SentenceEncoder | None,
               settings: Mapping[str, Any], data: Mapping[str, Any],
               versions_extra: Sequence[str] = ()) -> dict[str, Any]:
    """The common header of a record: ``kind``, versions, machine, command, the encoder's
    description and run settings (merged under ``settings``, the caller's keys first), data."""
    versions = library_versions(tuple(versions_extra))
    run = encoder_settings(encoder) if encoder is not None else {}
    return {
        "kind": kind,
        "embedkit": versions["embedkit"],
        "versions": versions,
        "machine": machine_description(),
        "command": command,
        "model": encoder.describe() if encoder is not None else None,
        "settings": {**dict(settings), **{k: v for k, v in run.items() if k not in settings}},
        "data": dict(data),
    }


def data_dir_setting(data_dir: str | os.PathLike | None) -> str:
    """The data folder a run read (the argument, else ``EMBEDKIT_DATA``; "" for the hub)."""
    return str(data_dir or os.environ.get("EMBEDKIT_DATA") or "")


def split_summary(splits: Mapping[str, PairSplit]) -> dict[str, dict[str, Any]]:
    """Per split: where it came from, its checksum, pair count and skipped rows."""
    return {s: {"source": d.source, "sha256": d.sha256, "n_pairs": d.n_pairs,
                "skipped": d.skipped} for s, d in splits.items()}


def timings(encoder: SentenceEncoder | None, t_start: float, **extra: Any) -> dict[str, Any]:
    """The encoder's counters, the caller's extra timings and the total wall time."""
    return {**encode_stats(encoder), **extra,
            "seconds_total": round(time.perf_counter() - t_start, 3)}
