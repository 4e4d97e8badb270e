"""Corpus inputs for encoding at scale: text (one sentence a line), JSON lines, CSV/TSV or
Parquet, one file or a folder of them, read as a stream of ``(ids, texts)`` batches in a stable
order (files sorted by name, rows in file order), with every input file's sha256.

Blank texts are skipped (as :mod:`embedkit.data.corpus` does). Without an ``id_column`` a row's
id is its position among the kept rows (``"0"``, ``"1"``, ...), so ids are stable for the same
inputs. Parquet needs pyarrow (``pip install 'embedkit[parquet]'``).

>>> import os, tempfile
>>> d = tempfile.mkdtemp()
>>> _ = open(os.path.join(d, "a.txt"), "w", encoding="utf-8").write("你好\\n\\n再见\\n")
>>> _ = open(os.path.join(d, "b.jsonl"), "w").write('{"text": "x", "k": 7}\\n')
>>> src = open_corpus(d)
>>> [f.format for f in src.files], src.count()
(['text', 'jsonl'], 3)
>>> [b for b in src.batches(2)]
[(['0', '1'], ['你好', '再见']), (['2'], ['x'])]
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedkit.aliases import StrPath
from embedkit.errors import ConfigError, DataError, MissingFileError
from embedkit.provenance import sha256_file

__all__ = ["FORMATS", "CorpusSource", "open_corpus", "require_pyarrow"]

#: file suffix -> format
FORMATS = {".txt": "text", ".text": "text", ".jsonl": "jsonl", ".json": "jsonl",
           ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}

Batch = tuple[list[str], list[str]]


def require_pyarrow(param: str = "corpus") -> Any:
    """The pyarrow module, or a :class:`ConfigError` saying how to install it."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401  (the submodule is what readers need)
    except ImportError:
        raise ConfigError("Parquet needs pyarrow; install it with "
                          "`pip install 'embedkit[parquet]'`", param=param) from None
    return pyarrow


@dataclass(frozen=True)
class _CorpusFile:
    """One input file: its path, format, size and sha256."""

    path: Path
    format: str
    sha256: str
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "format": self.format, "sha256": self.sha256,
                "bytes": self.bytes}


def _format_of(path: Path) -> str | None:
    return FORMATS.get(path.suffix.lower())


def _list_files(path: Path) -> list[Path]:
    if path.is_file():
        if _format_of(path) is None:
            raise ConfigError(f"{path}: unknown corpus format {path.suffix!r}; use one of "
                              f"{', '.join(sorted(FORMATS))}", param="corpus")
        return [path]
    if not path.is_dir():
        raise MissingFileError("corpus file or folder not found", path=str(path),
                               param="corpus")
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                   and _format_of(p) is not None)
    if not files:
        raise ConfigError(f"{path}: no corpus files ({', '.join(sorted(FORMATS))}) in the "
                          "folder", param="corpus")
    return files


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of a UTF-8 file, streamed (BOM and ``\\r`` dropped)."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"invalid UTF-8 at byte {e.start} of the line; re-save the "
                                "file as UTF-8", path=str(path), line=lineno) from None
            yield lineno, text.rstrip("\n").removesuffix("\r")


def _cell(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _column(row: dict[str, Any], name: str, where: str, line: int | None) -> Any:
    if name not in row:
        raise DataError(f"no column {name!r} (columns: {', '.join(map(str, row))})",
                        path=where, line=line, param="text_column")
    return row[name]


@dataclass(frozen=True)
class CorpusSource:
    """The input files and the columns to read (see the module docstring)."""

    files: tuple[_CorpusFile, ...]
    text_column: str = "text"
    id_column: str | None = None

    def describe(self) -> dict[str, Any]:
        """JSON-ready: the files with their sha256 and the columns."""
        return {"files": [f.to_dict() for f in self.files], "text_column": self.text_column,
                "id_column": self.id_column}

    def rows(self) -> Iterator[tuple[str | None, str]]:
        """``(id or None, text)`` of every non-blank row, in order."""
        for f in self.files:
            yield from self._file_rows(f)

    def _file_rows(self, f: _CorpusFile) -> Iterator[tuple[str | None, str]]:
        reader = {"text": self._text_rows, "jsonl": self._jsonl_rows, "csv": self._csv_rows,
                  "tsv": self._csv_rows, "parquet": self._parquet_rows}[f.format]
        for uid, text in reader(f):
            if text is not None and text.strip():
                yield uid, text

    def _text_rows(self, f: _CorpusFile) -> Iterator[tuple[str | None, str | None]]:
        if self.id_column is not None:
            raise ConfigError(f"{f.path}: a text file has no id column", param="id_column")
        for _, text in _lines(f.path):
            yield None, text

    def _pick(self, row: Any, where: str, line: int | None) -> tuple[str | None, str | None]:
        if not isinstance(row, dict):
            raise DataError("expected a JSON object", path=where, line=line, param="corpus")
        text = _cell(_column(row, self.text_column, where, line))
        uid = None
        if self.id_column is not None:
            try:
                uid = _cell(_column(row, self.id_column, where, line))
            except DataError as exc:
                raise DataError(exc.problem, path=where, line=line, param="id_column") from None
        return uid, text

    def _jsonl_rows(self, f: _CorpusFile) -> Iterator[tuple[str | None, str | None]]:
        for lineno, line in _lines(f.path):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise DataError(f"invalid JSON ({exc})", path=str(f.path),
                                line=lineno) from None
            yield self._pick(row, str(f.path), lineno)

    def _csv_rows(self, f: _CorpusFile) -> Iterator[tuple[str | None, str | None]]:
        delimiter = "\t" if f.format == "tsv" else ","
        with open(f.path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh, delimiter=delimiter)
            for row in reader:
                yield self._pick(row, str(f.path), reader.line_num)

    def _parquet_rows(self, f: _CorpusFile) -> Iterator[tuple[str | None, str | None]]:
        require_pyarrow()
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(f.path)
        names = pf.schema_arrow.names
        wanted = [c for c in (self.text_column, self.id_column) if c is not None]
        for c in wanted:
            if c not in names:
                raise DataError(f"no column {c!r} (columns: {', '.join(names)})",
                                path=str(f.path), param="text_column" if c == self.text_column
                                else "id_column")
        for batch in pf.iter_batches(batch_size=8192, columns=wanted):
            texts = batch.column(self.text_column).to_pylist()
            ids = (batch.column(self.id_column).to_pylist() if self.id_column is not None
                   else [None] * len(texts))
            for uid, text in zip(ids, texts, strict=True):
                yield _cell(uid), _cell(text)

    def batches(self, size: int) -> Iterator[Batch]:
        """``(ids, texts)`` lists of ``size`` rows (the last may be shorter), in order."""
        if int(size) < 1:
            raise ConfigError(f"batch size must be >= 1, got {size}", param="shard_size")
        ids: list[str] = []
        texts: list[str] = []
        for n, (uid, text) in enumerate(self.rows()):
            ids.append(uid if uid is not None else str(n))
            texts.append(text)
            if len(texts) == size:
                yield ids, texts
                ids, texts = [], []
        if texts:
            yield ids, texts

    def count(self) -> int:
        """How many rows :meth:`rows` yields (reads the inputs once)."""
        return sum(1 for _ in self.rows())


def open_corpus(path: StrPath, *, text_column: str | None = None,
                id_column: str | None = None) -> CorpusSource:
    """The corpus at ``path`` (a file, or a folder whose known files are read in name order).

    ``text_column`` (default ``text``) and ``id_column`` name the columns of JSON lines,
    CSV/TSV and Parquet files; text files are one text a line. Checksums are taken now.
    """
    files = []
    for p in _list_files(Path(path)):
        fmt = _format_of(p)
        assert fmt is not None
        if fmt == "parquet":
            require_pyarrow()
        files.append(_CorpusFile(p.resolve(), fmt, sha256_file(p), p.stat().st_size))
    return CorpusSource(tuple(files), text_column or "text", id_column)
