"""Reliability of training (issue 9): a run owns its output folder and checkpoints (9.1), what
killed checkpoint writes left is removed (9.5), damaged checkpoints end in one line naming the
file and what to do, or in the newest intact checkpoint (9.tb), and trained folders get the
umask's permissions (9.14)."""

from __future__ import annotations

import json
import os
import stat
import threading

import pytest

from embedkit.cli.main import main
from embedkit.errors import ConfigError, EmbedkitError
from embedkit.training import train_simcse
from tests.faults import SimulatedKill, kill_at

rel = pytest.mark.reliability
#: 40 sentences, batches of 8: 5 steps an epoch
SMALL = {"batch_size": 8, "lr": 1e-3, "max_length": 32, "progress": False}


def _kw(base, corpus, **extra):
    return {"model": str(base), "corpus": str(corpus), "pooling": "cls", **SMALL, **extra}


def _state(ckpt) -> dict:
    return json.loads((ckpt / "training_state" / "state.json").read_text(encoding="utf-8"))


def _steps(root) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith("step-"))


def _one_error_line(capsys) -> str:
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("embedkit: error: "), err
    return lines[0].removeprefix("embedkit: error: ")


# -- 9.1: a run owns its output ---------------------------------------------------------------

@rel("9.1", "train into a folder trained before: refused; overwrite starts over, resume "
            "finishes the new run")
def test_second_run_into_a_trained_folder(simcse_base_dir, simcse_corpus, tmp_path):
    out, root = tmp_path / "run", tmp_path / "run.checkpoints"
    a = train_simcse(out_dir=str(out), **_kw(simcse_base_dir, simcse_corpus, seed=1,
                                             save_every=2))
    assert a.complete and _steps(root) == ["step-000004"]
    with pytest.raises(ConfigError, match=r"holds the output of an earlier training run; "
                                          r"choose a new folder, or start over with "
                                          r"overwrite=True") as e:
        train_simcse(out_dir=str(out), **_kw(simcse_base_dir, simcse_corpus, seed=2,
                                             save_every=2))
    assert e.value.param == "out_dir"
    b = train_simcse(out_dir=str(out), overwrite=True, stop_at=2,
                     **_kw(simcse_base_dir, simcse_corpus, seed=2, save_every=2))
    # the earlier run's checkpoints are gone (they outranked and pruned the new ones)
    assert not b.complete and _steps(root) == ["step-000002"]
    b_run = _state(root / "step-000002")["run_id"]
    with pytest.raises(ConfigError, match=r"seed 7 \(checkpoint: 2\)") as e:
        train_simcse(resume=str(out), seed=7)  # another config: refused as before
    assert e.value.param == "resume"
    assert b_run != a.record["run_id"] and len(b_run) == 32
    assert not out.exists()  # A's output went with its checkpoints
    done = train_simcse(resume=str(out), progress=False)  # finishes B, not A
    rec = json.loads((out / "embedkit.json").read_text("utf-8"))
    assert done.complete and rec["config"]["seed"] == 2 and rec["run_id"] == b_run
    assert rec["resumed_from"] == [str(root / "step-000002")]
    assert _state(root / "step-000004")["run_id"] == b_run  # B's own checkpoints now
    # resuming B again into A's place is fine (same run); another run's output is not
    other = tmp_path / "other"
    train_simcse(out_dir=str(other), **_kw(simcse_base_dir, simcse_corpus, max_sentences=16))
    with pytest.raises(ConfigError, match=r"out_dir .*other holds the output of another training "
                                          rf"run \(run [0-9a-f]{{32}}\) than the checkpoint "
                                          rf"\(run {b_run}\)"):
        train_simcse(resume=str(root / "step-000004"), out_dir=str(other), progress=False)


@rel("9.1", "a new run refuses leftover checkpoints of an interrupted earlier run")
def test_new_run_refuses_earlier_checkpoints(simcse_base_dir, simcse_corpus, tmp_path, capsys):
    out = tmp_path / "run"
    train_simcse(out_dir=str(out), stop_at=3, **_kw(simcse_base_dir, simcse_corpus, seed=1))
    assert not out.exists()
    rc = main(["train", "simcse", "--model", str(simcse_base_dir), "--corpus",
               str(simcse_corpus), "--out", str(out), "--batch-size", "8", "--no-progress",
               "--save-every", "1", "--seed", "2"])
    assert rc == 2
    assert _one_error_line(capsys) == (
        f"--out: {tmp_path / 'run.checkpoints'} holds checkpoints of an earlier training run "
        "(step-000003): they would be taken for this run's; resume that run from "
        f"{tmp_path / 'run.checkpoints'}, or start over with --overwrite (which removes them)")


@rel("9.1", "two runs into one out_dir at once: the second is refused")
def test_two_runs_at_once(simcse_base_dir, simcse_corpus, tmp_path):
    from embedkit.io.atomic import folder_lock

    out = tmp_path / "run"
    held, release = threading.Event(), threading.Event()

    def other_run():  # holds the output's lock as a running training would
        with folder_lock(out, timeout=5):
            held.set()
            release.wait(10)

    t = threading.Thread(target=other_run)
    t.start()
    try:
        assert held.wait(10)
        with pytest.raises(EmbedkitError, match=r"training output .*run is being written by "
                                                r"another process"):
            train_simcse(out_dir=str(out), **_kw(simcse_base_dir, simcse_corpus))
    finally:
        release.set()
        t.join(10)
    assert not out.exists()


# -- 9.5: what killed checkpoint writes left ------------------------------------------------------

@rel("9.5", "temporary folders of a killed checkpoint write are removed by the next resume")
def test_killed_checkpoint_write_is_cleaned(simcse_base_dir, simcse_corpus, tmp_path):
    out, root = tmp_path / "run", tmp_path / "run.checkpoints"
    with kill_at("embedkit.training.trainer.write_state", call=2):
        with pytest.raises(SimulatedKill):
            train_simcse(out_dir=str(out), **_kw(simcse_base_dir, simcse_corpus, epochs=2,
                                                 save_every=2))
    leftovers = [p.name for p in root.iterdir() if p.name.startswith(".step-000004.")]
    assert _steps(root) == ["step-000002"] and len(leftovers) == 1, os.listdir(root)
    stale = root / ".st-abc12345"  # what earlier versions' sentence-transformers copy left
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"x" * 1000)
    r = train_simcse(resume=str(out), stop_at=3, progress=False)
    assert r.steps == 3 and _steps(root) == ["step-000003"]
    assert not [p for p in root.iterdir() if p.name.startswith(".")], os.listdir(root)


# -- 9.tb: damaged checkpoints -----------------------------------------------------------------

@pytest.fixture
def two_checkpoints(simcse_base_dir, simcse_corpus, tmp_path):
    """A run stopped at step 4 with checkpoints at steps 2 and 4."""
    out = tmp_path / "run"
    train_simcse(out_dir=str(out), stop_at=4, keep_checkpoints=2,
                 **_kw(simcse_base_dir, simcse_corpus, epochs=2, save_every=2))
    root = tmp_path / "run.checkpoints"
    assert _steps(root) == ["step-000002", "step-000004"]
    return out, root


def _flip(path):
    data = bytearray(path.read_bytes())
    i = len(data) // 2
    data[i:i + 16] = bytes(b ^ 0xFF for b in data[i:i + 16])
    path.write_bytes(bytes(data))


def _truncate(path):
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 3)])


DAMAGE = {
    "optimizer.pt": ("training_state/optimizer.pt", _truncate),
    "model.safetensors": ("model.safetensors", _flip),
    "examples.json": ("training_state/examples.json", _truncate),
    "rng.pt missing": ("training_state/rng.pt", lambda p: p.unlink()),
}


@pytest.mark.parametrize("what", [
    pytest.param(w, marks=rel("9.tb", f"damaged training checkpoint ({w}): one line naming the "
                                      "file and what to do"))
    for w in DAMAGE])
def test_damaged_checkpoint_is_one_line(two_checkpoints, capsys, what):
    out, root = two_checkpoints
    name, damage = DAMAGE[what]
    damage(root / "step-000004" / name)
    rc = main(["train", "simcse", "--resume", str(root / "step-000004"), "--no-progress"])
    assert rc == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"--resume: {root / 'step-000004' / name}: damaged training "
                           "checkpoint: "), line
    assert line.endswith(f"; resume from the earlier checkpoint {root / 'step-000002'}, or "
                         "start over with --overwrite"), line
    assert not out.exists()


@rel("9.tb", "damaged newest checkpoint: resume takes the newest intact one, with a warning")
def test_resume_falls_back_to_the_newest_intact_checkpoint(two_checkpoints, capsys):
    out, root = two_checkpoints
    _truncate(root / "step-000004" / "training_state" / "optimizer.pt")
    assert main(["train", "simcse", "--resume", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert (f"embedkit: warning: {root / 'step-000004' / 'training_state' / 'optimizer.pt'}: "
            "damaged training checkpoint: its sha256 differs") in err
    assert f"resuming from the earlier checkpoint {root / 'step-000002'} instead" in err
    rec = json.loads((out / "embedkit.json").read_text(encoding="utf-8"))
    assert rec["complete"] and rec["resumed_from"] == [str(root / "step-000002")]


@rel("9.tb", "damaged checkpoint without checksums (older version): still one line")
def test_damaged_legacy_checkpoint_is_one_line(two_checkpoints, capsys):
    out, root = two_checkpoints
    for step in ("step-000002", "step-000004"):  # as written before checksums and run ids
        sf = root / step / "training_state" / "state.json"
        state = json.loads(sf.read_text(encoding="utf-8"))
        del state["files"], state["run_id"]
        sf.write_text(json.dumps(state), encoding="utf-8")
    _truncate(root / "step-000004" / "training_state" / "optimizer.pt")
    assert main(["train", "simcse", "--resume", str(out), "--no-progress"]) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"--resume: {root / 'step-000004' / 'training_state' / 'optimizer.pt'}"
                           ": damaged training checkpoint: unreadable ("), line
    assert line.endswith("resume from an earlier checkpoint if there is one, or start over "
                         "with --overwrite")
    # the earlier one, named, still resumes (a checkpoint without a run id is its own run's)
    assert main(["train", "simcse", "--resume", str(root / "step-000002"), "--no-progress"]) == 0


# -- 9.14: permissions -----------------------------------------------------------------------------

@rel("9.14", "trained model folders and checkpoints respect the umask (model.safetensors "
             "not 0600)")
def test_trained_files_respect_the_umask(simcse_base_dir, simcse_corpus, tmp_path):
    old = os.umask(0o022)
    try:
        r = train_simcse(out_dir=str(tmp_path / "run"), **_kw(
            simcse_base_dir, simcse_corpus, max_sentences=16, save_every=1, stop_at=1))
        ckpt = r.checkpoint
        r = train_simcse(resume=str(tmp_path / "run"), progress=False)
    finally:
        os.umask(old)
    for folder in (r.out_dir, ckpt):
        modes = {p.relative_to(folder).as_posix(): stat.S_IMODE(p.stat().st_mode)
                 for p in folder.rglob("*")}
        assert modes["model.safetensors"] == 0o644
        assert {m for n, m in modes.items() if (folder / n).is_file()} == {0o644}, modes
        assert {m for n, m in modes.items() if (folder / n).is_dir()} <= {0o755}, modes
