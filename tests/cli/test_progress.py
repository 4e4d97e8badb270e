"""Progress and notices off a terminal: periodic log lines with rate and time left, no
transformers "Loading weights" bar, warnings as one line without file and line."""

from __future__ import annotations

import re

import pytest

from embedkit.cli.main import main


@pytest.fixture
def bars_on(monkeypatch):
    """transformers' bars on, as a fresh process has them (the suite's conftest turns them off
    through the hub's environment variable); restored after."""
    from transformers.utils import logging as hf_logging

    monkeypatch.setattr(hf_logging, "_tqdm_active", True)


def test_bench_progress_lines_off_a_terminal(bars_on, tiny_model_dir, spec_file, capsys):
    """--progress with stderr captured (not a terminal): a start line, a line after the first
    batch with done/total, rate and time left, and a last line; every line is embedkit's."""
    assert main(["bench", "--model", str(tiny_model_dir), "--tasks", str(spec_file),
                 "--pooling", "cls", "--progress", "--batch-size", "2", "--no-cache"]) == 0
    err = capsys.readouterr().err.splitlines()
    # 68 distinct sentences, 2 a batch, progress after each batch (one model call)
    progress = [e for e in err if "encoding" in e]
    assert progress[0] == (f"embedkit: encoding 68 sentences with {tiny_model_dir} "
                           "(progress every 30 s)")
    assert re.fullmatch(r"embedkit: encoding: 2/68 sentences \(3%\), \d+ sentences/s, "
                        r"about \d+ s left", progress[1]), progress[1]
    assert re.fullmatch(r"embedkit: encoding: 68/68 sentences \(100%\) in \d+ s, "
                        r"\d+ sentences/s", progress[-1]), progress[-1]
    assert len(progress) == 3  # the batches between come within LOG_EVERY of the first
    assert not any("Loading weights" in e or "it/s" in e for e in err)
    assert all(e.startswith("embedkit: ") for e in err), err


def test_progress_every_batch_when_due(monkeypatch, tiny_model_dir, spec_file, capsys):
    import embedkit.encoders.wrappers as wrappers

    monkeypatch.setattr(wrappers, "LOG_EVERY", 0.0)
    assert main(["bench", "--model", str(tiny_model_dir), "--tasks", str(spec_file),
                 "--pooling", "cls", "--progress", "--batch-size", "2", "--no-cache"]) == 0
    done = re.findall(r"encoding: (\d+)/68", capsys.readouterr().err)
    assert done == [str(n) for n in range(2, 69, 2)]  # one line per batch of 2


def test_no_progress_lines_for_small_runs(tiny_model_dir, spec_file, capsys):
    """Without --progress, fewer sentences than PROGRESS_MIN say nothing."""
    assert main(["bench", "--model", str(tiny_model_dir), "--tasks", str(spec_file),
                 "--pooling", "cls", "--no-cache"]) == 0
    assert "encoding" not in capsys.readouterr().err


_WARNS = """
import sys, warnings
import embedkit.cli.datasets_cmd as datasets_cmd
from embedkit.cli.main import main
from embedkit.postprocess import RankDeficientWarning

def run(args):
    warnings.warn_explicit("X does not have valid feature names, but PCA was fitted with "
                           "feature names\\nsecond line", UserWarning,
                           "/venv/lib/site-packages/sklearn/base.py", 493)
    warnings.warn_explicit("a ZeroDivision somewhere", RuntimeWarning,
                           "/venv/lib/site-packages/numpy/core/_methods.py", 7)
    warnings.warn("rank 3 < 8", RankDeficientWarning, stacklevel=1)
    return 0

datasets_cmd.run = run
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("debug", [False, True])
def test_warnings_are_one_line_notices(debug, tmp_path):
    """In a real process (pytest records warnings in its own): another library's warning is
    ``embedkit: notice: Category: message``, embedkit's own ``embedkit: warning: message``,
    neither with its file, line or source line; --debug keeps Python's rendering."""
    import subprocess
    import sys

    argv = ["--debug", "datasets"] if debug else ["datasets"]
    done = subprocess.run([sys.executable, "-c", _WARNS, *argv], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    err = done.stderr.splitlines()
    if debug:
        assert any("sklearn/base.py:493: UserWarning" in e for e in err)
        return
    assert err == [
        "embedkit: notice: UserWarning: X does not have valid feature names, but PCA was "
        "fitted with feature names",
        "embedkit: notice: RuntimeWarning: a ZeroDivision somewhere",
        "embedkit: warning: rank 3 < 8",
    ]
