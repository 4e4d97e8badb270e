"""Atomic writes: the old or the new file (or folder) is in place at every instant.

A file is written to a temporary file in its folder, given the permissions the umask asks for,
fsynced, then renamed onto the target (one ``os.replace``).

A folder (an index folder, a model folder, a checkpoint) is written by :func:`atomic_dir` under
the folder's lock (:func:`folder_lock`: a lock file ``.NAME.lock`` beside it, so two processes
never replace it at once) into a temporary folder ``.NAME.XXXXXXXX.tmp`` beside it, then swapped
in:

- on Linux in one step (``renameat2(RENAME_EXCHANGE)``): at every instant ``NAME`` is the old
  folder or the new one; the old one, now under the temporary name, is removed after;
- elsewhere (or on a file system that cannot exchange) in two renames, ``NAME`` ->
  ``.NAME.XXXXXXXX.old`` then the new folder -> ``NAME``. A kill between them leaves the old
  folder as ``.NAME.XXXXXXXX.old``, which :func:`recover_dir` puts back.

What a killed write leaves beside the folder (``.NAME.*.tmp``, ``.NAME.*.old``) is put back or
removed by the next write of the folder and by :func:`recover_dir` (which readers such as the
index-folder reader call), always under the lock, so a live writer's temporary folder is never
touched.

>>> import tempfile, os, json
>>> d = tempfile.mkdtemp()
>>> atomic_write_json(os.path.join(d, "r.json"), {"a": 1})
>>> json.load(open(os.path.join(d, "r.json")))
{'a': 1}
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import json
import logging
import os
import re
import shutil
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from embedkit.aliases import StrPath

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: filelock
    fcntl = None  # type: ignore[assignment]

from embedkit.errors import ConfigError, EmbedkitError

__all__ = ["LOCK_TIMEOUT", "DiskFullError", "FolderLockedError", "atomic_dir", "atomic_path",
           "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "disk_full_error",
           "folder_lock", "is_disk_full", "lock_file", "recover_dir"]

logger = logging.getLogger(__name__)

#: seconds a writer waits for a folder another process is writing (then FolderLockedError)
LOCK_TIMEOUT = 600.0


class FolderLockedError(EmbedkitError):
    """Another process held a folder's lock for longer than the wait allowed."""


# --------------------------------------------------------------------------------------------
# a full disk

_QUOTA = getattr(errno, "EDQUOT", errno.ENOSPC)
_FULL_ERRNOS = frozenset({errno.ENOSPC, _QUOTA})
#: how libraries that do not raise OSError say it: the system's own text (FAISS's RuntimeError
#: ends "... (No space left on device)"), SQLite's "database or disk is full"
_FULL_TEXTS = tuple(dict.fromkeys(os.strerror(e) for e in _FULL_ERRNOS)) + (
    "database or disk is full",)

#: FAISS's "write error in PATH: WRITTEN != ASKED (No space left on device)"
_FAISS_SHORT = re.compile(r"write error in .*: (\d+) != (\d+) \(")


def _human_size(n: int) -> str:
    """A size as people read it: ``512 bytes``, ``4.1 kB``, ``3.2 MB``, ``12 MB``, ``1.5 GB``."""
    if n < 1000:
        return f"{n} bytes"
    for unit, scale in (("kB", 1e3), ("MB", 1e6), ("GB", 1e9)):
        if n < scale * 1000 or unit == "GB":
            value = n / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:,.0f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def _free_bytes(path: Path) -> int | None:
    """Free bytes for an unprivileged user on the file system holding ``path`` (its nearest
    existing folder), None when it cannot be told."""
    for folder in (path, *path.parents):
        if folder.is_dir():
            with contextlib.suppress(OSError):
                return shutil.disk_usage(folder).free
            return None
    return None


class DiskFullError(EmbedkitError):
    """The device (or the user's disk quota) filled up while ``path`` was written; what the
    atomic writers left is removed, so nothing half-written stands as complete.

    ``needed``: the bytes the write needed, where known (``at_least``: a lower bound); else
    ``written``: how many it wrote before the device filled; ``free``: the bytes free after the
    failure (what the write had taken removed).

    >>> print(DiskFullError("/d/x.npz", needed=3_200_000, free=1_048_576))
    no space left on device writing /d/x.npz (needs ~3.2 MB, 1.0 MB free); free space there or write elsewhere
    """

    def __init__(self, path: StrPath | None, *, needed: int | None = None,
                 written: int | None = None, free: int | None = None,
                 quota: bool = False, at_least: bool = False) -> None:
        self.path = Path(path) if path is not None else None
        self.needed, self.written, self.free, self.quota = needed, written, free, quota
        self.at_least = at_least
        super().__init__(self.message())

    def message(self, remedy: str | None = None) -> str:
        """The one line; ``remedy`` says what to do (the CLI names the output option)."""
        if remedy is None:
            remedy = ("free space there or write elsewhere" if self.path is not None
                      else "free space and run again")
        what = "disk quota exceeded" if self.quota else "no space left on device"
        where = f" writing {self.path}" if self.path is not None else ""
        sizes = []
        if self.needed:
            sizes.append(f"needs {'at least ' if self.at_least else '~'}"
                         f"{_human_size(self.needed)}")
        elif self.written:
            sizes.append(f"{_human_size(self.written)} written before it filled")
        if self.free is not None:
            sizes.append(f"{_human_size(self.free)} free")
        detail = f" ({', '.join(sizes)})" if sizes else ""
        return f"{what}{where}{detail}; {remedy}"


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error it was raised from) says the device or the disk quota is
    full: ``OSError`` ENOSPC / EDQUOT, or a library's error carrying the system's text."""
    seen: BaseException | None = exc
    for _ in range(8):  # the __cause__ chain, bounded
        if seen is None:
            return False
        if isinstance(seen, DiskFullError):
            return True
        if isinstance(seen, OSError) and seen.errno in _FULL_ERRNOS:
            return True
        if not isinstance(seen, EmbedkitError) and any(t in str(seen) for t in _FULL_TEXTS):
            return True  # (an embedkit message may quote anything: not taken for the system's)
        seen = seen.__cause__
    return False


def disk_full_error(exc: BaseException, path: StrPath | None = None, *,
                    needed: int | None = None, written: int | None = None) -> DiskFullError:
    """``exc`` (a full device, :func:`is_disk_full`) as a :class:`DiskFullError` about
    ``path`` (default: the file the ``OSError`` names)."""
    if isinstance(exc, DiskFullError):
        return exc
    if path is None and isinstance(exc, OSError) and exc.filename:
        path = os.fsdecode(exc.filename)
    short = _FAISS_SHORT.search(str(exc))
    at_least = needed is None and short is not None and bool(written)
    if at_least and short is not None and written:  # FAISS says how much of one write was cut
        needed = written + int(short.group(2)) - int(short.group(1))
    quota = _QUOTA != errno.ENOSPC and (
        (isinstance(exc, OSError) and exc.errno == _QUOTA) or os.strerror(_QUOTA) in str(exc))
    full = DiskFullError(path, needed=needed, written=written,
                         free=_free_bytes(Path(path)) if path is not None else None,
                         quota=quota, at_least=at_least)
    full.__cause__ = exc
    return full


def _newly_full(exc: BaseException) -> bool:
    """A full device not yet turned into a :class:`DiskFullError` (an inner writer's, naming
    its file, passes through as it is)."""
    return isinstance(exc, Exception) and not isinstance(exc, DiskFullError) and is_disk_full(exc)


def _size(path: Path) -> int:
    """Bytes under ``path`` (a file or a folder), 0 where it cannot be read."""
    try:
        if not path.is_dir():
            return path.stat().st_size
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    except OSError:
        return 0


# --------------------------------------------------------------------------------------------
# files


def _cannot_write(path: Path, exc: OSError) -> EmbedkitError:
    if is_disk_full(exc):
        return disk_full_error(exc, path)
    return EmbedkitError(f"{path}: cannot write it ({exc.strerror or exc})")


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it (os.umask can only
    be read by setting it, which would race with threads creating files meanwhile)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _file_mode(current: int, umask: int) -> int:
    """An ordinary file's mode under ``umask`` (executable where it was written executable)."""
    return (0o777 if current & stat.S_IXUSR else 0o666) & ~umask


@contextlib.contextmanager
def atomic_path(path: StrPath, suffix: str = "", *,
                size_hint: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    Use it with writers that want a file name (``np.savez``, ``safetensors.save_file``,
    ``faiss.write_index``). The result gets the permissions the umask gives any new file
    (safetensors and ``mkstemp`` make 0600). On an exception the temporary file is removed.
    A ``path`` that is a folder, or a folder that cannot be written, is an
    :class:`~embedkit.errors.EmbedkitError` naming it; a full device or quota (whatever the
    writer raised: :func:`is_disk_full`) is a :class:`DiskFullError` naming ``path``, the bytes
    it needs (``size_hint``, when the caller knows them) and those free.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; give the path of a file to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp",
                                   dir=path.parent)
    except OSError as exc:
        raise _cannot_write(path, exc) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, _file_mode(tmp_path.stat().st_mode, _umask()))
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException as exc:
        full = _newly_full(exc)
        written = _size(tmp_path) if full else 0
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if full:
            raise disk_full_error(exc, path, needed=size_hint, written=written) from exc
        raise


def atomic_write_bytes(path: StrPath, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path, size_hint=len(data)) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: StrPath, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: StrPath, obj: Any) -> None:
    """Write ``obj`` as indented UTF-8 JSON (non-ASCII kept readable) atomically."""
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=False) + "\n")


# --------------------------------------------------------------------------------------------
# folder locks
#
# Hand-written on fcntl.flock rather than filelock (which is used where fcntl is missing):
# filelock leaves its lock file in place after release (so that waiters share one inode), which
# would leave a ``.NAME.lock`` beside every folder ever written (every model export, every
# checkpoint). Removing it safely needs every locker to check, once it holds the lock, that the
# file it locked is still the one at the path -- which this does and filelock does not promise.

_HELD = threading.local()
_POLL = 0.05


def lock_file(path: StrPath) -> Path:
    """The lock file of folder ``path``: ``.NAME.lock`` beside it (a folder is replaced whole,
    so a lock file inside it would be replaced with it). It exists while the lock is held."""
    path = Path(path)
    return path.parent / f".{path.name}.lock"


def _held() -> dict[str, int]:
    """Lock files this thread holds -> how many times (re-entrant holds)."""
    if not hasattr(_HELD, "locks"):
        _HELD.locks = {}
    locks: dict[str, int] = _HELD.locks
    return locks


def _try_flock(lock_path: Path) -> Callable[[], None] | None:
    """Take the lock now, or None; returns its release (which removes the file)."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:  # the file may have been removed by the holder that released it meanwhile
            current = os.path.samestat(os.fstat(fd), os.stat(lock_path))
        except FileNotFoundError:
            current = False
    except BlockingIOError:
        current = False
    except BaseException:
        os.close(fd)
        raise
    if not current:
        os.close(fd)
        return None

    def release() -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path)  # while holding it: a waiter on this inode sees it is gone
        os.close(fd)

    return release


def _acquire(lock_path: Path, timeout: float | None, waiting: Callable[[], None]
             ) -> Callable[[], None]:
    """Take the lock within ``timeout`` seconds (None: for ever); its release. Raises
    :class:`filelock.Timeout` when it is not free in time."""
    if fcntl is None:  # pragma: no cover - Windows
        lock = FileLock(lock_path)
        lock.acquire(timeout=-1 if timeout is None else timeout)
        return lambda: lock.release()
    deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
    told = False
    while True:
        release = _try_flock(lock_path)
        if release is not None:
            return release
        if deadline is not None and time.monotonic() >= deadline:
            raise Timeout(str(lock_path))
        if not told:
            waiting()
            told = True
        time.sleep(_POLL)


@contextlib.contextmanager
def folder_lock(path: StrPath, timeout: float | None = LOCK_TIMEOUT,
                what: str = "folder") -> Iterator[None]:
    """Hold folder ``path``'s lock (:func:`lock_file`) for the block.

    Waits up to ``timeout`` seconds (None: for ever) while another process or thread holds it,
    then raises :class:`FolderLockedError`. The folder's parent must exist. The operating system releases the lock of a process
    that dies, so a lock file a kill left behind never blocks anyone. Re-entrant within a
    thread (a writer holding it may call another writer of the same folder).
    """
    path = Path(path)
    lock_path = lock_file(path)
    key = os.path.abspath(lock_path)
    held = _held()
    if key in held:
        held[key] += 1
        try:
            yield
        finally:
            held[key] -= 1
        return
    try:
        release = _acquire(lock_path, timeout, lambda: logger.info(
            "%s %s is being written by another process; waiting for it", what, path))
    except Timeout:
        raise FolderLockedError(
            f"{what} {path} is being written by another process (it holds {lock_path}); "
            f"waited {timeout:g} s: try again when that one has finished") from None
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full_error(exc, lock_path) from exc
        raise EmbedkitError(f"{path}: cannot lock it for writing: cannot create {lock_path} "
                            f"({exc.strerror or exc})") from None
    held[key] = 1
    try:
        yield
    finally:
        del held[key]
        release()


# --------------------------------------------------------------------------------------------
# folders


def _leftovers(path: Path) -> list[Path]:
    """``.NAME.XXXXXXXX.tmp`` / ``.old`` beside ``path`` (XXXXXXXX: a name without dots, so a
    folder ``NAME.v2``'s temporary folders are not taken for ``NAME``'s)."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[^.]+\.(tmp|old)")
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []
    return sorted(path.parent / n for n in names if pattern.fullmatch(n))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _previous_version(old: Path) -> Path:
    """The folder a ``.old`` entry holds: itself, or ``x`` inside (earlier versions moved the
    old folder to ``.NAME.XXXXXXXX.old/x``)."""
    inner = old / "x"
    with contextlib.suppress(OSError):
        if [p.name for p in old.iterdir()] == ["x"] and inner.is_dir():
            return inner
    return old


def _recover_locked(path: Path) -> None:
    """Put back the old folder a killed two-rename swap left as ``.old`` when ``path`` is
    missing; remove every leftover. The caller holds the folder's lock."""
    leftovers = _leftovers(path)
    if not os.path.lexists(path):
        olds = [p for p in leftovers if p.name.endswith(".old") and p.is_dir()]
        if olds:
            old = max(olds, key=lambda p: p.stat().st_mtime)
            os.replace(_previous_version(old), path)
            logger.warning("%s: put back from %s (replacing it had been interrupted)",
                           path, old.name)
    for p in _leftovers(path):
        _remove(p)
        logger.info("removed %s, left by an interrupted write", p)


def recover_dir(path: StrPath, timeout: float = 0.0) -> None:
    """Repair what a killed :func:`atomic_dir` left beside folder ``path``: put the old folder
    back if ``path`` is missing, remove temporary folders.

    Only when it gets the folder's lock (within ``timeout`` seconds): while another process
    writes the folder, its temporary folder is its own and nothing is touched. A folder that
    cannot be locked (read-only) is left as it is.
    """
    path = Path(path)
    if not _leftovers(path):
        return
    try:
        with folder_lock(path, timeout=timeout):
            _recover_locked(path)
    except FolderLockedError:
        return
    except (EmbedkitError, OSError) as exc:
        logger.warning("%s: cannot repair what an interrupted write left (%s)", path, exc)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems cannot fsync a folder
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def _finish_tree(root: Path) -> None:
    """The permissions the umask gives new files and folders (writers such as safetensors make
    0600), and everything on disk before the folder is swapped in."""
    umask = _umask()
    for folder, _, files in os.walk(root):
        for name in files:
            p = Path(folder) / name
            st = p.lstat()
            if stat.S_ISREG(st.st_mode):
                os.chmod(p, _file_mode(st.st_mode, umask))
                _fsync(p)
        os.chmod(folder, 0o777 & ~umask)
        _fsync(Path(folder))


@functools.cache
def _renameat2() -> Callable[..., int] | None:
    # Python's os module has no renameat2, and no maintained library wraps it: glibc's wrapper
    # through ctypes (Linux, glibc 2.28+); None elsewhere, where the two-rename swap is used.
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step; False where the system or file system cannot."""
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def _swap_in(new: Path, path: Path) -> None:
    """Put the complete folder ``new`` at ``path``; the old or the new one is there throughout
    (with the two-rename fallback: after :func:`recover_dir`)."""
    if not os.path.lexists(path):
        os.replace(new, path)
    elif _exchange(new, path):
        _remove(new)  # the previous folder, now under the temporary name
    else:
        old = new.with_name(new.name.removesuffix(".tmp") + ".old")
        os.replace(path, old)
        try:
            os.replace(new, path)
        except OSError:
            os.replace(old, path)
            raise
        _remove(old)
    _fsync(path.parent)


@contextlib.contextmanager
def atomic_dir(path: StrPath, lock_timeout: float | None = LOCK_TIMEOUT
               ) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` as a whole.

    For outputs made of several files (a model folder, an index folder). Holds the folder's
    lock (:func:`folder_lock`, waiting up to ``lock_timeout`` seconds) from start to end, and
    first repairs what an earlier killed write left (:func:`recover_dir`). The files get the
    umask's permissions and are fsynced before the swap. On an error the temporary folder is
    removed and ``path`` is unchanged; a full device or quota is a :class:`DiskFullError`
    naming ``path`` (see :func:`atomic_path`).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _cannot_write(path, exc) from None
    with folder_lock(path, timeout=lock_timeout):
        _recover_locked(path)
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        except OSError as exc:
            raise _cannot_write(path, exc) from None
        try:
            yield tmp
            _finish_tree(tmp)
            _swap_in(tmp, path)
        except (Exception, KeyboardInterrupt, SystemExit) as exc:  # not a kill: tests/faults.py
            full = _newly_full(exc)
            written = _size(tmp) if full else 0
            shutil.rmtree(tmp, ignore_errors=True)
            if full:
                raise disk_full_error(exc, path, written=written) from exc
            raise
