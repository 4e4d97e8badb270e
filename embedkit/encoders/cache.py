"""Content-addressed embedding cache on disk.

One SQLite file per *namespace* (model identity, pooling, max length, dtype, casing), one row
per text keyed by the sha256 of the text. SQLite is used rather than one file per vector
because the STS sets have ~10^5 sentences: a file each would be slow to write and list, while a
transaction gives the same all-or-nothing write (a batch is committed whole or not at all).

Nothing read from the cache is trusted:

- each row carries a CRC-32 of its bytes; a row whose CRC or length is wrong, whose width is not
  the model's, or whose values are not finite is deleted and recomputed (with a warning);
- a file is checked when it is opened (``PRAGMA quick_check`` and the table's columns), and a
  file that is damaged, or that SQLite reports damaged while reading or writing, is moved aside
  (``vectors.corrupt-*.sqlite``) and rebuilt: the run goes on and recomputes;
- so is any other damaged entry of a namespace, with a warning: a ``vectors.sqlite`` (or its
  journal) that is a folder or no regular file, a ``meta.json`` that cannot be read, a namespace
  that is a file instead of a folder.

A namespace is named by what makes the vectors (the model's *identity*, pooling, max length,
dtype, casing), never by how the model's folder was spelt: the ``model`` name is kept in
``meta.json`` for ``cache info`` but left out of the key when ``model_identity`` is given.

Processes share a cache through one lock (``embeddings.lock`` in the cache folder, a
:class:`filelock.FileLock`): every read, write and maintenance step (``clear``, moving a damaged
file aside) holds it, briefly. A cache folder that cannot be written (a read-only shared cache)
is used *read-only*: without the lock, its vectors are served and new ones are computed but not
stored, which is said once (a warning). A process whose namespace was cleared under it notices that the
file it had open is gone and recreates it, so ``embedkit cache clear`` during a bench costs the
bench its cached vectors, never its run.

>>> import tempfile, numpy as np
>>> c = EmbeddingCache(tempfile.mkdtemp())
>>> ns = c.namespace({"model": "m", "pooling": "cls"})
>>> c.put(ns, ["你好"], np.ones((1, 3), np.float32))
1
>>> c.get(ns, ["你好", "再见"])[0].tolist(), c.get(ns, ["你好", "再见"])[1]
([[1.0, 1.0, 1.0]], [1])
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import time
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock, Timeout

from embedkit.encoders.cache_files import aside_name as _aside_name
from embedkit.encoders.cache_files import check_file as _check_file
from embedkit.encoders.cache_files import file_id as _file_id
from embedkit.encoders.cache_files import first_line as _first_line
from embedkit.encoders.cache_files import is_corruption
from embedkit.encoders.cache_files import meta_problem as _meta_problem
from embedkit.encoders.cache_files import not_a_file as _not_a_file
from embedkit.encoders.cache_files import reason as _reason
from embedkit.encoders.cache_files import sqlite_code as _sqlite_code
from embedkit.errors import ConfigError, EmbedkitError
from embedkit.io.atomic import atomic_write_json

FORMAT_VERSION = 1
_CHUNK = 500  # keys per SQL statement (well under SQLite's variable limit)
LOCK_NAME = "embeddings.lock"
LOCK_TIMEOUT = 600.0  # seconds to wait for another process's cache write or maintenance
_HINT = "choose a writable folder (cache_dir) or turn the cache off (no_cache=True)"
_UNWRITABLE_CODES = {3, 8, 14, 23}         # SQLITE_PERM, _READONLY, _CANTOPEN, _AUTH
_READ_ONLY_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM}
#: keys of a namespace's settings that are shown, not hashed, when ``model_identity`` is given
#: (the model as the user spelt it: ``../models/x``, ``./models/x`` and ``/abs/models/x`` are one)
DISPLAY_ONLY = ("model",)


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

    def __init__(self, root: str | os.PathLike[str] | None = None, *,
                 lock_timeout: float = LOCK_TIMEOUT):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.lock_timeout = lock_timeout
        # namespace -> (connection, (st_dev, st_ino) of the file it opened)
        self._conns: dict[str, tuple[sqlite3.Connection, tuple[int, int] | None]] = {}
        self._settings: dict[str, dict[str, Any]] = {}
        self._lock: FileLock | None = None
        self._warned: set[str] = set()
        #: the folder turned out not writable: hits are served (without the lock), nothing stored
        self.read_only = False
        self.hits = 0
        self.misses = 0
        self.corrupt = 0

    # -- errors and warnings ----------------------------------------------------------------
    def _unwritable(self, e: OSError | sqlite3.Error, where: Path | None = None) -> ConfigError:
        return ConfigError(f"cannot write the embedding cache in {where or self.root} "
                           f"({_reason(e)}); {_HINT}", param="cache_dir")

    def _sqlite_error(self, e: sqlite3.Error, path: Path) -> EmbedkitError:
        """The one-line error for a SQLite failure that is not damage."""
        code = _sqlite_code(e)
        if code in _UNWRITABLE_CODES or "readonly" in str(e) or "unable to open" in str(e):
            return self._unwritable(e, path.parent)
        if code == 13 or "disk is full" in str(e):  # SQLITE_FULL
            return EmbedkitError(f"no space left for the embedding cache {path}; free some space,"
                                 f" {_HINT}", param="cache_dir")
        return EmbedkitError(f"embedding cache {path}: {_first_line(e)}; try again, or "
                             f"{_HINT}", param="cache_dir")

    def _becomes_read_only(self, e: OSError | sqlite3.Error) -> bool:
        """Whether ``e`` says the cache folder (which exists) cannot be written; if so the
        cache goes on read-only, which is warned once."""
        if isinstance(e, OSError):
            unwritable = e.errno in _READ_ONLY_ERRNOS
        else:
            code = _sqlite_code(e)
            unwritable = code in _UNWRITABLE_CODES or "readonly" in str(e)
        if not unwritable or not self.root.is_dir():
            return False
        if not self.read_only:
            self.read_only = True
            self.close()
            warnings.warn(f"the embedding cache {self.root} is read-only ({_reason(e)}): its "
                          "vectors are served, but new ones cannot be stored (they are "
                          "computed again next time; choose a writable cache folder to keep "
                          "them)", stacklevel=6)
        return True

    def _warn_once(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            warnings.warn(message, stacklevel=5)

    # -- the lock ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self, required: bool = True) -> Iterator[None]:
        """Hold the cache's lock (re-entrant in this thread). ``required=False``: go on without
        it where it cannot be taken (a read-only cache being listed)."""
        acquired = False
        try:
            if self._lock is None and not self.read_only:
                self.root.mkdir(parents=True, exist_ok=True)
                self._check_lock_file()
                self._lock = FileLock(self.root / LOCK_NAME, timeout=self.lock_timeout)
            if self._lock is not None and not self.read_only:
                self._lock.acquire()
                acquired = True
        except Timeout:
            raise EmbedkitError(
                f"the embedding cache {self.root} stayed locked by another embedkit process for"
                f" {self.lock_timeout:.0f} s; try again when it is done, or use another folder "
                "(cache_dir) or no_cache=True", param="cache_dir") from None
        except OSError as e:
            # a read-only cache serves its hits without the lock
            if required and not self._becomes_read_only(e):
                raise self._unwritable(e) from None
        try:
            yield
        finally:
            if acquired and self._lock is not None:
                self._lock.release()

    def _check_lock_file(self) -> None:
        """Move aside a lock path that is a folder (or no regular file): no lock can be taken
        on it, by any process, so nobody holds it."""
        path = self.root / LOCK_NAME
        problem = _not_a_file(path)
        if problem is not None:
            self._move_aside(path, problem, _aside_name(path))

    # -- namespaces -------------------------------------------------------------------------
    def namespace(self, settings: dict[str, Any]) -> str:
        """A stable id for everything besides the text that determines a vector: the settings
        but the :data:`DISPLAY_ONLY` ones when ``model_identity`` names the model."""
        keyed = {k: v for k, v in settings.items()
                 if "model_identity" not in settings or k not in DISPLAY_ONLY}
        blob = json.dumps({"format": FORMAT_VERSION, **keyed}, sort_keys=True)
        ns = hashlib.sha256(blob.encode()).hexdigest()[:32]
        self._settings[ns] = settings
        with self.locked():
            self._write_meta(ns)
        return ns

    def _dir(self, ns: str) -> Path:
        return self.root / "embeddings" / ns

    def _db(self, ns: str) -> Path:
        return self._dir(ns) / "vectors.sqlite"

    def _write_meta(self, ns: str) -> None:
        """Create the namespace's folder and ``meta.json`` if they are missing (first use, or
        after a ``cache clear`` removed them under a running process); a namespace that is a
        file, or a ``meta.json`` that cannot be read, is moved aside and written afresh."""
        if self.read_only or ns not in self._settings:
            return
        folder = self._dir(ns)
        if os.path.lexists(folder) and not folder.is_dir():
            if not self._move_aside(folder, "a file, not a folder", _aside_name(folder, ".")):
                return
        meta = folder / "meta.json"
        problem = _not_a_file(meta) or _meta_problem(meta)
        if problem is None and meta.exists():
            return
        if problem is not None and not self._move_aside(meta, problem, _aside_name(meta)):
            return
        try:
            atomic_write_json(meta, {"format": FORMAT_VERSION, "settings": self._settings[ns],
                                     "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
        except OSError as e:
            if not self._becomes_read_only(e):
                raise self._unwritable(e) from None

    # -- connections (all under the lock) ---------------------------------------------------
    def _conn(self, ns: str) -> sqlite3.Connection | None:
        """The namespace's open connection, reopened when its file vanished or was replaced;
        None for a read-only cache without a usable file for it."""
        path = self._db(ns)
        entry = self._conns.get(ns)
        if entry is not None:
            if _file_id(path) == entry[1]:
                return entry[0]
            self._drop(ns)  # cleared (or moved aside) by another process: start a new file
        self._write_meta(ns)
        conn = self._open_read_only(path) if self.read_only else self._open(path)
        if conn is not None:
            self._conns[ns] = (conn, _file_id(path))
        return conn

    def _drop(self, ns: str) -> None:
        entry = self._conns.pop(ns, None)
        if entry is not None:
            with contextlib.suppress(sqlite3.Error):
                entry[0].close()

    def _open(self, path: Path) -> sqlite3.Connection | None:
        """Open (creating) a namespace file, checked; a damaged one (or a folder, or anything
        but a file, in its place or its journal's) is moved aside once. None: the folder turned
        out read-only and holds no usable file."""
        for attempt in range(2):
            conn = None
            journal = Path(f"{path}-journal")
            problem = _not_a_file(path) or (
                _not_a_file(journal) and f"its journal {journal.name} is {_not_a_file(journal)}")
            if problem is not None:
                if attempt:
                    raise EmbedkitError(f"embedding cache {path} is still {problem} after moving"
                                        f" it aside; {_HINT}", param="cache_dir")
                if not self._move_aside(path, problem):
                    return self._open_read_only(path)
                continue
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
                problem = _check_file(conn)
            except sqlite3.DatabaseError as e:
                if not is_corruption(e):
                    if conn is not None:
                        conn.close()
                    if self._becomes_read_only(e):
                        return self._open_read_only(path)
                    raise self._sqlite_error(e, path) from None
                problem = _first_line(e)
            if problem is None:
                assert conn is not None
                return conn
            if conn is not None:
                conn.close()
            if attempt:
                raise EmbedkitError(f"embedding cache {path} is still damaged after rebuilding "
                                    f"({problem}); {_HINT}", param="cache_dir")
            if not self._move_aside(path, problem):
                return self._open_read_only(path)
        raise AssertionError("unreachable")  # pragma: no cover

    def _open_read_only(self, path: Path) -> sqlite3.Connection | None:
        """A namespace file of a read-only cache, opened read-only (None when it is absent or
        cannot be used: a read-only cache can neither create nor rebuild one)."""
        if not path.is_file():
            return None
        conn = None
        try:
            conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=60)
            problem = _check_file(conn)
        except sqlite3.DatabaseError as e:
            problem = _first_line(e)
        if problem is None:
            return conn
        if conn is not None:
            conn.close()
        self._warn_once(f"ro:{path}", f"embedding cache {path} cannot be used ({problem}) and "
                                      "the cache is read-only: its vectors are recomputed")
        return None

    def _move_aside(self, path: Path, problem: str, aside: Path | None = None) -> bool:
        """Rename a damaged entry out of the way (a SQLite file with its journal), warned;
        False when the folder turned out read-only (the entry stays, unused)."""
        aside = aside or _aside_name(path)
        try:
            if os.path.lexists(path):  # (a journal may be all there is)
                os.replace(path, aside)
            for suffix in ("-journal", "-wal", "-shm") if path.suffix == ".sqlite" else ():
                side = Path(str(path) + suffix)
                if os.path.lexists(side) and not side.is_file():  # a folder: kept beside it
                    os.replace(side, str(aside) + suffix)
                with contextlib.suppress(FileNotFoundError):
                    os.remove(side)
        except OSError as e:
            if self._becomes_read_only(e):
                return False
            raise self._unwritable(e, path.parent) from None
        what = "is unreadable or damaged" if path.suffix == ".sqlite" else "is damaged"
        warnings.warn(f"embedding cache {path} {what} ({problem}); moved to {aside.name} and "
                      "starting afresh (its vectors are recomputed; delete the copy when you no "
                      "longer need it)", stacklevel=5)
        return True

    def _recover(self, ns: str, e: sqlite3.DatabaseError) -> None:
        """After SQLite failed on a namespace's file: forget a connection whose file vanished,
        move a damaged file aside, and raise one clear error for anything else."""
        path = self._db(ns)
        entry = self._conns.get(ns)
        vanished = entry is not None and _file_id(path) != entry[1]
        self._drop(ns)
        if vanished:
            return
        if not is_corruption(e):
            if self._becomes_read_only(e):
                return
            raise self._sqlite_error(e, path) from None
        if path.exists():
            self._move_aside(path, _first_line(e))

    # -- reads and writes -------------------------------------------------------------------
    def get(self, ns: str, texts: list[str], dim: int | None = None
            ) -> tuple[np.ndarray | None, list[int]]:
        """Vectors for ``texts`` (rows for the found ones, in order) and the missing indices.

        Returns ``(found, missing)`` where ``found`` is a (len(texts) - len(missing), d) array
        aligned with the texts that are not missing, or None if nothing was found. ``dim``: the
        width the vectors must have (by default, the commonest width among the rows found);
        rows that fail a check are deleted and reported missing.
        """
        keys = [text_key(t) for t in texts]
        with self.locked():
            rows: dict[bytes, np.ndarray] = {}
            for attempt in range(2):
                try:
                    rows = self._read(ns, keys, dim)
                    break
                except sqlite3.DatabaseError as e:
                    if self.read_only:  # nothing can be rebuilt: what it cannot read is missing
                        self._drop(ns)
                        break
                    self._recover(ns, e)
                    if attempt:
                        rows = {}
        missing = [i for i, k in enumerate(keys) if k not in rows]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        found = [rows[k] for k in keys if k in rows]
        return (np.stack(found) if found else None), missing

    def _read(self, ns: str, keys: list[bytes], dim: int | None) -> dict[bytes, np.ndarray]:
        conn = self._conn(ns)
        if conn is None:
            return {}
        blobs: dict[bytes, bytes] = {}
        bad: dict[str, list[bytes]] = {"damaged": [], "non-finite": [], "width": []}
        for i in range(0, len(keys), _CHUNK):
            chunk = keys[i:i + _CHUNK]
            q = f"SELECT key, dim, crc, data FROM vec WHERE key IN ({','.join('?' * len(chunk))})"
            for key, d, crc, data in conn.execute(q, chunk):
                if not isinstance(data, bytes) or not isinstance(d, int) \
                        or len(data) != 4 * d or zlib.crc32(data) != crc:
                    bad["damaged"].append(key)
                else:
                    blobs[key] = data
        # one width (the model's, else the commonest), then finiteness, checked in one array
        width = dim or (Counter(len(b) // 4 for b in blobs.values()).most_common(1)
                        or [(0, 0)])[0][0]
        bad["width"] = [k for k, b in blobs.items() if len(b) != 4 * width]
        ok = [k for k, b in blobs.items() if len(b) == 4 * width]
        matrix = np.frombuffer(b"".join(blobs[k] for k in ok), dtype=np.float32
                               ).reshape(len(ok), width)
        finite = np.asarray(np.isfinite(matrix).all(axis=1), dtype=bool).tolist()
        bad["non-finite"] = [k for k, f in zip(ok, finite, strict=True) if not f]
        if any(bad.values()):
            self._discard(ns, conn, bad, width)
        return {k: matrix[i] for i, k in enumerate(ok) if finite[i]}

    def _discard(self, ns: str, conn: sqlite3.Connection, bad: dict[str, list[bytes]],
                 width: int) -> None:
        what = {"damaged": "damaged (checksum or length wrong)",
                "non-finite": "not finite (NaN or inf)", "width": f"not {width} wide"}
        for kind, keys in bad.items():
            if keys:
                self.corrupt += len(keys)
                self._warn_once(kind, f"embedding cache {self._dir(ns)}: {len(keys)} cached "
                                      f"vector(s) {what[kind]}; removed and recomputed")
        if self.read_only:
            return
        with conn:
            conn.executemany("DELETE FROM vec WHERE key = ?",
                             [(k,) for keys in bad.values() for k in keys])

    def put(self, ns: str, texts: list[str], vectors: np.ndarray) -> int:
        """Store vectors (float32) for texts, in one transaction; how many were stored (0 in
        a read-only cache). Vectors that are not finite are never stored."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        finite = np.isfinite(vectors).all(axis=1) if vectors.ndim == 2 else []
        rows = []
        for t, v, ok in zip(texts, vectors, finite, strict=True):
            if not ok:
                continue
            data = v.tobytes()
            rows.append((text_key(t), v.shape[0], zlib.crc32(data), data))
        with self.locked():
            for attempt in range(2):
                conn = None if self.read_only else self._conn(ns)
                if conn is None:
                    return 0  # a read-only cache stores nothing (said once)
                try:
                    with conn:  # commits the batch atomically, or rolls it back
                        conn.executemany("INSERT OR REPLACE INTO vec VALUES (?, ?, ?, ?)", rows)
                    return len(rows)
                except sqlite3.DatabaseError as e:
                    if not attempt:
                        self._recover(ns, e)  # then again, on a new or read-only connection
                    elif not self._becomes_read_only(e):
                        raise self._sqlite_error(e, self._db(ns)) from None
        return 0

    # -- maintenance ------------------------------------------------------------------------
    def _namespace_dirs(self) -> list[Path]:
        base = self.root / "embeddings"
        if not base.is_dir():
            return []
        return sorted(d for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))

    def namespaces(self) -> list[dict[str, Any]]:
        """What the cache holds: one dict per namespace with its settings, rows and bytes."""
        if not (self.root / "embeddings").is_dir():
            return []
        with self.locked(required=False):
            return [e for d in self._namespace_dirs() if (e := _describe(d)) is not None]

    def clear(self, model: str | None = None) -> int:
        """Delete every namespace, or those of ``model`` (the name as given, its resolved folder
        or alias, or its identity: matched exactly, never as a substring); returns how many were
        removed."""
        if model is not None and not model.strip():
            raise ConfigError("an empty model matches nothing; name a model (as given, its "
                              "folder or its identity), or leave it out to clear everything",
                              param="model")
        wanted = _model_matcher(model) if model is not None else None
        self.close()
        if not (self.root / "embeddings").is_dir():
            return 0
        n = 0
        with self.locked():
            for d in self._namespace_dirs():
                if wanted is None or wanted(_settings(d)):
                    _remove_tree(d)
                    n += 1
            for leftover in (self.root / "embeddings").glob(".trash-*"):
                shutil.rmtree(leftover, ignore_errors=True)  # an earlier clear was killed
        return n

    def close(self) -> None:
        for ns in list(self._conns):
            self._drop(ns)

    def __del__(self) -> None:  # pragma: no cover - best effort
        with contextlib.suppress(Exception):
            self.close()


def _settings(d: Path) -> dict[str, Any]:
    try:
        settings = json.loads((d / "meta.json").read_text("utf-8")).get("settings", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return settings if isinstance(settings, dict) else {}


def _describe(d: Path) -> dict[str, Any] | None:
    """``cache info``'s line for one namespace folder (None if it vanished meanwhile)."""
    try:
        size = sum(f.stat().st_size for f in d.iterdir() if f.is_file())
    except OSError:
        return None
    rows = 0
    db = d / "vectors.sqlite"
    if db.exists():
        try:  # read-only: listing never creates or changes a file
            uri = db.resolve().as_uri() + "?mode=ro"
            with contextlib.closing(sqlite3.connect(uri, uri=True)) as c:
                rows = c.execute("SELECT count(*) FROM vec").fetchone()[0]
        except sqlite3.Error:
            rows = -1
    return {"namespace": d.name, "settings": _settings(d), "rows": rows, "bytes": size}


def _remove_tree(d: Path) -> None:
    """Remove a namespace folder: first renamed out of the way (one atomic step, so that no
    process ever sees half a namespace), then deleted."""
    trash = d.with_name(f".trash-{d.name}-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        os.replace(d, trash)
    except FileNotFoundError:
        return
    except OSError as e:
        raise ConfigError(f"cannot remove {d} ({e.strerror}); check the permissions of the "
                          "cache folder (cache_dir)", param="cache_dir") from None
    shutil.rmtree(trash, ignore_errors=True)


def _model_matcher(model: str) -> Callable[[dict[str, Any]], bool]:
    """Whether a namespace's settings belong to ``model``: the name as given, the same resolved
    folder or alias, or the same identity (with or without its ``;dtype=...`` suffixes)."""
    from embedkit.encoders.models import is_local, model_identity, resolve_model_path

    names = {model, resolve_model_path(model)}
    identities = {model}
    resolved = resolve_model_path(model)
    if is_local(resolved):
        with contextlib.suppress(OSError):
            identities.add(model_identity(resolved))

    def match(settings: dict[str, Any]) -> bool:
        name = str(settings.get("model", ""))
        ident = str(settings.get("model_identity", ""))
        return (name in names or ident in identities or ident.split(";")[0] in identities
                or bool(name) and resolve_model_path(name) in names)

    return match


def namespace_run(settings: dict[str, Any]) -> dict[str, Any]:
    """How the encoder of a namespace ran, for ``cache info``: the backend, quantisation,
    dtype and prompt its ``model_identity`` names (as ``TransformerEncoder`` and
    ``ExportedEncoder`` build it: ``<weights>[;backend=..][;quantize=int8][;dtype=..]
    [;lowercase][;prompt="..."]``) and the hub commit it pins (12 digits; "" for a local
    folder, whose identity is a sha256).

    >>> namespace_run({"model_identity": 'org/m@0123456789abcdef;backend=onnx;quantize=int8;'
    ...                'prompt="q;: "', "dtype": "float32"})
    {'backend': 'onnx', 'quantize': 'int8', 'dtype': 'float32', 'prompt': 'q;: ', 'revision': '0123456789ab'}
    """
    weights, *parts = str(settings.get("model_identity") or "").split(";")
    out: dict[str, Any] = {"backend": "torch", "quantize": "none",
                           "dtype": settings.get("dtype") or "float32", "prompt": ""}
    for i, part in enumerate(parts):
        if part.startswith("prompt="):  # the last part, JSON (which may hold a ";")
            text = ";".join(parts[i:])[len("prompt="):]
            with contextlib.suppress(ValueError):
                text = json.loads(text)
            out["prompt"] = str(text)
            break
        key, _, value = part.partition("=")
        if key in ("backend", "quantize", "dtype") and value:
            out[key] = value
    commit = weights.rsplit("@", 1)[1] if "@" in weights and not weights.startswith(
        "sha256:") else ""
    out["revision"] = "" if commit == "unknown" else commit[:12]
    return out
