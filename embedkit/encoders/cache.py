"""Content-addressed embedding cache on disk.

One SQLite file per *namespace* (model identity, pooling, max length, dtype, casing), one row
per text keyed by the sha256 of the text. SQLite is used rather than one file per vector
because the STS sets have ~10^5 sentences: a file each would be slow to write and list, while a
transaction gives the same all-or-nothing write (a batch is committed whole or not at all).
Each row carries a CRC-32 of its bytes; a row whose length or CRC is wrong is deleted and
recomputed, never trusted; a file SQLite cannot open is moved aside and rebuilt.

>>> import tempfile, numpy as np
>>> c = EmbeddingCache(tempfile.mkdtemp())
>>> ns = c.namespace({"model": "m", "pooling": "cls"})
>>> c.put(ns, ["你好"], np.ones((1, 3), np.float32))
>>> c.get(ns, ["你好", "再见"])[0].tolist(), c.get(ns, ["你好", "再见"])[1]
([[1.0, 1.0, 1.0]], [1])
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import time
import warnings
import zlib
from pathlib import Path

import numpy as np

from embedkit.io.atomic import atomic_write_json

FORMAT_VERSION = 1
_CHUNK = 500  # keys per SQL statement (well under SQLite's variable limit)


def default_cache_dir() -> Path:
    """``$EMBEDKIT_CACHE``, else the user cache dir (``~/.cache/embedkit`` on Linux)."""
    env = os.environ.get("EMBEDKIT_CACHE")
    if env:
        return Path(env).expanduser()
    try:
        from platformdirs import user_cache_dir

        return Path(user_cache_dir("embedkit"))
    except ImportError:  # platformdirs is a dependency; this only guards odd installs
        return Path.home() / ".cache" / "embedkit"


def text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


class EmbeddingCache:
    """Vectors by (namespace, text). ``get`` returns the found rows and the missing indices."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()
        self._conns: dict[str, sqlite3.Connection] = {}
        self.hits = 0
        self.misses = 0
        self.corrupt = 0

    # -- namespaces -------------------------------------------------------------------------
    def namespace(self, settings: dict) -> str:
        """A stable id for everything besides the text that determines a vector."""
        blob = json.dumps({"format": FORMAT_VERSION, **settings}, sort_keys=True)
        ns = hashlib.sha256(blob.encode()).hexdigest()[:32]
        meta = self._dir(ns) / "meta.json"
        if not meta.exists():
            atomic_write_json(meta, {"format": FORMAT_VERSION, "settings": settings,
                                     "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
        return ns

    def _dir(self, ns: str) -> Path:
        return self.root / "embeddings" / ns

    def _connect(self, ns: str) -> sqlite3.Connection:
        if ns in self._conns:
            return self._conns[ns]
        path = self._dir(ns) / "vectors.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = None
        for attempt in range(2):
            try:
                conn = sqlite3.connect(path, timeout=60)
                # 64 KiB pages hold ~30 vectors of 2 KiB each; with small pages (or a WITHOUT
                # ROWID table) every vector spills into overflow pages and the file doubles.
                # A rollback journal (not WAL) keeps commits atomic without a write-ahead file
                # that grows to the size of the largest batch and stays.
                conn.execute("PRAGMA page_size=65536")
                conn.execute("PRAGMA journal_mode=DELETE")
                conn.execute("CREATE TABLE IF NOT EXISTS vec (key BLOB PRIMARY KEY, dim INTEGER,"
                             " crc INTEGER, data BLOB)")
                conn.execute("SELECT count(*) FROM vec").fetchone()
                break
            except sqlite3.DatabaseError as e:
                if conn is not None:
                    conn.close()
                if attempt:
                    raise
                aside = path.with_name(f"vectors.corrupt-{int(time.time())}.sqlite")
                warnings.warn(f"embedding cache {path} is unreadable ({e}); moved to {aside.name}"
                              " and starting afresh", stacklevel=3)
                os.replace(path, aside)
                for suffix in ("-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(str(path) + suffix)
        assert conn is not None  # the loop either connected or raised
        self._conns[ns] = conn
        return conn

    # -- reads and writes -------------------------------------------------------------------
    def get(self, ns: str, texts: list[str]) -> tuple[np.ndarray | None, list[int]]:
        """Vectors for ``texts`` (rows for the found ones, in order) and the missing indices.

        Returns ``(found, missing)`` where ``found`` is a (len(texts) - len(missing), d) array
        aligned with the texts that are not missing, or None if nothing was found.
        """
        conn = self._connect(ns)
        keys = [text_key(t) for t in texts]
        rows: dict[bytes, np.ndarray] = {}
        bad: list[bytes] = []
        for i in range(0, len(keys), _CHUNK):
            chunk = keys[i:i + _CHUNK]
            q = f"SELECT key, dim, crc, data FROM vec WHERE key IN ({','.join('?' * len(chunk))})"
            for key, dim, crc, data in conn.execute(q, chunk):
                if data is None or len(data) != 4 * dim or zlib.crc32(data) != crc:
                    bad.append(key)
                    continue
                rows[key] = np.frombuffer(data, dtype=np.float32)
        if bad:
            self.corrupt += len(bad)
            with conn:
                conn.executemany("DELETE FROM vec WHERE key = ?", [(k,) for k in bad])
        missing = [i for i, k in enumerate(keys) if k not in rows]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        found = [rows[k] for k in keys if k in rows]
        return (np.stack(found) if found else None), missing

    def put(self, ns: str, texts: list[str], vectors: np.ndarray) -> None:
        """Store vectors (float32) for texts, in one transaction."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        conn = self._connect(ns)
        rows = []
        for t, v in zip(texts, vectors, strict=True):
            data = v.tobytes()
            rows.append((text_key(t), v.shape[0], zlib.crc32(data), data))
        with conn:  # commits the batch atomically, or rolls it back
            conn.executemany("INSERT OR REPLACE INTO vec VALUES (?, ?, ?, ?)", rows)

    # -- maintenance ------------------------------------------------------------------------
    def namespaces(self) -> list[dict]:
        """What the cache holds: one dict per namespace with its settings, rows and bytes."""
        out: list[dict] = []
        base = self.root / "embeddings"
        if not base.is_dir():
            return out
        for d in sorted(base.iterdir()):
            meta = d / "meta.json"
            try:
                settings = json.loads(meta.read_text("utf-8")).get("settings", {})
            except (OSError, ValueError):
                settings = {}
            size = sum(f.stat().st_size for f in d.iterdir() if f.is_file())
            rows = 0
            db = d / "vectors.sqlite"
            if db.exists():
                try:
                    with contextlib.closing(sqlite3.connect(db)) as c:
                        rows = c.execute("SELECT count(*) FROM vec").fetchone()[0]
                except sqlite3.DatabaseError:
                    rows = -1
            out.append({"namespace": d.name, "settings": settings, "rows": rows, "bytes": size})
        return out

    def clear(self, model: str | None = None) -> int:
        """Delete every namespace (or those whose model setting contains ``model``); returns
        how many were removed."""
        import shutil

        self.close()
        n = 0
        for ns in self.namespaces():
            if model is None or model in str(ns["settings"].get("model", "")) \
                    or model in str(ns["settings"].get("model_identity", "")):
                shutil.rmtree(self.root / "embeddings" / ns["namespace"], ignore_errors=True)
                n += 1
        return n

    def close(self) -> None:
        for c in self._conns.values():
            c.close()
        self._conns.clear()

    def __del__(self):  # pragma: no cover - best effort
        with contextlib.suppress(Exception):
            self.close()
