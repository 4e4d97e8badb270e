"""Corpora to index: a text file (one text a line, with an optional aligned ids file), or the
unique sentences of task splits.

Corpus files hold one text a line (a BOM and a trailing ``\\r`` are dropped; blank lines are
skipped). An ids file holds one id a line, aligned line by line with the corpus file (same
number of lines; a blank text line drops its id too, a blank id is no id).

>>> drop_blank_texts(["a", "", "b"], ["1", "2", "3"])
(['a', 'b'], ['1', '3'])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from embedkit.aliases import StrPath
from embedkit.data.loading import load_split
from embedkit.data.selection import parse_task_split
from embedkit.data.spec import TaskSpec
from embedkit.errors import ConfigError
from embedkit.io.textfile import read_lines
from embedkit.provenance import sha256_file, sha256_text

__all__ = ["corpus_from_tasks", "drop_blank_texts", "read_corpus"]


def drop_blank_texts(
    texts: Sequence[str], ids: Sequence[str] | None = None
) -> tuple[list[str], list[str | None] | None]:
    """Drop blank text lines (and their ids); an empty id becomes None."""
    if ids is not None and len(ids) != len(texts):
        raise ConfigError(
            f"the ids file has {len(ids)} lines but the corpus file {len(texts)}; they must be "
            "aligned line by line", param="ids"
        )
    keep = [i for i, t in enumerate(texts) if t.strip()]
    out_ids = None if ids is None else [ids[i].strip() or None for i in keep]
    return [texts[i] for i in keep], out_ids


def read_corpus(
    path: StrPath, ids_path: StrPath | None = None
) -> tuple[list[str], list[str | None] | None, dict[str, Any]]:
    """Texts (one a line), their ids (or None) and a description of the source
    (``{"source": "file:PATH", "sha256", "n_texts"(, "ids_sha256")}``)."""
    lines = read_lines(path, "corpus")
    ids = read_lines(ids_path, "ids") if ids_path is not None else None
    texts, user_ids = drop_blank_texts(lines, ids)
    info: dict[str, Any] = {
        "source": f"file:{Path(path).resolve()}",
        "sha256": sha256_file(path),
        "n_texts": len(texts),
    }
    if ids_path is not None:
        info["ids_sha256"] = sha256_file(ids_path)
    return texts, user_ids, info


def _task_items(tasks: str | Sequence[str | tuple[TaskSpec, str | None]]
                ) -> list[tuple[TaskSpec, str | None]]:
    items = [tasks] if isinstance(tasks, str) else list(tasks)
    out: list[tuple[TaskSpec, str | None]] = []
    for item in items:
        if isinstance(item, tuple):
            out.append(item)
        elif item.strip():
            out.append(parse_task_split(item.strip(), param="tasks"))
    if not out:
        raise ConfigError("no task given; use e.g. ['LCQMC:test', 'BQ:test']", param="tasks")
    return out


def corpus_from_tasks(
    tasks: str | Sequence[str | tuple[TaskSpec, str | None]],
    *,
    data_dir: StrPath | None = None,
    source: str = "auto",
    skip_invalid: bool = False,
) -> tuple[list[str], dict[str, Any]]:
    """The unique sentences (both columns, first-seen order) of task splits.

    ``tasks`` holds ``TASK[:SPLIT]`` items (or ``(TaskSpec, split)`` pairs); without a split a
    task contributes its default splits. Returns the texts and a record
    ``{"source": "tasks", "tasks": {task: {split: {source, sha256, n_pairs, skipped}}},
    "n_texts", "sha256"}``.
    """
    texts: dict[str, None] = {}
    record: dict[str, dict[str, Any]] = {}
    for spec, split in _task_items(tasks):
        for s in [split] if split else list(spec.default_splits):
            data = load_split(spec, s, data_dir=data_dir, source=source, skip_invalid=skip_invalid)
            record.setdefault(spec.name, {})[data.split] = {
                "source": data.source,
                "sha256": data.sha256,
                "n_pairs": data.n_pairs,
                "skipped": data.skipped,
            }
            texts.update(dict.fromkeys(data.unique_sentences()))
    out = list(texts)
    return out, {"source": "tasks", "tasks": record, "n_texts": len(out),
                 "sha256": sha256_text("\n".join(out))}
