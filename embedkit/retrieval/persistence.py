"""The files of a saved :class:`~embedkit.retrieval.index.EmbeddingIndex`.

A folder holds ``index.faiss`` (the FAISS index, pre-transforms included), ``texts.jsonl``
(``{"id", "text"(, "user_id")}`` per line, ``id`` = position) and ``index.json`` (format,
factory, metric, dimensions, counts, recipe, versions and the sha256 of every file, extra files
such as ``post.safetensors`` included). A folder is written atomically as a whole, and read back
only when every checksum and count agrees.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedkit.errors import ConfigError
from embedkit.io.atomic import atomic_dir
from embedkit.provenance import sha256_file
from embedkit.retrieval.faiss_ops import METRICS, faiss

__all__ = ["FORMAT", "INDEX_FILE", "META_FILE", "TEXTS_FILE", "StoredIndex", "read_index_folder",
           "write_index_folder"]

FORMAT = 1
INDEX_FILE = "index.faiss"
TEXTS_FILE = "texts.jsonl"
META_FILE = "index.json"
_REBUILD = "rebuild the index"


@dataclass
class StoredIndex:
    """What :func:`read_index_folder` found: the FAISS index, texts, ids and ``index.json``."""

    index: faiss.IndexPreTransform
    texts: list[str]
    user_ids: list[str | None]
    meta: dict[str, Any]
    extra_files: list[str]


def plain_name(name: str) -> bool:
    """True for a bare file name (no folder part, not . or ..)."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name


def write_index_folder(
    directory: str | os.PathLike,
    index: Any,
    texts: list[str],
    user_ids: list[str | None],
    meta: dict[str, Any],
    extra_files: Mapping[str, bytes | str | os.PathLike] | None = None,
) -> Path:
    """Write the folder atomically; ``meta`` gets the ``files`` checksums and becomes index.json.

    ``extra_files`` maps plain file names to their bytes (or a file to copy).
    """
    directory = Path(directory)
    extra = dict(extra_files or {})
    for name in extra:
        if name in (INDEX_FILE, TEXTS_FILE, META_FILE) or not plain_name(name):
            raise ConfigError(f"cannot save an extra file named {name!r} in an index folder")
    with atomic_dir(directory) as tmp:
        for name, content in extra.items():
            if isinstance(content, bytes):
                (tmp / name).write_bytes(content)
            else:
                shutil.copyfile(content, tmp / name)
        faiss.write_index(index, str(tmp / INDEX_FILE))
        with open(tmp / TEXTS_FILE, "w", encoding="utf-8") as fh:
            for i, (t, u) in enumerate(zip(texts, user_ids, strict=True)):
                row: dict[str, Any] = {"id": i, "text": t}
                if u is not None:
                    row["user_id"] = u
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        meta = {**meta, "files": {
            name: sha256_file(tmp / name) for name in (INDEX_FILE, TEXTS_FILE, *extra)}}
        with open(tmp / META_FILE, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(meta, ensure_ascii=False, indent=2) + "\n")
    return directory


def _read_meta(directory: Path) -> dict[str, Any]:
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        raise ConfigError(f"{meta_path}: missing; is {directory} an index folder? {_REBUILD}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{meta_path}: unreadable ({exc}); {_REBUILD}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise ConfigError(
            f"{meta_path}: unknown index format {found!r} (expected {FORMAT}); {_REBUILD}")
    if meta.get("metric") not in METRICS:
        raise ConfigError(f"{meta_path}: unknown metric {meta.get('metric')!r}; {_REBUILD}")
    return meta


def _check_files(directory: Path, meta: dict[str, Any]) -> list[str]:
    """Every recorded file is there and unchanged; returns the extra files' names."""
    meta_path = directory / META_FILE
    files = meta.get("files") or {}
    if not isinstance(files, dict) or not all(plain_name(str(n)) for n in files):
        raise ConfigError(f"{meta_path}: malformed 'files' entry; {_REBUILD}")
    extra_names = [n for n in files if n not in (INDEX_FILE, TEXTS_FILE)]
    for name in (INDEX_FILE, TEXTS_FILE, *extra_names):
        path = directory / name
        if name not in files:
            raise ConfigError(f"{meta_path}: no checksum recorded for {name}; {_REBUILD}")
        if not path.is_file():
            raise ConfigError(f"{path}: missing; {_REBUILD}")
        if sha256_file(path) != files[name]:
            raise ConfigError(
                f"{path}: changed since the index was saved (sha256 differs from "
                f"{META_FILE}); {_REBUILD}"
            )
    return extra_names


def _read_faiss(path: Path) -> faiss.IndexPreTransform:
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as exc:
        raise ConfigError(f"{path}: FAISS cannot read it; {_REBUILD}") from exc
    if not isinstance(index, faiss.IndexPreTransform):
        raise ConfigError(f"{path}: not an embedkit index; {_REBUILD}")
    return index


def _read_texts(path: Path) -> tuple[list[str], list[str | None]]:
    texts: list[str] = []
    user_ids: list[str | None] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            try:
                row = json.loads(line)
                ok = isinstance(row, dict) and row.get("id") == len(texts)
                ok = ok and isinstance(row.get("text"), str)
            except ValueError:
                ok = False
            if not ok:
                raise ConfigError(
                    f'{path}:{lineno}: expected {{"id": {len(texts)}, "text": ...}}; '
                    f"{_REBUILD}"
                )
            texts.append(row["text"])
            u = row.get("user_id")
            user_ids.append(None if u is None else str(u))
    return texts, user_ids


def read_index_folder(directory: str | os.PathLike) -> StoredIndex:
    """Read a folder written by :func:`write_index_folder`, checking checksums and counts.

    Any disagreement (missing or changed file, counts that differ) raises
    :class:`ConfigError` naming the file.
    """
    directory = Path(directory)
    meta = _read_meta(directory)
    extra_names = _check_files(directory, meta)
    index = _read_faiss(directory / INDEX_FILE)
    texts, user_ids = _read_texts(directory / TEXTS_FILE)
    ntotal = meta.get("ntotal")
    if index.ntotal != ntotal or len(texts) != ntotal:
        raise ConfigError(
            f"{directory}: {META_FILE} says ntotal={ntotal} but {INDEX_FILE} holds "
            f"{index.ntotal} vectors and {TEXTS_FILE} {len(texts)} texts; {_REBUILD}"
        )
    if index.d != meta.get("dim_in"):
        raise ConfigError(
            f"{directory / INDEX_FILE}: takes {index.d}-d vectors but {META_FILE} says "
            f"dim_in={meta.get('dim_in')}; {_REBUILD}"
        )
    return StoredIndex(index, texts, user_ids, meta, extra_names)
