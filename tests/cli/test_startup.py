"""Fast start: parsing the command line (``--version``, every ``--help``, usage errors) imports
none of the heavy libraries; they are imported where the work is. Each case runs in a fresh
interpreter (this one has torch loaded by other tests) and reports ``sys.modules``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import embedkit

#: what parsing must not import (numpy too: --version is meant to take a fraction of a second)
HEAVY = ("torch", "transformers", "scipy", "sklearn", "faiss", "pandas", "pyarrow",
         "onnxruntime", "openvino", "ray", "mteb", "datasets", "matplotlib",
         "sentence_transformers", "numpy")

#: runs each command line through main() (SystemExit caught; "every-help": --help of the top
#: level and of every (sub-)command), then prints the exit statuses and the heavy modules loaded
_PROBE = """
import argparse, json, sys
from embedkit.cli.main import build_parser, main

def paths(parser, path=()):
    yield path
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                yield from paths(sub, (*path, name))

argvs = json.loads(sys.argv[1])
if argvs == "every-help":
    argvs = [[*p, "--help"] for p in paths(build_parser())]
codes = []
for argv in argvs:
    try:
        codes.append(main(argv))
    except SystemExit as e:
        codes.append(e.code)
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.argv[2])))
print(json.dumps({"codes": codes, "heavy": heavy}))
"""


def _probe(argvs: list[list[str]] | str, tmp_path: Path) -> dict:
    root = Path(embedkit.__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(root), *filter(None, [os.environ.get("PYTHONPATH")])])}
    out = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(argvs), json.dumps(HEAVY)],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def test_version_imports_nothing_heavy(tmp_path):
    result = _probe([["--version"]], tmp_path)
    assert result == {"codes": [0], "heavy": []}


def test_every_help_imports_nothing_heavy(tmp_path):
    result = _probe("every-help", tmp_path)
    # the top level, 10 commands, train's 1 and index's 4 sub-commands
    assert len(result["codes"]) >= 16 and set(result["codes"]) == {0}
    assert result["heavy"] == []


@pytest.mark.parametrize("argv", [
    ["bench", "--nope"],                              # unknown option
    ["bench", "--backend", "tensorrt"],               # not one of the choices
    ["bench", "--batch-size", "0"],                   # a type check
    ["bench", "--threads", "100000"],                 # --threads against the cores
    ["encode", "--precision", "float64"],             # a choice from the library's list
    ["index", "build"],                               # required options missing
    ["train", "simcse", "--lr", "fast"],              # options generated from SimCSEConfig
    ["compare", "--metric", "kendall"],
    ["nope"],                                         # unknown command
])
def test_usage_errors_import_nothing_heavy(argv, tmp_path):
    result = _probe([argv], tmp_path)
    assert result == {"codes": [2], "heavy": []}


def test_unknown_task_is_found_before_torch(tmp_path):
    """``bench --tasks NOPE``: the data registry (task specs are pydantic models) says so
    before any encoder, scorer or index library is imported."""
    result = _probe([["bench", "--tasks", "NOPE", "--model", "m3e-small"]], tmp_path)
    assert result == {"codes": [2], "heavy": []}
