"""Reading UTF-8 text files line by line, with errors that name the file and the line.

One reader for every text input: pair files, corpora, fit-on sentence files, JSON lines
(:func:`json_objects`).

>>> import tempfile, os
>>> p = os.path.join(tempfile.mkdtemp(), "s.txt")
>>> _ = open(p, "wb").write("\\ufeff你好\\r\\n\\n再见\\n".encode("utf-8"))
>>> read_lines(p), read_sentences(p)
(['你好', '', '再见'], ['你好', '再见'])
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from embedkit.aliases import StrPath
from embedkit.errors import DataError, MissingFileError


def _raise(line: int, problem: str, path: str) -> None:
    raise DataError(problem, path=path, line=line)


def decoded_lines(data: bytes, path: str, encoding: str = "utf-8",
                  on_error: Callable[[int, str], None] | None = None) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of each line: BOM dropped, ``\\n`` or ``\\r\\n`` ends removed.

    A line that does not decode is passed to ``on_error(line, problem)`` (default: raise
    :class:`DataError`) and skipped.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for i, raw in enumerate(lines, start=1):
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as e:
            problem = (f"invalid {encoding.upper()} at byte {e.start} of the line; "
                       "re-save the file as UTF-8")
            (on_error or (lambda n, p: _raise(n, p, path)))(i, problem)
            continue
        yield i, text[:-1] if text.endswith("\r") else text


def json_objects(lines: Iterable[tuple[int, str]], path: str,
                 on_error: Callable[[int, str], None] | None = None,
                 what: str = "a JSON object") -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` of each non-blank line of ``lines`` (as :func:`decoded_lines`
    yields them) that holds a JSON object (``what``: how the error names one); a line that does
    not is passed to ``on_error(line, problem)`` (default: raise :class:`DataError`) and skipped.

    >>> list(json_objects([(1, '{"a": 1}'), (2, " "), (3, "[1]")], "f", lambda n, p: print(n, p)))
    3 each line must be a JSON object
    [(1, {'a': 1})]
    """
    fail = on_error or (lambda n, p: _raise(n, p, path))
    for i, text in lines:
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            problem: str | None = f"not valid JSON ({e.msg} at column {e.colno})"
        else:
            problem = None if isinstance(obj, dict) else f"each line must be {what}"
        if problem is not None:
            fail(i, problem)
            continue
        yield i, obj


def read_bytes(path: StrPath, what: str = "") -> bytes:
    """A file's bytes; a missing or unreadable file is a :class:`MissingFileError` naming it."""
    label = f"{what} file" if what else "file"
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise MissingFileError(f"{label} not found", path=str(path)) from None
    except OSError as e:
        raise MissingFileError(f"cannot read the {label} ({e.strerror})",
                               path=str(path)) from None


def read_lines(path: StrPath, what: str = "") -> list[str]:
    """Every line of a UTF-8 text file (see :func:`decoded_lines`)."""
    return [t for _, t in decoded_lines(read_bytes(path, what), str(path))]


def read_sentences(path: StrPath, what: str = "") -> list[str]:
    """The non-blank lines of a UTF-8 file, as they are (one sentence a line)."""
    return [t for t in read_lines(path, what) if t.strip()]
