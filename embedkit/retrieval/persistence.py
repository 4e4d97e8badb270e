"""The files of a saved :class:`~embedkit.retrieval.index.EmbeddingIndex`.

A folder holds ``index.faiss`` (the FAISS index, pre-transforms included), ``texts.jsonl``
(``{"id", "text"(, "user_id")}`` per line, ``id`` = position) and ``index.json`` (format,
factory, metric, dimensions, counts, recipe, versions and the sha256 of every file, extra files
such as ``post.safetensors`` included, and ``values_sha256``: the sha256 of each of its own values,
one per recipe key, so that a hand edit of ``recipe.pooling`` or ``recipe.max_length`` is
refused instead of silently changing how queries are encoded). A folder is written atomically as
a whole under its lock (:func:`~embedkit.io.atomic.atomic_dir`), and read back only when every
checksum, type and count agrees; a folder a killed write left missing is put back first
(:func:`~embedkit.io.atomic.recover_dir`). Inverted lists on disk (:data:`IVFDATA_FILE`) are
mapped from the folder being read, whatever path FAISS stored. The same seal
(:func:`seal_values`, :func:`check_values`) guards an encode folder's ``manifest.json``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictBool, StrictFloat, StrictInt, StrictStr

from embedkit.aliases import StrPath
from embedkit.errors import ConfigError, DataError, EmbedkitError
from embedkit.io.atomic import LOCK_TIMEOUT, atomic_dir, recover_dir
from embedkit.io.seal import check_values, seal_values
from embedkit.provenance import sha256_file
from embedkit.retrieval.faiss_ops import METRICS, faiss, read_faiss_index
from embedkit.store.encode_folder import plain_name
from embedkit.store.recipe import Count, Positive, validate_json

__all__ = ["FORMAT", "IVFDATA_FILE", "META_FILE",
           "plain_name", "read_index_folder", "write_index_folder"]

FORMAT = 1
_INDEX_FILE = "index.faiss"
_TEXTS_FILE = "texts.jsonl"
META_FILE = "index.json"
#: the on-disk inverted lists of an index folder built with ``on_disk`` (FAISS's
#: ``OnDiskInvertedLists``): always read from the folder being loaded, wherever it was built
IVFDATA_FILE = "lists.ivfdata"
#: the key of index.json that holds the sha256 of each of its values
_REBUILD = "rebuild the index"
#: seconds a reader waits for a writer when the folder is missing in the middle of a swap
_READ_WAIT = 10.0


@dataclass
class _StoredIndex:
    """What :func:`read_index_folder` found: the FAISS index, texts, ids and ``index.json``."""

    index: faiss.IndexPreTransform
    texts: list[str]
    user_ids: list[str | None]
    meta: dict[str, Any]
    extra_files: list[str]


def write_index_folder(
    directory: StrPath,
    index: Any,
    texts: list[str],
    user_ids: list[str | None],
    meta: dict[str, Any],
    extra_files: Mapping[str, bytes | StrPath] | None = None,
    lock_timeout: float | None = LOCK_TIMEOUT,
) -> Path:
    """Write the folder atomically under its lock (waiting up to ``lock_timeout`` seconds for
    another writer); ``meta`` gets the ``files`` checksums and the checksums of its own values
    (:func:`value_checksums`) and becomes index.json.

    ``extra_files`` maps plain file names to their bytes (or a file to copy).
    """
    directory = Path(directory)
    extra = dict(extra_files or {})
    for name in extra:
        if name in (_INDEX_FILE, _TEXTS_FILE, META_FILE) or not plain_name(name):
            raise ConfigError(f"cannot save an extra file named {name!r} in an index folder")
    with atomic_dir(directory, lock_timeout=lock_timeout) as tmp:
        for name, content in extra.items():
            if isinstance(content, bytes):
                (tmp / name).write_bytes(content)
            else:
                shutil.copyfile(content, tmp / name)
        # hook (quantised indexes, retrieval/quantized.py): an index that writes itself
        if hasattr(index, "write_index"):
            index.write_index(tmp / _INDEX_FILE)
        else:
            faiss.write_index(index, str(tmp / _INDEX_FILE))
        with open(tmp / _TEXTS_FILE, "w", encoding="utf-8") as fh:
            for i, (t, u) in enumerate(zip(texts, user_ids, strict=True)):
                row: dict[str, Any] = {"id": i, "text": t}
                if u is not None:
                    row["user_id"] = u
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        meta = seal_values({**meta, "files": {
            name: sha256_file(tmp / name) for name in (_INDEX_FILE, _TEXTS_FILE, *extra)}})
        with open(tmp / META_FILE, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(meta, ensure_ascii=False, indent=2) + "\n")
    return directory


class _Meta(BaseModel):
    """The types of index.json's values (keys of other versions are let through)."""

    model_config = ConfigDict(extra="allow")
    format: StrictInt
    factory: StrictStr
    metric: StrictStr
    dim_in: Positive
    dim: Positive | None = None
    ntotal: Count
    recipe: dict[str, Any] | None = None
    files: dict[str, StrictStr] | None = None
    seed: StrictInt | None = None
    train_size: Count | None = None
    transform: StrictBool | None = None
    build_seconds: StrictFloat | None = None
    created: StrictStr | None = None
    versions: dict[str, Any] | None = None
    values_sha256: dict[str, StrictStr] | None = None


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
    validate_json(_Meta, meta, str(meta_path))
    if meta.get("metric") not in METRICS:
        raise ConfigError(f"{meta_path}: unknown metric {meta.get('metric')!r}; {_REBUILD}")
    check_values(meta_path, meta, saved="the index was saved", redo=_REBUILD)
    return meta


def _check_files(directory: Path, meta: dict[str, Any]) -> list[str]:
    """Every recorded file is there and unchanged; returns the extra files' names."""
    meta_path = directory / META_FILE
    files = meta.get("files") or {}
    if not isinstance(files, dict) or not all(plain_name(str(n)) for n in files):
        raise ConfigError(f"{meta_path}: malformed 'files' entry; {_REBUILD}")
    extra_names = [n for n in files if n not in (_INDEX_FILE, _TEXTS_FILE)]
    for name in (_INDEX_FILE, _TEXTS_FILE, *extra_names):
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


def _read_faiss(path: Path, lists_file: Path | None = None) -> faiss.IndexPreTransform:
    """The FAISS index at ``path``; inverted lists on disk are mapped from ``lists_file`` (the
    folder's own :data:`IVFDATA_FILE`, whose checksum was checked), never from the path FAISS
    stored when the folder was built (:func:`~embedkit.retrieval.faiss_ops.read_faiss_index`)."""
    try:
        index = read_faiss_index(path, lists_file)
    except ConfigError as exc:
        raise ConfigError(f"{exc}; {_REBUILD}") from exc
    if not isinstance(index, faiss.IndexPreTransform):
        raise ConfigError(f"{path}: not an embedkit index; {_REBUILD}")
    return index


def _read_texts(path: Path) -> tuple[list[str], list[str | None]]:
    texts: list[str] = []
    user_ids: list[str | None] = []
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"invalid UTF-8 at byte {exc.start} of the line; {_REBUILD}",
                                path=str(path), line=lineno) from None
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


def _read(directory: Path) -> _StoredIndex:
    meta = _read_meta(directory)
    extra_names = _check_files(directory, meta)
    lists = directory / IVFDATA_FILE if IVFDATA_FILE in extra_names else None
    index: Any = _read_faiss(directory / _INDEX_FILE, lists)
    if meta.get("quantized"):  # hook (quantised indexes): the binary index and store beside it
        from embedkit.retrieval.quantized import read_quantized

        index = read_quantized(directory, meta, index)
    texts, user_ids = _read_texts(directory / _TEXTS_FILE)
    ntotal = meta.get("ntotal")
    if index.ntotal != ntotal or len(texts) != ntotal:
        raise ConfigError(
            f"{directory}: {META_FILE} says ntotal={ntotal} but {_INDEX_FILE} holds "
            f"{index.ntotal} vectors and {_TEXTS_FILE} {len(texts)} texts; {_REBUILD}"
        )
    if index.d != meta.get("dim_in"):
        raise ConfigError(
            f"{directory / _INDEX_FILE}: takes {index.d}-d vectors but {META_FILE} says "
            f"dim_in={meta.get('dim_in')}; {_REBUILD}"
        )
    return _StoredIndex(index, texts, user_ids, meta, extra_names)


def _folder_id(directory: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(directory)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _consistent(read: Callable[[Path], _StoredIndex], directory: Path) -> _StoredIndex:
    """``read(directory)``, again when the folder was replaced while it was read (a writer's
    swap between two of its files makes them disagree: that is not damage)."""
    for attempt in range(3):
        before = _folder_id(directory)
        try:
            return read(directory)
        except (EmbedkitError, OSError) as exc:
            if attempt < 2 and before is not None and _folder_id(directory) != before:
                continue
            if isinstance(exc, EmbedkitError):
                raise
            raise ConfigError(f"{directory}: cannot read it ({exc}); {_REBUILD}") from exc
    raise AssertionError("unreachable")  # pragma: no cover


def read_index_folder(directory: StrPath) -> _StoredIndex:
    """Read a folder written by :func:`write_index_folder`, checking checksums, types and counts.

    Any disagreement (missing or changed file, index.json edited by hand or with values of the
    wrong type, counts that differ) raises :class:`ConfigError` naming the file (and the key or
    line). What an interrupted write left beside the folder is repaired first
    (:func:`~embedkit.io.atomic.recover_dir`: a folder missing between the two renames of a
    replacement is put back). index.json without value checksums (older folders) loads with
    a warning.
    """
    directory = Path(directory)
    recover_dir(directory, timeout=0.0 if directory.exists() else _READ_WAIT)
    return _consistent(_read, directory)
