"""The start-up of the command line and the cold ``make bench``, for the speed report
(:mod:`bench_speed`): each a fresh process, timed from outside.

- ``embedkit --version`` (median of 3 processes);
- ``embedkit bench`` on a 30-pair file with a cached export (the export built by a first,
  untimed run into the same cache folder; vectors not cached), with the time to import the
  command line, the run, and the libraries it imported that it does not use;
- ``make bench``'s command with an empty cache folder (vectors and exports): the cold start a
  fresh clone sees.

>>> sorted(UNNEEDED)[:3]
['datasets', 'faiss', 'matplotlib']
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

from speed_engines import embedkit_command, embedkit_env, run_process

#: libraries ``embedkit bench`` on a small file should not import (nothing of theirs runs)
UNNEEDED = ("faiss", "datasets", "matplotlib", "sentence_transformers", "onnxruntime",
            "openvino", "nncf", "ray", "mteb", "pyarrow", "pandas")
#: ... and on an exported backend, torch (the issue's target: tokenizer + runtime + numpy)
UNNEEDED_EXPORTED = ("torch",)
#: the command ``make bench`` runs (Makefile)
MAKE_BENCH = ["bench", "--model", "m3e-small", "--tasks", "ATEC,BQ,LCQMC,PAWSX,STS-B",
              "--splits", "test", "--backend", "openvino"]
BACKEND = "openvino"  # make bench's backend

_PROBE = """
import json, sys, time
t0 = time.perf_counter()
from embedkit.cli.main import main
t1 = time.perf_counter()
code = main(sys.argv[1:])
t2 = time.perf_counter()
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(%r))
sys.stderr.write("\\nSTARTUP " + json.dumps({"import_s": t1 - t0, "run_s": t2 - t1,
                                             "code": code, "imported": heavy}) + "\\n")
"""


def pair_task(folder: Path, data_dir: str | None, pairs: int = 30) -> Path:
    """A ``pairs``-pair task of STS-B test pairs (seeded), as a spec file in ``folder``."""
    from embedkit.data import get_task, load_split

    split = load_split(get_task("STS-B"), "test", data_dir=data_dir).sample(pairs, 0)
    folder.mkdir(parents=True, exist_ok=True)
    rows = [f"{a}\t{b}\t{int(y)}" for a, b, y in
            zip(split.sentences1, split.sentences2, split.labels, strict=True)]
    (folder / "pairs.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    spec = {"name": "startup", "format": "tsv", "base": "spec",
            "files": {"test": "pairs.tsv"}, "label_range": [0, 5], "label_type": "int"}
    (folder / "startup.json").write_text(json.dumps(spec), encoding="utf-8")
    return folder / "startup.json"


def version_wall(folder: Path, runs: int = 3) -> dict[str, Any]:
    """``embedkit --version`` in fresh processes: the median wall time."""
    folder.mkdir(parents=True, exist_ok=True)
    walls, code = [], 0
    for i in range(runs):
        done = run_process([*embedkit_command(), "--version"], folder / f"version-{i}.log",
                           env=embedkit_env())
        walls.append(done.wall_s)
        code = code or done.code
    return {"command": "embedkit --version", "wall_s": statistics.median(walls),
            "walls": walls, "code": code}


def startup_profile(model: str, data_dir: str | None, folder: Path,
                    pairs: int = 30) -> dict[str, Any]:
    """``embedkit --version``, and ``embedkit bench`` on a ``pairs``-pair file with a cached
    export (:mod:`startup_probe`'s docstring)."""
    spec = pair_task(folder, data_dir, pairs)
    cache = folder / "cache"
    args = ["bench", "--model", model, "--tasks", str(spec), "--backend", BACKEND,
            "--cache-dir", str(cache), "--no-cache"]
    unneeded = tuple(m for m in UNNEEDED + UNNEEDED_EXPORTED if m != BACKEND)
    argv = [sys.executable, "-c", _PROBE % (unneeded,), *args]
    first = run_process(argv, folder / "bench-first.log", env=embedkit_env(), cwd=str(folder))
    done = run_process(argv, folder / "bench-cached.log", env=embedkit_env(), cwd=str(folder))
    line = next((x for x in done.stderr.splitlines() if x.startswith("STARTUP ")), None)
    info = json.loads(line[len("STARTUP "):]) if line else {"code": done.code}
    if info.get("code") not in (0, None) or done.code:
        info["reason"] = done.reason()
    return {"pairs": pairs, "wall_s": done.wall_s, "first_wall_s": first.wall_s, **info,
            "command": f"embedkit bench --model {model} --tasks <{pairs}-pair file> "
                       f"--backend {BACKEND} --no-cache (export cached)",
            "version": version_wall(folder)}


def cold_bench(data_dir: str | None, folder: Path, timeout: float = 1800) -> dict[str, Any]:
    """``make bench``'s command with an empty cache folder (``EMBEDKIT_CACHE``: vectors and
    exports), run in an empty folder: its wall time."""
    cache = folder / "empty-cache"
    cache.mkdir(parents=True, exist_ok=True)
    extra = {"EMBEDKIT_CACHE": str(cache)}
    if data_dir:
        extra["EMBEDKIT_DATA"] = str(Path(data_dir).resolve())
    done = run_process([*embedkit_command(), *MAKE_BENCH], folder / "cold-bench.log",
                       env=embedkit_env(extra), cwd=str(folder), timeout=timeout)
    out = {"command": "embedkit " + " ".join(MAKE_BENCH), "cache": "empty",
           "wall_s": done.wall_s, "code": done.code, "peak_mb": done.peak_mb}
    if done.code:
        out["reason"] = done.reason()
    return out
