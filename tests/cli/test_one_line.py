"""Issue 18, "one line, never a traceback": a full disk in any writing command and
``--threads`` beyond the cores each end in one ``embedkit: error:`` line (``--revision`` on a
local folder: tests/encoders/test_models.py; a prompt that fills the max length:
tests/encoders/test_prompts.py).

A full disk is injected where each library raises it on a real full device (checked on a 1 MB
tmpfs): pyarrow's ``OSError`` errno 28 from ``pq.write_table``, FAISS's ``RuntimeError`` "write
error in PATH: N != M (No space left on device)", Python's ``OSError`` from a file write.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from embedkit.cli.main import main
from tests.conftest import cli_error, source_sentences

pytestmark = pytest.mark.filterwarnings("ignore::embedkit.postprocess.RankDeficientWarning")


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(dict.fromkeys(source_sentences())) + "\n", encoding="utf-8")
    return path


def _no_space(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space "
                                "left on device")


def _faiss_full(index, path, *_args):
    Path(path).write_bytes(b"\0" * 1000)  # what fitted before the device filled
    raise RuntimeError("Error in void faiss::write_index(const Index*, IOWriter*, int) at "
                       "index_write.cpp:499: Error: 'ret == (size * 4)' failed: write error in "
                       f"{path}: 1000 != 4000 (No space left on device)")


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_encode_on_a_full_disk(tmp_path, capsys, tiny_model_dir, corpus, monkeypatch):
    import pyarrow.parquet as pq

    monkeypatch.setattr(pq, "write_table", _no_space)
    out = tmp_path / "emb"
    msg = cli_error(capsys, before=None, argv=["encode", "--model", str(tiny_model_dir), "--pooling", "cls",
                              "--corpus", str(corpus), "--out", str(out), "--no-cache"])
    assert msg.startswith(f"no space left on device writing {out}/shard-00000.parquet (")
    assert msg.endswith(" free); free space or choose another --out")
    manifest = out / "manifest.json"  # nothing that looks complete
    assert not manifest.exists() or not json.loads(manifest.read_text())["complete"]
    assert not list(out.glob("*.parquet")) and _leftovers(out) == []


@pytest.fixture
def faiss_full(monkeypatch):
    import faiss

    monkeypatch.setattr(faiss, "write_index", _faiss_full)


def test_index_build_on_a_full_disk(tmp_path, capsys, tiny_model_dir, corpus, faiss_full):
    out = tmp_path / "idx"
    msg = cli_error(capsys, before=None, argv=["index", "build", "--model", str(tiny_model_dir), "--pooling",
                              "cls", "--corpus", str(corpus), "--out", str(out), "--no-cache"])
    # the bytes written before the disk filled, plus what FAISS's last write lacked
    assert msg.startswith(f"no space left on device writing {out} (needs at least ")
    assert msg.endswith(" free); free space or choose another --out")
    assert not out.exists() and _leftovers(tmp_path) == []


def test_index_add_on_a_full_disk_keeps_the_index(tmp_path, capsys, tiny_model_dir, corpus,
                                                  monkeypatch):
    import faiss

    out = tmp_path / "idx"
    assert main(["index", "build", "--model", str(tiny_model_dir), "--pooling", "cls",
                 "--corpus", str(corpus), "--out", str(out), "--no-cache"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    more = tmp_path / "more.txt"
    more.write_text("一个新的句子。\n", encoding="utf-8")
    capsys.readouterr()
    monkeypatch.setattr(faiss, "write_index", _faiss_full)
    msg = cli_error(capsys, before=None, argv=["index", "add", "--index", str(out), "--corpus", str(more),
                              "--no-cache"])
    assert msg.startswith(f"no space left on device writing {out} (")
    assert msg.endswith("; free space there or write elsewhere")  # --index is no output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("name,quota", [("w.safetensors", False), ("w.npz", False),
                                        ("w.safetensors", True)])
def test_whiten_on_a_full_disk(tmp_path, capsys, tiny_model_dir, corpus, monkeypatch, name,
                               quota):
    code = errno.EDQUOT if quota else errno.ENOSPC
    real_open = open

    def full_open(file, mode="r", *args, **kwargs):  # a file written under tmp_path fails
        fh = real_open(file, mode, *args, **kwargs)
        if "w" in mode and str(file).startswith(str(tmp_path)) and "b" in mode:
            fh.close()
            raise OSError(code, os.strerror(code))
        return fh

    monkeypatch.setattr("builtins.open", full_open)
    monkeypatch.setattr(Path, "write_bytes", lambda self, data: _raise(code))
    out = tmp_path / name
    msg = cli_error(capsys, before=None, argv=["whiten", "--model", str(tiny_model_dir), "--pooling", "cls",
                              "--fit-on", str(corpus), "--out", str(out), "--no-cache"])
    what = "disk quota exceeded" if quota else "no space left on device"
    assert msg.startswith(f"{what} writing {out} (")
    assert msg.endswith("; free space or choose another --out")
    assert not out.exists() and _leftovers(tmp_path) == []


def _raise(code: int):
    raise OSError(code, os.strerror(code))


def test_a_full_disk_outside_the_atomic_writers(tmp_path, capsys, tiny_model_dir, corpus,
                                                monkeypatch):
    """An ENOSPC no atomic writer saw (a library's own file) is one line too."""
    import embedkit.runs.encode as encode  # the command imports it when it runs

    def failing(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "x"))

    monkeypatch.setattr(encode, "run_encode", failing)
    msg = cli_error(capsys, before=None, argv=["encode", "--model", str(tiny_model_dir), "--corpus", str(corpus),
                              "--out", str(tmp_path / "emb"), "--no-cache"])
    assert msg.startswith(f"no space left on device writing {tmp_path / 'x'} (")
    assert msg.endswith("; free space there or write elsewhere")


# -- --threads against the cores this process may use -----------------------------------------

@pytest.mark.parametrize("argv", [
    ["bench", "--threads", "100000"],
    ["index", "build", "--corpus", "c.txt", "--out", "o", "--threads", "100000"],
])
def test_threads_far_above_the_cores_are_refused(capsys, monkeypatch, argv):
    """Refused at parsing: nothing is loaded, libgomp never sees the count."""
    import embedkit.cli.common as common

    monkeypatch.setattr(common, "available_cores", lambda: 2)
    assert cli_error(capsys, before=None, argv=argv) == (
        "argument --threads: 100000 threads for the 2 core(s) this process may use; give at "
        f"most 2 (more threads than cores only wait on each other) (see: embedkit "
        f"{' '.join(argv[:2 if argv[0] != 'bench' else 1])} --help)")


def test_threads_a_little_above_the_cores_are_capped(capsys, monkeypatch):
    import embedkit.cli.common as common
    from embedkit.cli.main import build_parser

    monkeypatch.setattr(common, "available_cores", lambda: 2)
    parser = build_parser()
    assert parser.parse_args(["bench", "--threads", "2"]).threads == 2
    assert capsys.readouterr().err == ""
    assert parser.parse_args(["bench", "--threads", "8"]).threads == 2
    assert capsys.readouterr().err == ("embedkit: notice: --threads 8 is more than the 2 "
                                       "core(s) this process may use; using 2\n")
    assert "9 threads for the 2 core(s)" in cli_error(capsys, before=None, argv=["bench", "--threads", "9"])
    assert "must be at least 1, not 0" in cli_error(capsys, before=None, argv=["bench", "--threads", "0"])
