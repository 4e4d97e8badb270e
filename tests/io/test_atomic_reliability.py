"""Reliability of atomic writes (issue 9): a kill at every step of replacing a folder leaves the
old or the new folder; leftovers are put back or removed; folder locks between processes and
threads; files get the umask's permissions; an output path that is a folder is one line."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from embedkit.errors import EmbedkitError
from embedkit.io import atomic
from embedkit.io.atomic import (
    FolderLockedError,
    atomic_dir,
    atomic_path,
    atomic_write_text,
    folder_lock,
    lock_file,
    recover_dir,
)
from tests.faults import SimulatedKill, kill_at

OLD = {"a.txt": "old", "sub/x.txt": "old x"}
NEW = {"b.txt": "new", "sub/y.txt": "new y", "c.txt": "new c"}


def contents(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def replace(target: Path, files: dict[str, str]) -> None:
    with atomic_dir(target) as tmp:
        write(tmp, files)


@pytest.fixture(params=[
    pytest.param("exchange", marks=pytest.mark.reliability(
        "9.5", "kill at each step of replacing a folder (one-step exchange): old or new folder "
               "at every kill point, leftovers cleaned")),
    pytest.param("two renames", marks=pytest.mark.reliability(
        "9.5", "kill at each step of replacing a folder (two-rename fallback): old or new "
               "folder at every kill point after recovery, leftovers cleaned")),
])
def swap_mode(request, monkeypatch):
    if request.param == "two renames":
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    elif atomic._renameat2() is None:  # pragma: no cover - not Linux
        pytest.skip("renameat2 is Linux only")
    return request.param


STEPS = ["os.replace", "os.rename", "embedkit.io.atomic._exchange", "shutil.rmtree"]


def count_calls(tmp_path: Path) -> dict[str, int]:
    target = tmp_path / "probe" / "model"
    target.parent.mkdir()
    replace(target, OLD)
    counts = {}
    for step in STEPS:
        with kill_at(step, call=10**9) as hits:
            replace(target, NEW)
        counts[step] = hits.calls
    return counts


def test_kill_at_every_step_of_a_folder_replacement(tmp_path, swap_mode):
    counts = count_calls(tmp_path)
    assert counts["os.replace"] + counts["embedkit.io.atomic._exchange"] >= 1
    points = [(s, n, after) for s in STEPS for n in range(1, counts[s] + 1)
              for after in (False, True)]
    assert points
    for i, (step, n, after) in enumerate(points):
        target = tmp_path / f"run{i}" / "model"
        target.parent.mkdir()
        replace(target, OLD)
        with pytest.raises(SimulatedKill), kill_at(step, call=n, after=after):
            replace(target, NEW)
        where = f"{step} call {n} {'after' if after else 'before'} ({swap_mode})"
        if target.exists():  # at the kill: the old or the new folder, complete
            assert contents(target) in (OLD, NEW), where
        else:  # only between the two renames of the fallback: the old one aside, complete
            assert swap_mode == "two renames", where
            (aside,) = [p for p in target.parent.iterdir() if p.name.endswith(".old")]
            assert contents(aside) == OLD, where
        recover_dir(target)  # what a reader does
        assert contents(target) in (OLD, NEW), where
        assert [p.name for p in target.parent.iterdir()] == ["model"], where
        replace(target, NEW)  # and the next write works and leaves nothing else
        assert contents(target) == NEW, where
        assert [p.name for p in target.parent.iterdir()] == ["model"], where


@pytest.mark.reliability("9.5", "leftover temporary folders of a killed write (checkpoints "
                                "up to 290 MB) are removed by the next write of the folder")
def test_next_write_removes_leftovers(tmp_path):
    target = tmp_path / "ckpt"
    replace(target, OLD)
    with pytest.raises(SimulatedKill), kill_at("embedkit.io.atomic._finish_tree"):
        replace(target, NEW)  # killed while the new folder was being written
    (left,) = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert left.name.startswith(".ckpt.") and contents(left) == NEW
    assert contents(target) == OLD
    # a folder whose name starts the same is not ours to clean
    other = tmp_path / ".ckpt.v2.abcdefgh.tmp"
    other.mkdir()
    replace(target, {"d.txt": "newer"})
    assert contents(target) == {"d.txt": "newer"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ckpt.v2.abcdefgh.tmp", "ckpt"]


@pytest.mark.reliability("9.5", "a folder left missing by an earlier version's killed swap "
                                "(.NAME.X.old/x) is put back on the next read or write")
def test_earlier_layout_put_back(tmp_path):
    target = tmp_path / "idx"
    aside = tmp_path / ".idx.k2j4h1x0.old" / "x"
    aside.mkdir(parents=True)
    write(aside, OLD)
    (tmp_path / ".idx.q9w8e7r6.tmp").mkdir()  # the new folder, maybe incomplete
    recover_dir(target)
    assert contents(target) == OLD
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]


def test_recovery_leaves_a_live_write_alone(tmp_path):
    target = tmp_path / "idx"
    replace(target, OLD)
    inside, done = threading.Event(), threading.Event()

    def writer():
        with atomic_dir(target) as tmp:
            write(tmp, NEW)
            inside.set()
            done.wait(5)

    t = threading.Thread(target=writer)
    t.start()
    assert inside.wait(5)
    recover_dir(target)  # from another thread: the lock is held, nothing is removed
    assert any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
    done.set()
    t.join(5)
    assert contents(target) == NEW
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]


_HOLDER = textwrap.dedent("""
    import sys, time
    from embedkit.io.atomic import folder_lock
    with folder_lock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(60)
""")

_COUNTER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from embedkit.io.atomic import atomic_dir, folder_lock
    target = Path(sys.argv[1])
    for _ in range(int(sys.argv[2])):
        with folder_lock(target, timeout=30):
            n = int((target / "n").read_text())  # read, modify, write: a lost update without
            with atomic_dir(target) as tmp:       # the lock
                (tmp / "n").write_text(str(n + 1))
""")


def _python(code: str, *args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()),
                                                        os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, text=True, **kw)


@pytest.mark.reliability("9.2", "two processes writing one folder at once: the second waits, "
                                "no update is lost")
def test_two_processes_lose_no_update(tmp_path):
    target = tmp_path / "counter"
    replace(target, {"n": "0"})
    procs = [_python(_COUNTER, str(target), "15") for _ in range(2)]
    for p in procs:
        assert p.wait(timeout=60) == 0
    assert (target / "n").read_text() == "30"
    assert [p.name for p in tmp_path.iterdir()] == ["counter"]  # no lock file left


@pytest.mark.reliability("9.2", "a folder another process is writing: waits, then one clear "
                                "error; a killed holder's lock is free at once")
def test_lock_held_by_another_process(tmp_path):
    target = tmp_path / "idx"
    holder = _python(_HOLDER, str(target), stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "held"
        start = time.monotonic()
        with pytest.raises(FolderLockedError) as err:
            with folder_lock(target, timeout=0.3, what="index folder"):
                pass  # pragma: no cover
        assert 0.3 <= time.monotonic() - start < 5
        assert str(err.value) == (
            f"index folder {target} is being written by another process (it holds "
            f"{lock_file(target)}); waited 0.3 s: try again when that one has finished")
    finally:
        holder.kill()  # as kill -9 would
        holder.wait()
    with folder_lock(target, timeout=0):  # the kernel released it with the process
        assert lock_file(target).exists()
    assert not lock_file(target).exists()


def test_lock_is_reentrant_and_excludes_threads(tmp_path):
    target = tmp_path / "f"
    got = []
    with folder_lock(target), folder_lock(target):  # re-entrant in this thread
        t = threading.Thread(target=lambda: got.append(_try(target)))
        t.start()
        t.join(5)
    assert got == ["locked"]
    assert _try(target) == "free"


def _try(target: Path) -> str:
    try:
        with folder_lock(target, timeout=0):
            return "free"
    except FolderLockedError:
        return "locked"


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


@pytest.mark.reliability("9.14", "safetensors files written through atomic_path get the "
                                 "umask's permissions, not 0600")
def test_atomic_path_respects_the_umask(tmp_path, umask_027):
    from safetensors.numpy import save_file

    target = tmp_path / "w.safetensors"
    with atomic_path(target) as tmp:
        save_file({"k": np.zeros(2, np.float32)}, str(tmp))
    assert oct(target.stat().st_mode & 0o777) == oct(0o640)
    atomic_write_text(tmp_path / "r.txt", "x")
    assert oct((tmp_path / "r.txt").stat().st_mode & 0o777) == oct(0o640)


@pytest.mark.reliability("9.14", "files and folders written through atomic_dir (model "
                                 "exports, checkpoints, index folders) get the umask's "
                                 "permissions, not safetensors' 0600")
def test_atomic_dir_respects_the_umask(tmp_path, umask_027):
    from safetensors.numpy import save_file

    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        save_file({"k": np.zeros(2, np.float32)}, str(tmp / "model.safetensors"))
        (tmp / "sub").mkdir(mode=0o700)
        (tmp / "sub" / "c.json").write_text("{}")
    modes = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777)
             for p in [target, *target.rglob("*")]}
    assert modes == {"model": oct(0o750), "model/model.safetensors": oct(0o640),
                     "model/sub": oct(0o750), "model/sub/c.json": oct(0o640)}


@pytest.mark.reliability("9.tb", "an output file path that is a folder: one error naming it, "
                                 "not IsADirectoryError")
def test_output_path_that_is_a_folder(tmp_path):
    with pytest.raises(EmbedkitError, match=f"^{tmp_path}: is a folder; give the path of a file"):
        atomic_write_text(tmp_path, "x")
    assert list(tmp_path.iterdir()) == []
