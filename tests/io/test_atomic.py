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
