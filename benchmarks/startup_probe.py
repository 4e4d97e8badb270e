"""The start-up of ``embedkit bench`` on a small file, for the speed report
(:mod:`bench_speed`): the command line run in a fresh process, timed from outside.

>>> sorted(UNNEEDED)[:3]
['datasets', 'faiss', 'matplotlib']
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: libraries ``embedkit bench`` on a small file should not import (nothing of theirs runs)
UNNEEDED = ("faiss", "datasets", "matplotlib", "sentence_transformers", "onnxruntime",
            "openvino", "nncf", "ray", "mteb", "pyarrow", "pandas")

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


def startup_profile(model: str, data_dir: str | None, pairs: int = 30) -> dict[str, Any]:
    """``embedkit bench`` on a ``pairs``-pair STS-B file, in a fresh process, without a cache:
    the process's wall time, the CLI's import time, the run, and the unneeded libraries it
    imported."""
    from embedkit.data import get_task, load_split

    split = load_split(get_task("STS-B"), "test", data_dir=data_dir).sample(pairs, 0)
    with tempfile.TemporaryDirectory(prefix="embedkit-startup-") as tmp:
        folder = Path(tmp)
        rows = [f"{a}\t{b}\t{int(y)}" for a, b, y in
                zip(split.sentences1, split.sentences2, split.labels, strict=True)]
        (folder / "pairs.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        spec = {"name": "startup", "format": "tsv", "base": "spec",
                "files": {"test": "pairs.tsv"}, "label_range": [0, 5], "label_type": "int"}
        (folder / "startup.json").write_text(json.dumps(spec), encoding="utf-8")
        args = ["bench", "--model", model, "--tasks", str(folder / "startup.json"),
                "--no-cache"]
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _PROBE % (UNNEEDED,), *args],
                              capture_output=True, text=True, cwd=tmp, check=False)
        wall = time.perf_counter() - t
    line = next((x for x in proc.stderr.splitlines() if x.startswith("STARTUP ")), None)
    info = json.loads(line[len("STARTUP "):]) if line else {"code": proc.returncode}
    return {"pairs": len(rows), "wall_s": wall, **info,
            "command": "embedkit " + " ".join(args[:4]) + " <30-pair file> --no-cache"}
