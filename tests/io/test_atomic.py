"""Atomic writes leave either the old file or the new one, and no temporary files."""

from __future__ import annotations

import json

import pytest

from embedkit.io.atomic import (
    atomic_dir,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)


def test_write_json_leaves_no_temp_file(tmp_path):
    target = tmp_path / "sub" / "r.json"
    atomic_write_json(target, {"名": "值", "n": [1, 2]})
    assert json.loads(target.read_text(encoding="utf-8")) == {"名": "值", "n": [1, 2]}
    assert "值" in target.read_text(encoding="utf-8")  # non-ASCII kept readable
    assert target.read_text(encoding="utf-8").endswith("}\n")
    assert [p.name for p in target.parent.iterdir()] == ["r.json"]
    atomic_write_json(target, {"n": 3})  # replaces
    assert json.loads(target.read_text()) == {"n": 3}
    assert [p.name for p in target.parent.iterdir()] == ["r.json"]


def test_bytes_and_text(tmp_path):
    atomic_write_bytes(tmp_path / "b", b"\x00\xff")
    atomic_write_text(tmp_path / "t", "一二三")
    assert (tmp_path / "b").read_bytes() == b"\x00\xff"
    assert (tmp_path / "t").read_bytes() == "一二三".encode()


def test_exception_inside_atomic_path_keeps_the_old_file(tmp_path):
    target = tmp_path / "data.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_path(target, suffix=".npz") as tmp:
            assert tmp.parent == tmp_path and tmp.name.startswith(".data.bin.")
            assert tmp.name.endswith(".npz.tmp")
            tmp.write_bytes(b"half-writ")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]


def test_keyboard_interrupt_also_cleans_up(tmp_path):
    target = tmp_path / "x.json"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("{")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as d:
        (d / "a.txt").write_text("1")
    assert (target / "a.txt").read_text() == "1"
    with atomic_dir(target) as d:  # replaces the whole folder
        (d / "b.txt").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    with pytest.raises(ValueError):
        with atomic_dir(target) as d:
            (d / "c.txt").write_text("3")
            raise ValueError
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


# -- a full device (issue 18): a typed error naming the path, and no temporary file left -------

def _enospc(*_args, **_kwargs):
    import errno
    import os

    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_in_a_file_write_names_the_path_and_the_size(tmp_path, monkeypatch):
    from pathlib import Path

    from embedkit.io.atomic import DiskFullError

    target = tmp_path / "m.bin"
    target.write_bytes(b"old")
    monkeypatch.setattr(Path, "write_bytes", _enospc)
    with pytest.raises(DiskFullError) as err:
        atomic_write_bytes(target, b"x" * 3_200_000)
    assert err.value.path == target and err.value.needed == 3_200_000
    assert str(err.value).startswith(f"no space left on device writing {target} (needs ~3.2 MB, ")
    assert str(err.value).endswith(" free); free space there or write elsewhere")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["m.bin"]


def test_full_disk_in_a_folder_write_removes_the_temporary_folder(tmp_path):
    import errno

    from embedkit.io.atomic import DiskFullError

    target = tmp_path / "idx"
    with pytest.raises(DiskFullError) as err:
        with atomic_dir(target) as d:
            (d / "a.bin").write_bytes(b"\0" * 2500)
            raise RuntimeError("write error in x: 100 != 5000 (No space left on device)")
    assert err.value.path == target and err.value.written == 2500
    assert err.value.needed == 2500 + 4900 and err.value.at_least
    assert "(needs at least 7.4 kB, " in str(err.value)
    assert isinstance(err.value.__cause__, RuntimeError)
    assert list(tmp_path.iterdir()) == []
    # an inner writer's error (naming its file) passes through the folder unchanged
    with pytest.raises(DiskFullError) as err:
        with atomic_dir(target) as d:
            with atomic_path(d / "f.bin") as tmp:
                raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert err.value.path.name == "f.bin" and list(tmp_path.iterdir()) == []


def test_what_counts_as_a_full_disk():
    import errno
    import sqlite3

    from embedkit.io.atomic import disk_full_error, is_disk_full

    assert is_disk_full(OSError(errno.ENOSPC, "x"))
    assert is_disk_full(OSError(errno.EDQUOT, "x"))
    assert is_disk_full(sqlite3.OperationalError("database or disk is full"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not is_disk_full(ValueError("full of surprises"))
    wrapped = ValueError("wrapped")
    wrapped.__cause__ = OSError(errno.ENOSPC, "x")
    assert is_disk_full(wrapped)
    quota = disk_full_error(OSError(errno.EDQUOT, "Disk quota exceeded", "/nonexistent/q/f"))
    assert str(quota).startswith("disk quota exceeded writing /nonexistent/q/f (")
    assert str(disk_full_error(sqlite3.OperationalError("database or disk is full"))) == (
        "no space left on device; free space and run again")
