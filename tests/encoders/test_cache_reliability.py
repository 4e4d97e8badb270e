"""Reliability of the embedding cache (issue 9): kills during chunked writes, ``cache clear``
while a run writes, two maintenance processes, damaged SQLite pages, foreign tables, rows of
the wrong width or with NaN, and cache folders that cannot be written. Each test reproduces
one case on a few dozen sentences and the tiny model, in seconds."""

from __future__ import annotations

import errno
import multiprocessing as mp
import os
import re
import sqlite3
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from embedkit.cli.main import main
from embedkit.encoders import Encoder
from embedkit.encoders import cache as cache_mod
from embedkit.encoders.cache import EmbeddingCache, text_key
from embedkit.errors import EmbedkitError
from tests.conftest import cli_error
from tests.faults import SimulatedKill, kill_at

# Forked children start at once (a fresh interpreter would spend seconds importing torch); they
# are real processes all the same, with their own file descriptors and locks.
FORK = mp.get_context("fork")


def forward_rows(encoder) -> list[int]:
    """The batch sizes that reach the model's forward pass, as it runs."""
    rows: list[int] = []
    encoder.model.register_forward_pre_hook(
        lambda m, args, kwargs: rows.append(int(kwargs["input_ids"].shape[0])), with_kwargs=True)
    return rows


def cached(model_dir, root, chunk: int | None = None) -> tuple[Encoder, list[int]]:
    enc = Encoder(str(model_dir), cache=EmbeddingCache(root))
    if chunk is not None:
        enc.chunk = chunk
    return enc, forward_rows(enc)


def db_of(enc: Encoder, pooling: str = "cls", max_length: int = 64) -> tuple[str, Path]:
    ns = enc.namespace(pooling, max_length)
    return ns, enc.cache.root / "embeddings" / ns / "vectors.sqlite"




# -- kills during a chunked write -------------------------------------------------------------

@pytest.mark.reliability("9.kill", "killed during a chunked cache write: the written chunks stay, "
                                   "the next run encodes only the rest")
def test_kill_between_chunk_writes_keeps_written_chunks(tiny_model_dir, tmp_path, unique,
                                                        reference):
    enc, _ = cached(tiny_model_dir, tmp_path / "c", chunk=8)
    with kill_at("embedkit.encoders.cache.EmbeddingCache.put", call=3), \
            pytest.raises(SimulatedKill):
        enc.encode(unique, pooling="cls")
    enc.cache.close()
    again, rows = cached(tiny_model_dir, tmp_path / "c", chunk=8)
    got = again.encode(unique, pooling="cls")
    assert again.stats.cache_hits == 16 and sum(rows) == len(unique) - 16
    np.testing.assert_allclose(got, reference, atol=1e-5)


def _encode_killed_mid_transaction(model_dir: str, root: str, texts: list[str]) -> None:
    """In a child process: encode in chunks of 8 and SIGKILL this process inside the third
    chunk's transaction, after two of its rows were inserted."""
    import signal

    real_open = cache_mod.EmbeddingCache._open
    inserts: list[str] = []

    def kill_inside_third_chunk(statement: str) -> None:
        if statement.startswith("INSERT"):
            inserts.append(statement)
            if len(inserts) == 8 * 2 + 3:
                os.kill(os.getpid(), signal.SIGKILL)

    def traced(self, path):
        conn = real_open(self, path)
        conn.set_trace_callback(kill_inside_third_chunk)
        return conn

    cache_mod.EmbeddingCache._open = traced  # type: ignore[method-assign]
    enc = Encoder(model_dir, cache=EmbeddingCache(root))
    enc.chunk = 8
    enc.encode(texts, pooling="cls")


@pytest.mark.reliability("9.kill", "process SIGKILLed inside a cache transaction: the next run "
                                   "keeps the committed chunks and recomputes the rest")
def test_sigkill_inside_a_cache_transaction(tiny_model_dir, tmp_path, unique, reference):
    child = FORK.Process(target=_encode_killed_mid_transaction,
                         args=(str(tiny_model_dir), str(tmp_path / "c"), unique))
    child.start()
    child.join(120)
    assert child.exitcode == -9
    db = next((tmp_path / "c" / "embeddings").glob("*/vectors.sqlite"))
    assert db.with_name("vectors.sqlite-journal").exists()  # killed with a hot journal
    again, rows = cached(tiny_model_dir, tmp_path / "c", chunk=8)
    got = again.encode(unique, pooling="cls")
    assert again.stats.cache_hits == 16 and sum(rows) == len(unique) - 16
    np.testing.assert_allclose(got, reference, atol=1e-5)


# -- cache clear while a run writes; two maintenance processes ---------------------------------

def _cli(argv: list[str]) -> None:
    sys.exit(main(argv))


@pytest.mark.reliability("9.6", "embedkit cache clear (another process) while a run writes: the "
                                "run finishes right and recreates its namespace")
def test_cache_clear_during_a_run(tiny_model_dir, tmp_path, unique, reference):
    root = tmp_path / "c"
    enc, rows = cached(tiny_model_dir, root, chunk=10)
    cleared: list[int | None] = []

    def clear_on_second_batch(module, args, kwargs):
        if len(rows) == 2 and not cleared:  # chunk 1 is cached, chunk 2 is being encoded
            clearer = FORK.Process(target=_cli, args=(["cache", "clear", "--cache-dir",
                                                       str(root)],))
            clearer.start()
            clearer.join(60)
            cleared.append(clearer.exitcode)

    enc.model.register_forward_pre_hook(clear_on_second_batch, with_kwargs=True)
    got = enc.encode(unique, pooling="cls")
    assert cleared == [0]
    np.testing.assert_allclose(got, reference, atol=1e-5)
    (entry,) = enc.cache.namespaces()  # recreated, with its settings, holding chunks 2 to 4
    assert entry["rows"] == len(unique) - 10
    assert entry["settings"]["model"] == str(tiny_model_dir)
    again, rows2 = cached(tiny_model_dir, root, chunk=10)
    again.encode(unique, pooling="cls")
    assert sum(rows2) == 10


def _clear_in_loop(root: str, times: int, start) -> None:
    start.wait(30)
    c = EmbeddingCache(root)
    for _ in range(times):
        c.clear()


@pytest.mark.reliability("9.6", "a process clearing the cache over and over while another "
                                "encodes in chunks: no error, right vectors")
def test_concurrent_clears_and_writes(tiny_model_dir, tmp_path, unique, reference):
    root = tmp_path / "c"
    enc, _ = cached(tiny_model_dir, root, chunk=4)
    start = FORK.Event()
    child = FORK.Process(target=_clear_in_loop, args=(str(root), 40, start))
    child.start()
    try:
        start.set()
        got = [enc.encode(unique, pooling="cls") for _ in range(2)]
    finally:
        child.join(60)
    assert child.exitcode == 0
    for g in got:
        np.testing.assert_allclose(g, reference, atol=1e-5)


def _clear_once(root: str, start, out) -> None:
    start.wait(30)
    out.put(EmbeddingCache(root).clear())


@pytest.mark.reliability("9.6", "two cache clears at once: each namespace removed once, "
                                "nothing left half-removed")
def test_two_clears_at_once(tmp_path):
    root = tmp_path / "c"
    c = EmbeddingCache(root)
    for i in range(12):
        ns = c.namespace({"model": f"m{i}"})
        c.put(ns, ["a", "b"], np.ones((2, 4), np.float32))
    c.close()
    start, out = FORK.Event(), FORK.Queue()
    procs = [FORK.Process(target=_clear_once, args=(str(root), start, out)) for _ in range(2)]
    for p in procs:
        p.start()
    start.set()
    counts = sorted(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0]
    assert sum(counts) == 12
    assert sorted(os.listdir(root / "embeddings")) == []


@pytest.mark.reliability("9.6", "cache maintenance waits for the cache lock and fails clearly "
                                "when it stays taken")
def test_clear_waits_for_the_lock(tmp_path):
    holder = EmbeddingCache(tmp_path)
    ns = holder.namespace({"model": "m"})
    holder.put(ns, ["a"], np.ones((1, 2), np.float32))
    impatient = EmbeddingCache(tmp_path, lock_timeout=0.2)
    with holder.locked():
        with pytest.raises(EmbedkitError, match=r"stayed locked by another embedkit process for "
                                                r"0 s; try again when it is done") as e:
            impatient.clear()
    assert e.value.param == "cache_dir"
    assert holder.get(ns, ["a"])[1] == []  # nothing was removed while the lock was held
    assert impatient.clear() == 1


@pytest.mark.reliability("9.6", "cache clear killed half-way: no half namespace is listed or "
                                "used, the next clear removes the rest")
def test_killed_clear_leaves_no_half_namespace(tmp_path):
    c = EmbeddingCache(tmp_path)
    spaces = [c.namespace({"model": f"m{i}"}) for i in range(3)]
    for ns in spaces:
        c.put(ns, ["a"], np.ones((1, 2), np.float32))
    with kill_at("os.unlink", call=2), pytest.raises(SimulatedKill):
        c.clear()  # killed after the first namespace's first file was deleted
    entries = EmbeddingCache(tmp_path).namespaces()
    assert len(entries) == 2  # the two untouched ones, whole; not the half-removed one
    assert all(e["settings"].get("model") in ("m0", "m1", "m2") and e["rows"] == 1
               for e in entries)
    assert EmbeddingCache(tmp_path).clear() == 2
    assert list((tmp_path / "embeddings").iterdir()) == []  # the half-removed one is gone too
    again = EmbeddingCache(tmp_path)  # a removed namespace is simply empty again
    assert again.get(again.namespace({"model": "m0"}), ["a"]) == (None, [0])


# -- damaged files ------------------------------------------------------------------------------

def _filled(enc: Encoder, texts: list[str], extra: int = 3000) -> tuple[str, Path]:
    """A namespace holding the texts' vectors and ``extra`` filler rows (several 64 KiB pages)."""
    ns, db = db_of(enc)
    enc.encode(texts, pooling="cls")
    filler = np.random.default_rng(0).standard_normal((extra, enc.dim)).astype(np.float32)
    enc.cache.put(ns, [f"filler {i}" for i in range(extra)], filler)
    enc.cache.close()
    return ns, db


def _damage_page(db: Path, page: int = 2) -> None:
    """Overwrite the header of SQLite page ``page`` (64 KiB pages)."""
    data = bytearray(db.read_bytes())
    data[(page - 1) * 65536:(page - 1) * 65536 + 12] = b"\xff" * 12
    db.write_bytes(bytes(data))
    with sqlite3.connect(db) as conn:  # the damage is real: SQLite's own check sees it
        assert conn.execute("PRAGMA quick_check(1)").fetchone()[0] != "ok"


@pytest.mark.reliability("9.8", "a damaged SQLite page in the cache: detected at open, moved "
                                "aside, rebuilt; the run recomputes")
def test_damaged_page_detected_at_open(tiny_model_dir, tmp_path, unique, reference):
    enc, _ = cached(tiny_model_dir, tmp_path / "c")
    _, db = _filled(enc, unique)
    _damage_page(db)
    again, rows = cached(tiny_model_dir, tmp_path / "c")
    with pytest.warns(UserWarning, match=r"is unreadable or damaged \(quick_check: .*\); moved "
                                         r"to vectors\.corrupt-"):
        got = again.encode(unique, pooling="cls")
    np.testing.assert_allclose(got, reference, atol=1e-5)
    assert sum(rows) == len(unique)
    assert len(list(db.parent.glob("vectors.corrupt-*.sqlite"))) == 1
    third, rows3 = cached(tiny_model_dir, tmp_path / "c")
    third.encode(unique, pooling="cls")
    assert rows3 == []  # the rebuilt file serves the next run


@pytest.mark.parametrize("step", [
    pytest.param("get", marks=pytest.mark.reliability(
        "9.8", "SQLite reports a damaged page while reading the cache: moved aside, recomputed")),
    pytest.param("put", marks=pytest.mark.reliability(
        "9.8", "SQLite reports a damaged page while writing the cache: moved aside, written "
               "afresh")),
])
def test_damage_found_while_reading_or_writing(tiny_model_dir, tmp_path, unique, monkeypatch,
                                               step):
    enc, _ = cached(tiny_model_dir, tmp_path / "c")
    ns, db = _filled(enc, unique)
    _damage_page(db)
    # damage that the check at open does not see (it happened later, or quick_check missed it)
    monkeypatch.setattr(cache_mod, "_check_file", lambda conn: None, raising=False)
    cache = EmbeddingCache(tmp_path / "c")
    vecs = np.arange(3 * enc.dim, dtype=np.float32).reshape(3, enc.dim)
    with pytest.warns(UserWarning, match="malformed.*moved to vectors.corrupt-"):
        if step == "get":
            assert cache.get(ns, unique) == (None, list(range(len(unique))))
        else:
            cache.put(ns, ["x", "y", "z"], vecs)
    cache.put(ns, ["x", "y", "z"], vecs)
    np.testing.assert_array_equal(cache.get(ns, ["y", "x", "z"])[0], vecs[[1, 0, 2]])


@pytest.mark.reliability("9.tb", "cache table with a foreign schema: moved aside with a warning, "
                                 "recomputed (no traceback)")
def test_foreign_table_is_moved_aside(tiny_model_dir, tmp_path, unique, reference):
    enc, rows = cached(tiny_model_dir, tmp_path / "c")
    _, db = db_of(enc)
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE vec (k TEXT PRIMARY KEY, v BLOB)")
        conn.execute("INSERT INTO vec VALUES ('a', x'00')")
    with pytest.warns(UserWarning, match=r"table vec has columns \['k', 'v'\], not \['key', "
                                         r"'dim', 'crc', 'data'\]\); moved to vectors.corrupt-"):
        got = enc.encode(unique, pooling="cls")
    np.testing.assert_allclose(got, reference, atol=1e-5)
    assert sum(rows) == len(unique)


def _put_raw(db: Path, text: str, vec: np.ndarray) -> None:
    """Store a row as a damaged or foreign writer would: with a correct CRC."""
    data = np.ascontiguousarray(vec, np.float32).tobytes()
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT OR REPLACE INTO vec VALUES (?, ?, ?, ?)",
                     (text_key(text), len(vec), zlib.crc32(data), data))


@pytest.mark.parametrize("rows_of_width", [
    pytest.param(1, marks=pytest.mark.reliability(
        "9.tb", "one cached vector of the wrong width (valid CRC): recomputed, no traceback")),
    pytest.param(40, marks=pytest.mark.reliability(
        "9.tb", "every cached vector of the wrong width (valid CRC): recomputed, not served")),
])
def test_wrong_width_rows_are_recomputed(tiny_model_dir, tmp_path, unique, reference,
                                         rows_of_width):
    enc, _ = cached(tiny_model_dir, tmp_path / "c")
    _, db = _filled(enc, unique, extra=0)
    for text in unique[:rows_of_width]:
        _put_raw(db, text, np.ones(16))
    again, rows = cached(tiny_model_dir, tmp_path / "c")
    with pytest.warns(UserWarning, match=rf"{rows_of_width} cached vector\(s\) not 32 wide; "
                                         "removed and recomputed"):
        got = again.encode(unique, pooling="cls")
    np.testing.assert_allclose(got, reference, atol=1e-5)
    assert sum(rows) == rows_of_width and again.cache.corrupt == rows_of_width


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.reliability("9.9", "a cached NaN/inf vector with a valid CRC: a miss, recomputed, "
                                "warned once")
def test_non_finite_cached_vector_is_recomputed(tiny_model_dir, tmp_path, unique, reference,
                                                bad):
    enc, _ = cached(tiny_model_dir, tmp_path / "c")
    _, db = _filled(enc, unique, extra=0)
    poisoned = reference[[3, 5]].copy()
    poisoned[:, 7] = bad
    _put_raw(db, unique[3], poisoned[0])
    _put_raw(db, unique[5], poisoned[1])
    again, rows = cached(tiny_model_dir, tmp_path / "c")
    with pytest.warns(UserWarning, match=r"2 cached vector\(s\) not finite \(NaN or inf\)") as w:
        got = again.encode(unique, pooling="cls")
        again.cache.put(*db_of(again)[:1], [unique[9]], poisoned[:1])  # never stored either
        again.encode(unique, pooling="cls")
    assert len([x for x in w if "not finite" in str(x.message)]) == 1  # once
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, reference, atol=1e-5)
    assert sum(rows) == 2


# -- cache folders that cannot be written -------------------------------------------------------

def _bench(tiny_model_dir, spec_file, *extra) -> list[str]:
    return ["bench", "--model", str(tiny_model_dir), "--tasks", str(spec_file), *extra]


@pytest.mark.reliability("9.tb", "a cache dir that cannot be created: one line naming the folder "
                                 "and --cache-dir / --no-cache")
def test_cache_dir_that_cannot_be_created(tiny_model_dir, spec_file, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    msg = cli_error(capsys, _bench(tiny_model_dir, spec_file, "--cache-dir", str(blocker / "c")))
    assert msg == (f"--cache-dir: cannot write the embedding cache in {blocker / 'c'} (Not a "
                   "directory); choose a writable folder (cache_dir) or turn the cache off "
                   "(--no-cache)")


def read_only(root: Path, monkeypatch) -> list[str]:
    """Make ``root`` read-only (as root, who writes anywhere, by refusing every open for
    writing under it); returns the SQLite files opened under it, which must be ``mode=ro``."""
    if os.geteuid() == 0:
        real_open = os.open

        def refuse_writes(path, flags, *args, **kwargs):
            if str(path).startswith(str(root)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", refuse_writes)
    else:
        for d in [root, *(p for p in root.rglob("*") if p.is_dir())]:
            d.chmod(0o555)
    opened: list[str] = []
    connect = sqlite3.connect

    def connect_read_only(database, *args, **kwargs):
        if str(root) in str(database):
            opened.append(str(database))
            assert kwargs.get("uri") and str(database).endswith("?mode=ro"), database
        return connect(database, *args, **kwargs)

    monkeypatch.setattr(cache_mod.sqlite3, "connect", connect_read_only)
    return opened


def _summary(out: str) -> str:
    return next(line for line in out.splitlines() if "unique sentences" in line).split(" in ")[0]


READ_ONLY_WARNING = ("the embedding cache {root} is read-only ({reason}): its vectors are "
                     "served, but new ones cannot be stored (they are computed again next time; "
                     "choose a writable cache folder to keep them)")


def read_only_warnings(recwarn, root: Path) -> list[str]:
    """The read-only warnings of the run so far (then forgotten), their reason made generic."""
    got = [re.sub(r"\((Read-only file system|Permission denied)\)", "(REASON)", str(w.message))
           for w in recwarn if "is read-only" in str(w.message)]
    recwarn.clear()
    assert got == [READ_ONLY_WARNING.format(root=root, reason="REASON")] * len(got)
    return got


@pytest.mark.reliability("9.tb", "a read-only, empty cache dir: the run goes on, computes, "
                                 "and says once that nothing can be stored")
def test_read_only_cache_dir(tiny_model_dir, spec_file, tmp_path, capsys, monkeypatch,
                             recwarn):
    root = tmp_path / "ro"
    root.mkdir()
    read_only(root, monkeypatch)
    assert main(_bench(tiny_model_dir, spec_file, "--cache-dir", str(root))) == 0
    out, err = capsys.readouterr()
    assert _summary(out) == "[68 unique sentences, 0 cached, 68 encoded"
    assert "error" not in err
    assert len(read_only_warnings(recwarn, root)) == 1
    assert list(root.iterdir()) == []


@pytest.mark.reliability("18.6", "a read-only shared cache serves pure hits without its lock "
                                 "file, and says once that it cannot store new vectors")
def test_read_only_cache_serves_hits_without_the_lock(tiny_model_dir, spec_file, tmp_path,
                                                      capsys, monkeypatch, recwarn):
    root = tmp_path / "shared"
    assert main(_bench(tiny_model_dir, spec_file, "--cache-dir", str(root))) == 0
    capsys.readouterr()
    (root / cache_mod.LOCK_NAME).unlink()  # a shared cache need not even hold the lock file
    before = sorted((p.name, p.stat().st_mtime_ns) for p in root.rglob("*"))
    opened = read_only(root, monkeypatch)
    assert main(_bench(tiny_model_dir, spec_file, "--cache-dir", str(root))) == 0
    out, err = capsys.readouterr()
    assert _summary(out) == "[68 unique sentences, 68 cached, 0 encoded"
    assert len(opened) == 1 and "error" not in err
    assert len(read_only_warnings(recwarn, root)) == 1
    # and a miss (another pooling) is computed, not stored; said once a run
    assert main(_bench(tiny_model_dir, spec_file, "--cache-dir", str(root), "--pooling",
                       "cls,last-avg")) == 0
    out2, err2 = capsys.readouterr()
    assert _summary(out2) == "[68 unique sentences, 0 cached, 68 encoded"  # (cached: in both)
    assert len(read_only_warnings(recwarn, root)) == 1 and "error" not in err2
    assert sorted((p.name, p.stat().st_mtime_ns) for p in root.rglob("*")) == before


def test_info_of_a_read_only_cache_still_lists(tmp_path, monkeypatch):
    c = EmbeddingCache(tmp_path)
    c.put(c.namespace({"model": "m"}), ["a"], np.ones((1, 2), np.float32))
    c.close()

    def no_lock(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(cache_mod.FileLock, "acquire", no_lock)
    (entry,) = EmbeddingCache(tmp_path).namespaces()
    assert entry["rows"] == 1 and entry["settings"] == {"model": "m"}


# -- cache clear --model ------------------------------------------------------------------------

def _two_models(tiny_model_dir, spec_file, tmp_path) -> tuple[str, str]:
    assert main(_bench(tiny_model_dir, spec_file, "--pooling", "cls,last-avg")) == 0
    other = EmbeddingCache()
    ident = "sha256:" + "e" * 64
    ns = other.namespace({"model": "other", "model_identity": ident + ";dtype=bfloat16",
                          "pooling": "cls"})
    other.put(ns, ["a"], np.ones((1, 2), np.float32))
    other.close()
    return "other", ident


def _models_left() -> list[str]:
    return sorted(e["settings"]["model"] for e in EmbeddingCache().namespaces())


@pytest.mark.parametrize("pattern", [
    pytest.param("e", marks=pytest.mark.reliability(
        "9.12", "cache clear --model e: a part of a name or hash matches nothing")),
    pytest.param("sha256:", marks=pytest.mark.reliability(
        "9.12", "cache clear --model with a prefix of every identity matches nothing")),
    pytest.param("tiny", marks=pytest.mark.reliability(
        "9.12", "cache clear --model with a part of a folder name matches nothing")),
])
def test_clear_matches_no_part(tiny_model_dir, spec_file, tmp_path, capsys, pattern):
    _two_models(tiny_model_dir, spec_file, tmp_path)
    capsys.readouterr()
    assert main(["cache", "clear", "--model", pattern]) == 0
    assert capsys.readouterr().out.startswith("removed 0 cache namespace(s)")
    assert _models_left() == sorted(["other", str(tiny_model_dir), str(tiny_model_dir)])


@pytest.mark.parametrize("pattern", ["", "  "])
@pytest.mark.reliability("9.12", "cache clear --model '' is refused (one line, exit 2)")
def test_clear_refuses_an_empty_model(tiny_model_dir, spec_file, tmp_path, capsys, pattern):
    _two_models(tiny_model_dir, spec_file, tmp_path)
    capsys.readouterr()
    assert cli_error(capsys, ["cache", "clear", "--model", pattern]) == (
        "--model: an empty model matches nothing; name a model (as given, its folder or its "
        "identity), or leave it out to clear everything")
    assert len(_models_left()) == 3


@pytest.mark.reliability("9.12", "cache clear --model matches the name, the folder or the "
                                 "identity exactly")
def test_clear_matches_name_folder_or_identity(tiny_model_dir, spec_file, tmp_path, capsys,
                                               monkeypatch):
    from embedkit.encoders.models import model_identity

    name, ident = _two_models(tiny_model_dir, spec_file, tmp_path)
    # the identity without its suffixes, and with them
    assert EmbeddingCache().clear(ident) == 1
    _two_models(tiny_model_dir, spec_file, tmp_path)
    assert EmbeddingCache().clear(ident + ";dtype=bfloat16") == 1
    # the folder by another spelling (relative), and by its identity
    monkeypatch.chdir(tiny_model_dir.parent)
    assert EmbeddingCache().clear(os.path.join(".", tiny_model_dir.name)) == 2
    _two_models(tiny_model_dir, spec_file, tmp_path)
    assert EmbeddingCache().clear(model_identity(str(tiny_model_dir))) == 2
    assert _models_left() == [name]
    capsys.readouterr()
    assert main(["cache", "clear"]) == 0  # without --model: everything
    assert capsys.readouterr().out.startswith("removed 1 cache namespace(s)")


# -- 18.6: any damaged cache entry is moved aside (warned) and rebuilt --------------------------

def _damage_entry(root: Path, kind: str) -> Path:
    """Damage one entry of the only namespace; returns the damaged path."""
    (ns,) = [d for d in (root / "embeddings").iterdir() if not d.name.startswith(".")]
    db = ns / "vectors.sqlite"
    target = {"db-folder": db, "db-dangling-link": db, "journal-folder": Path(f"{db}-journal"),
              "meta-folder": ns / "meta.json", "meta-garbage": ns / "meta.json",
              "namespace-file": ns, "lock-folder": root / cache_mod.LOCK_NAME}[kind]
    if target.is_dir() and not target.is_symlink():
        import shutil

        shutil.rmtree(target)
    elif os.path.lexists(target):
        target.unlink()
    if kind in ("db-folder", "journal-folder", "meta-folder", "lock-folder"):
        (target / "inside").mkdir(parents=True)
    elif kind == "db-dangling-link":
        target.symlink_to(root / "no-such-file")
    else:
        target.write_text("{ not json", encoding="utf-8")
    return target


@pytest.mark.parametrize("kind, kept", [
    pytest.param("db-folder", False, marks=pytest.mark.reliability(
        "18.6", "vectors.sqlite is a folder: moved aside with a warning, rebuilt")),
    pytest.param("db-dangling-link", False, marks=pytest.mark.reliability(
        "18.6", "vectors.sqlite is a dangling link: moved aside with a warning, rebuilt")),
    pytest.param("journal-folder", False, marks=pytest.mark.reliability(
        "18.6", "the SQLite journal is a folder: moved aside with its file, rebuilt")),
    pytest.param("meta-folder", True, marks=pytest.mark.reliability(
        "18.6", "meta.json is a folder: moved aside and rewritten, the vectors kept")),
    pytest.param("meta-garbage", True, marks=pytest.mark.reliability(
        "18.6", "meta.json is not JSON: moved aside and rewritten, the vectors kept")),
    pytest.param("namespace-file", False, marks=pytest.mark.reliability(
        "18.6", "a namespace that is a file: moved aside with a warning, rebuilt")),
    pytest.param("lock-folder", True, marks=pytest.mark.reliability(
        "18.6", "the cache's lock file is a folder: moved aside with a warning, the vectors "
                "kept")),
])
def test_damaged_entry_is_moved_aside_and_rebuilt(tiny_model_dir, spec_file, capsys, recwarn,
                                                  kind, kept):
    root = EmbeddingCache().root
    assert main(_bench(tiny_model_dir, spec_file)) == 0
    first = capsys.readouterr().out.splitlines()[:3]
    damaged = _damage_entry(root, kind)
    recwarn.clear()
    assert main(_bench(tiny_model_dir, spec_file)) == 0
    out, err = capsys.readouterr()
    assert "error" not in err and out.splitlines()[:3] == first  # the same scores
    assert _summary(out) == ("[68 unique sentences, 68 cached, 0 encoded" if kept
                             else "[68 unique sentences, 0 cached, 68 encoded")
    moved = [str(w.message) for w in recwarn if "moved to" in str(w.message)]
    named = damaged.with_name("vectors.sqlite") if kind == "journal-folder" else damaged
    assert len(moved) == 1 and moved[0].startswith(f"embedding cache {named} ")
    aside = moved[0].split("moved to ")[1].split(" and starting afresh")[0]
    assert os.path.lexists(named.with_name(aside))
    if kind == "journal-folder":
        assert "(its journal vectors.sqlite-journal is a folder, not a file)" in moved[0]
        assert (named.with_name(aside + "-journal") / "inside").is_dir()
    assert main(_bench(tiny_model_dir, spec_file)) == 0  # rebuilt: the next run is all hits
    assert _summary(capsys.readouterr().out) == "[68 unique sentences, 68 cached, 0 encoded"
