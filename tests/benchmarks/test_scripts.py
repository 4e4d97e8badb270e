"""The benchmark drivers as scripts: each runs as ``python benchmarks/<name>.py`` from the
repository root (its folder on ``sys.path``, as a script's is), shows its options, turns bad
input into one line, and its docstring examples run."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = ("bench_speed.py", "bench_scale.py", "report_simcse.py", "report_compare.py",
           "report_compression.py")
MODULES = sorted(f.stem for f in (REPO / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_help_from_the_repository_root(script):
    done = subprocess.run([sys.executable, f"benchmarks/{script}", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: python benchmarks/{script} [-h]")
    assert "--out OUT" in done.stdout and "--data-dir" in done.stdout


def test_bad_input_is_one_line(capsys, monkeypatch):
    """Refused at parsing, as ``embedkit report speed --threads 100000`` was."""
    import bench_speed

    import embedkit.cli.common as common

    monkeypatch.setattr(common, "available_cores", lambda: 2)
    with pytest.raises(SystemExit) as e:
        bench_speed.main(["--threads", "100000"])
    assert e.value.code == 2
    assert capsys.readouterr().err == (
        "embedkit: error: argument --threads: 100000 threads for the 2 core(s) this process may "
        "use; give at most 2 (more threads than cores only wait on each other) "
        "(see: python benchmarks/bench_speed.py --help)\n")


def test_an_output_folder_is_refused_naming_the_flag(tmp_path, capsys):
    import bench_scale

    assert bench_scale.main(["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("embedkit: error: --out: ")


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, monkeypatch):
    module = importlib.import_module(name)
    monkeypatch.chdir(REPO)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name):
        if test.examples:
            runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} doctest example(s) failed in {name}"


def test_a_bad_list_is_one_line_naming_the_flag(tmp_path, capsys):
    import bench_scale

    assert bench_scale.main(["--ray-workers", "x", "--out", str(tmp_path / "s.md")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--ray-workers: 'x' is not an integer" in err[0]
    assert not (tmp_path / "s.md").exists()
