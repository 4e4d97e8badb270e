"""Reliability of index folders (issue 9): two adds at once, hand-edited index.json, kills while
a folder is replaced, damaged or mistyped files, empty queries, permissions.

Most tests use a tiny deterministic encoder (a vector per text from its hash), so a folder is
built and grown in milliseconds; the command-line ones use the tiny BERT of conftest.py."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest

from embedkit.cli.main import main
from embedkit.errors import ConfigError
from embedkit.io import atomic
from embedkit.io.atomic import FolderLockedError, folder_lock
from embedkit.io.seal import value_checksums
from embedkit.retrieval.folder import IndexSearcher, add_to_index, build_index
from embedkit.retrieval.index import EmbeddingIndex
from tests.conftest import cli_error
from tests.faults import SimulatedKill, kill_at

BASE = [f"基础句子{i}" for i in range(12)]
BATCH_A = [f"第一批{i}" for i in range(5)]
BATCH_B = [f"第二批{i}" for i in range(7)]


class HashEncoder:
    """A vector per text from its sha256; ``gate`` is called at each encode (to line up
    concurrent calls)."""

    name, identity, default_pooling, dim = "hash-encoder", "hash-encoder@1", "cls", 8

    def __init__(self, gate=None):
        self.gate = gate

    def model_max_length(self) -> int:
        return 512

    def describe(self) -> dict:
        return {"name": self.name, "identity": self.identity}

    def encode(self, sentences, pooling=None, *, max_length=64):
        if self.gate is not None:
            self.gate()
        rows = [np.random.default_rng(int(hashlib.sha256(s.encode()).hexdigest()[:12], 16))
                .standard_normal(self.dim) for s in sentences]
        return np.asarray(rows, np.float32).reshape(len(sentences), self.dim)

    def encode_multi(self, sentences, poolings, *, max_length=64):
        return {str(p): self.encode(sentences, p, max_length=max_length) for p in poolings}


@pytest.fixture(autouse=True)
def _restore_logging():
    """The command line points the embedkit logger at this test's captured stderr."""
    log = logging.getLogger("embedkit")
    saved = (log.handlers[:], log.level, log.propagate)
    yield
    log.handlers[:], log.level, log.propagate = saved


@pytest.fixture
def index_dir(tmp_path) -> Path:
    out = tmp_path / "idx"
    build_index(out, BASE, HashEncoder(), pooling="cls", post="pca:k=4")
    return out


def texts_of(folder: Path) -> list[str]:
    return EmbeddingIndex.load(folder).texts


def beside(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir())


def edit_meta(folder: Path, edit, *, keep_checksums: bool = True) -> None:
    path = folder / "index.json"
    meta = json.loads(path.read_text(encoding="utf-8"))
    edit(meta)
    if not keep_checksums:
        meta.pop("values_sha256", None)  # a folder saved before checksums existed
    path.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")


# --------------------------------------------------------------------------------------------
# 9.2: two adds at once


@pytest.mark.reliability("9.2", "two index add on one folder at once (threads racing): both "
                                "batches land, none is lost")
def test_two_adds_at_once_lose_nothing(index_dir):
    arrived: list[int] = []
    cond = threading.Condition()

    def gate():  # each add waits (1 s at most) until the other one is encoding too
        with cond:
            arrived.append(1)
            cond.notify_all()
            cond.wait_for(lambda: len(arrived) >= 2, timeout=1.0)

    enc = HashEncoder(gate)
    results, errors = {}, []

    def add(name, texts):
        try:
            results[name] = add_to_index(index_dir, texts, enc)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=add, args=(n, t))
               for n, t in (("a", BATCH_A), ("b", BATCH_B))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert sorted(texts_of(index_dir)) == sorted(BASE + BATCH_A + BATCH_B)
    assert sorted(r["added"] for r in results.values()) == [5, 7]
    assert max(r["ntotal"] for r in results.values()) == 24
    assert beside(index_dir) == ["idx"]  # no lock file or temporary folder left


@pytest.mark.reliability("9.2", "index add while another process writes the folder: waits "
                                "--lock-timeout, then one clear line; the folder is unchanged")
def test_second_writer_fails_clearly(index_dir, tmp_path, capsys):
    corpus = tmp_path / "more.txt"
    corpus.write_text("\n".join(BATCH_A) + "\n", encoding="utf-8")
    held, done = threading.Event(), threading.Event()

    def other_writer():
        with folder_lock(index_dir):
            held.set()
            done.wait(10)

    t = threading.Thread(target=other_writer)
    t.start()
    try:
        assert held.wait(5)
        with pytest.raises(FolderLockedError, match="being written by another process"):
            add_to_index(index_dir, BATCH_A, HashEncoder(), lock_timeout=0.1)
        capsys.readouterr()  # the library call's own "waiting" notice, if a handler is set
        msg = cli_error(capsys, ["index", "add", "--index", str(index_dir), "--corpus",
                                 str(corpus), "--lock-timeout", "0.2"], before=(
            f"embedkit: index folder {index_dir} is being written by another process; "
            "waiting for it",))
    finally:
        done.set()
        t.join(10)
    assert msg == (f"index folder {index_dir} is being written by another process (it holds "
                   f"{index_dir.parent / '.idx.lock'}); waited 0.2 s: try again when that one "
                   "has finished (or wait longer: --lock-timeout SECONDS)")
    assert texts_of(index_dir) == BASE


def test_reader_during_a_replacement_reads_one_version(index_dir, monkeypatch):
    """A folder replaced between two of a reader's files is read again, not called damaged."""
    from embedkit.retrieval import persistence

    real, calls = persistence._read_faiss, []

    def read_faiss(path, *lists):
        calls.append(path)
        if len(calls) == 1:  # index.json already read: an add replaces the folder now
            t = threading.Thread(target=add_to_index, args=(index_dir, BATCH_A, HashEncoder()))
            t.start()
            t.join(30)
        return real(path, *lists)

    monkeypatch.setattr(persistence, "_read_faiss", read_faiss)
    assert EmbeddingIndex.load(index_dir).texts == BASE + BATCH_A
    assert len(calls) == 3  # the reader, the add reading the folder, the reader again


# --------------------------------------------------------------------------------------------
# 9.4: index.json checksummed


@pytest.mark.parametrize("key,value", [
    pytest.param("max_length", 32, marks=pytest.mark.reliability(
        "9.4", "hand edit of index.json recipe.max_length: search and add refused, naming it")),
    pytest.param("pooling", "last-avg", marks=pytest.mark.reliability(
        "9.4", "hand edit of index.json recipe.pooling: search and add refused, naming it")),
])
def test_hand_edited_recipe_refused(index_dir, key, value):
    edit_meta(index_dir, lambda m: m["recipe"].__setitem__(key, value))
    before = (index_dir / "texts.jsonl").read_bytes()
    expected = (f"{index_dir / 'index.json'}: edited since the index was saved (changed "
                f"recipe.{key}): its values say how the vectors were made and how queries are "
                "encoded, so they cannot change afterwards; put the file back as it was or "
                "rebuild the index with the new settings")
    with pytest.raises(ConfigError) as err:
        IndexSearcher(index_dir, HashEncoder())
    assert str(err.value) == expected
    with pytest.raises(ConfigError) as err:
        add_to_index(index_dir, BATCH_A, HashEncoder())
    assert str(err.value) == expected
    assert (index_dir / "texts.jsonl").read_bytes() == before  # nothing appended


@pytest.mark.reliability("9.4", "index.json of an older version (no checksums) still loads, "
                                "with a warning; an add then writes the checksums")
def test_folder_without_checksums_loads_with_a_warning(index_dir):
    edit_meta(index_dir, lambda m: None, keep_checksums=False)
    with pytest.warns(UserWarning, match="without checksums of its values"):
        hits = IndexSearcher(index_dir, HashEncoder()).search(BASE[3], k=1)
    assert hits[0]["hits"][0]["text"] == BASE[3]
    with pytest.warns(UserWarning, match="without checksums"):
        add_to_index(index_dir, BATCH_A, HashEncoder())
    meta = json.loads((index_dir / "index.json").read_text(encoding="utf-8"))
    assert meta["values_sha256"] == value_checksums(meta)
    assert "recipe.pooling" in meta["values_sha256"]


# --------------------------------------------------------------------------------------------
# 9.5: kills while a folder is replaced


@pytest.fixture(params=["exchange", "two renames"])
def swap(request, monkeypatch):
    if request.param == "two renames":
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    return request.param


STEPS = ["os.replace", "embedkit.io.atomic._exchange", "shutil.rmtree"]


def kill_points(tmp_path: Path, pristine: Path, write) -> list[tuple[str, int, bool]]:
    """Every (step, call, after) of ``write(copy of pristine)`` run without a kill."""
    counts = {}
    for step in STEPS:
        probe = tmp_path / f"probe-{step}" / "idx"
        shutil.copytree(pristine, probe)
        with kill_at(step, call=10**9) as hits:
            write(probe)
        counts[step] = hits.calls
    return [(s, n, after) for s in STEPS for n in range(1, counts[s] + 1)
            for after in (False, True)]


def check_every_kill_point(tmp_path, pristine: Path, write, old: list[str], new: list[str]):
    points = kill_points(tmp_path, pristine, write)
    assert any(s != "shutil.rmtree" for s, _, _ in points)
    for i, (step, n, after) in enumerate(points):
        folder = tmp_path / f"kill{i}" / "idx"
        shutil.copytree(pristine, folder)
        with pytest.raises(SimulatedKill), kill_at(step, call=n, after=after):
            write(folder)
        where = f"{step} call {n} {'after' if after else 'before'}"
        assert texts_of(folder) in (old, new), where  # the next reader: old or new, complete
        assert beside(folder) == ["idx"], where  # leftovers put back or removed
        write(folder)  # the next write works
        assert texts_of(folder) == new, where


@pytest.mark.reliability("9.5", "index add killed at each step of replacing the folder "
                                "(both swap methods): old or new index, next add works")
def test_index_add_killed_at_every_step(index_dir, tmp_path, swap):
    check_every_kill_point(tmp_path, index_dir,
                           lambda f: add_to_index(f, BATCH_A, HashEncoder()),
                           BASE, BASE + BATCH_A)


@pytest.mark.reliability("9.5", "index build over an existing index killed at each step of "
                                "replacing it (both swap methods): old or new index")
def test_index_build_over_existing_killed_at_every_step(index_dir, tmp_path, swap):
    check_every_kill_point(tmp_path, index_dir,
                           lambda f: build_index(f, BATCH_B, HashEncoder(), pooling="cls",
                                                 post="pca:k=4"),
                           BASE, BATCH_B)


# --------------------------------------------------------------------------------------------
# 9.14: permissions


@pytest.mark.reliability("9.14", "every file of an index folder (post.safetensors included) "
                                 "gets the umask's permissions")
def test_index_folder_respects_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        out = tmp_path / "idx"
        build_index(out, BASE, HashEncoder(), pooling="cls", post="pca:k=4")
        add_to_index(out, BATCH_A, HashEncoder())
    finally:
        os.umask(old)
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in [out, *out.iterdir()]}
    assert modes == {"idx": oct(0o750), "index.faiss": oct(0o640), "texts.jsonl": oct(0o640),
                     "index.json": oct(0o640), "post.safetensors": oct(0o640)}


# --------------------------------------------------------------------------------------------
# 9.tb and 9.msg: bad input is one line


@pytest.mark.parametrize("where,key,value,expected", [
    pytest.param("recipe", "max_length", "abc", "must be an integer, not 'abc'", id="max_length",
                 marks=pytest.mark.reliability("9.tb", "index.json recipe.max_length not an "
                                                       "integer: one line naming file and key")),
    pytest.param("recipe", "corpus", 5, "must be a JSON list, not 5", id="corpus",
                 marks=pytest.mark.reliability("9.tb", "index.json recipe.corpus not a list: "
                                                       "one line naming file and key")),
    pytest.param(None, "dim", "x", "must be an integer, not 'x'", id="dim",
                 marks=pytest.mark.reliability("9.tb", "index.json dim not an integer: one "
                                                       "line naming file and key")),
    pytest.param(None, "build_seconds", "fast", "must be a number, not 'fast'", id="build_seconds",
                 marks=pytest.mark.reliability("9.tb", "index.json build_seconds not a "
                                                       "number: one line naming file and key")),
])
def test_index_json_wrong_types(index_dir, capsys, where, key, value, expected):
    def edit(meta):
        (meta["recipe"] if where else meta)[key] = value

    edit_meta(index_dir, edit, keep_checksums=False)
    name = f"recipe.{key}" if where else key
    # an older folder (no checksums) warns before its recipe is read
    with pytest.warns(UserWarning, match="without checksums") if where else nullcontext():
        msg = cli_error(capsys, ["index", "search", "--index", str(index_dir), "--query", "x"])
    assert msg == f"{index_dir / 'index.json'}: key '{name}' {expected}; rebuild the index"


@pytest.mark.reliability("9.tb", "texts.jsonl with invalid UTF-8: one line naming the file and "
                                 "the line")
def test_texts_jsonl_invalid_utf8(index_dir, capsys):
    from embedkit.provenance import sha256_file

    texts = index_dir / "texts.jsonl"
    lines = texts.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace("基".encode(), b"\xff\xfe", 1)
    texts.write_bytes(b"".join(lines))
    edit_meta(index_dir, lambda m: m["files"].__setitem__("texts.jsonl", sha256_file(texts)),
              keep_checksums=False)
    with pytest.warns(UserWarning, match="without checksums"):
        msg = cli_error(capsys, ["index", "search", "--index", str(index_dir), "--query", "x"])
    assert msg == f"{texts}:3: invalid UTF-8 at byte 19 of the line; rebuild the index"


@pytest.fixture(scope="module")
def rx_index(rx_model_dir, tmp_path_factory, rx_texts):
    """An index folder built by the command line with the tiny BERT."""
    folder = tmp_path_factory.mktemp("rx-index")
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(rx_texts) + "\n", encoding="utf-8")
    out = folder / "idx"
    assert main(["index", "build", "--model", str(rx_model_dir), "--pooling", "cls", "--corpus",
                 str(corpus), "--out", str(out), "--no-cache"]) == 0
    return out


@pytest.mark.reliability("9.msg", "index search with an empty query: refused in one line, no "
                                  "hits")
def test_empty_query_refused(rx_index, rx_encoder, capsys):
    capsys.readouterr()
    for query in ("", "   "):
        msg = cli_error(capsys, ["index", "search", "--index", str(rx_index), "--query", query,
                                 "--no-cache"])
        assert msg == "--query is empty; give text to search for"
    with pytest.raises(ConfigError, match="query 2 of 2 is empty"):
        IndexSearcher(rx_index, rx_encoder).search(["a", " "])


@pytest.mark.reliability("9.msg", "index search with a queries file of blank lines: an error "
                                  "naming the file, not exit 0 and no output")
def test_blank_queries_file(rx_index, tmp_path, capsys):
    blank = tmp_path / "q.txt"
    blank.write_text("\n  \n\n", encoding="utf-8")
    capsys.readouterr()
    msg = cli_error(capsys, ["index", "search", "--index", str(rx_index), "--queries",
                             str(blank), "--no-cache"])
    assert msg == (f"{blank}: no queries: the file is empty or holds only blank lines (one "
                   "query a line)")


@pytest.mark.reliability("9.tb", "index search --output a folder: one line, before searching")
def test_search_output_is_a_folder(rx_index, tmp_path, capsys):
    capsys.readouterr()
    msg = cli_error(capsys, ["index", "search", "--index", str(rx_index), "--query", "今天",
                             "--output", str(tmp_path), "--no-cache"])
    assert msg == f"--output: {tmp_path} is a folder; give a file path"
