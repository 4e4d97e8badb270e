"""What is wrong with an embedding cache's entries on disk: SQLite's verdicts (damage or not),
the checks of an open namespace file, and entries that are not what they must be (a folder where
a file belongs, an unreadable ``meta.json``), with the names their copies are moved aside to.

>>> import tempfile
>>> d = Path(tempfile.mkdtemp())
>>> (d / "vectors.sqlite").mkdir()
>>> not_a_file(d / "vectors.sqlite"), not_a_file(d / "absent")
('a folder, not a file', None)
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time
from pathlib import Path

COLUMNS = ["key", "dim", "crc", "data"]
# SQLite's primary result codes (https://sqlite.org/rescode.html)
_CORRUPT_CODES = {11, 26}                  # SQLITE_CORRUPT, SQLITE_NOTADB


def file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def sqlite_code(e: sqlite3.Error) -> int | None:
    code = getattr(e, "sqlite_errorcode", None)  # Python >= 3.11
    return code & 0xFF if isinstance(code, int) else None


def is_corruption(e: sqlite3.Error) -> bool:
    """Whether SQLite says the file is damaged (not busy, full, read-only ...)."""
    code = sqlite_code(e)
    if code is not None:
        return code in _CORRUPT_CODES
    text = str(e)
    return "malformed" in text or "not a database" in text


def first_line(text: object) -> str:
    return " ".join(str(text).split("\n")[:2]).strip()


def reason(e: OSError | sqlite3.Error) -> str:
    """An error's one-line cause: an OSError's strerror, else its first line."""
    return e.strerror if isinstance(e, OSError) and e.strerror else first_line(e)


def not_a_file(path: Path) -> str | None:
    """What is wrong with a path that must be a regular file or absent (None: nothing)."""
    if not os.path.lexists(path) or path.is_file():
        return None
    return "a folder, not a file" if path.is_dir() else "not a regular file"


def meta_problem(meta: Path) -> str | None:
    """What is wrong with a namespace's ``meta.json`` (None: readable, or absent)."""
    if not os.path.lexists(meta):
        return None
    try:
        data = json.loads(meta.read_text("utf-8"))
    except (OSError, ValueError) as e:
        return f"unreadable: {first_line(e)}"
    if not isinstance(data, dict) or not isinstance(data.get("settings"), dict):
        return "not a cache meta.json"
    return None


def aside_name(path: Path, prefix: str = "") -> Path:
    stem, suffix = path.stem, path.suffix
    return path.with_name(f"{prefix}{stem}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-"
                          f"{os.getpid()}-{secrets.token_hex(2)}{suffix}")


def check_file(conn: sqlite3.Connection) -> str | None:
    """What is wrong with an open namespace file, or None (the table's columns, then SQLite's
    own structural check, which reads every page once)."""
    cols = [r[1] for r in conn.execute("PRAGMA table_info(vec)")]
    if cols != COLUMNS:
        return f"table vec has columns {cols}, not {COLUMNS}"
    result = conn.execute("PRAGMA quick_check(1)").fetchone()
    if result is None or result[0] != "ok":
        return "quick_check: " + first_line(result[0] if result else "no answer")
    return None
