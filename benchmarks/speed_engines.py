"""The engines of the speed report (:mod:`bench_speed`) and how each one is run: an embedkit
engine is the ``embedkit encode`` command a user runs (its model options as flags), a
sentence-transformers engine is :mod:`speed_worker` under sentence-transformers' own
environment; either way one fresh process per engine per round, timed from outside (wall time
and peak resident memory of that process alone, by ``os.wait4``).

>>> e = Engine("embedkit openvino bf16", "embedkit", "openvino", "bf16", dtype="bfloat16")
>>> e.flags()
['--backend', 'openvino', '--dtype', 'bfloat16']
>>> Engine("x", "embedkit", "onnx", "int8", quantize="int8-static").flags()
['--backend', 'onnx', '--quantize', 'int8-static']
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ST_TORCH = "sentence-transformers torch"
REFERENCE = "embedkit torch fp32"   # the quality reference: exact, fp32
ST_OV_DEFAULT = "sentence-transformers openvino (its default precision)"
PRECISIONS = ("fp32", "bf16", "int8")


@dataclass(frozen=True)
class Engine:
    """One configuration timed: who runs it (``st`` or ``embedkit``), on which backend, at which
    precision class (``fp32``, ``bf16``, ``int8``; ``default``: the runtime's own choice, read
    back from the compiled model), with which settings."""

    name: str
    engine: str
    backend: str
    precision: str
    dtype: str = "float32"
    quantize: str = "none"          # none, int8 (dynamic / weights), int8-static
    token_budget: int | None = None
    ov_hint: str | None = None      # sentence-transformers' OpenVINO: the hint forced, or None

    def flags(self) -> list[str]:
        """The ``embedkit`` model options of this engine (an embedkit engine)."""
        out = ["--backend", self.backend]
        if self.dtype != "float32":
            out += ["--dtype", self.dtype]
        if self.quantize != "none":
            out += ["--quantize", self.quantize]
        if self.token_budget is not None:
            out += ["--token-budget", str(self.token_budget)]
        return out


def int8_config(flags: set[str] | None = None) -> str:
    """sentence-transformers' int8 ONNX export config for this CPU (``avx512_vnni``, ``avx512``,
    ``avx2``), from the CPU's flags (:func:`embedkit.provenance.hardware_fingerprint`'s).

    >>> int8_config({"avx512f", "avx512_vnni"}), int8_config({"avx512f"}), int8_config(set())
    ('avx512_vnni', 'avx512', 'avx2')
    """
    if flags is None:
        from embedkit.provenance import hardware_fingerprint

        flags = set(hardware_fingerprint()["cpu_flags"])
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    return "avx512" if "avx512f" in flags else "avx2"


def all_engines() -> list[Engine]:
    """Every engine of the report, in the report's order."""
    cfg = int8_config()
    return [
        Engine(ST_TORCH, "st", "torch", "fp32"),
        Engine("sentence-transformers onnx", "st", "onnx", "fp32"),
        Engine(ST_OV_DEFAULT, "st", "openvino", "default"),
        Engine("sentence-transformers openvino f32", "st", "openvino", "fp32", ov_hint="f32"),
        Engine(f"sentence-transformers onnx int8 ({cfg})", "st", "onnx", "int8",
               quantize="int8"),
        Engine("sentence-transformers openvino int8 (weights)", "st", "openvino", "int8",
               quantize="int8", ov_hint="f32"),
        Engine(REFERENCE, "embedkit", "torch", "fp32"),
        # torch's default on the cpu is a budget of padded tokens; this row is the old batches
        Engine("embedkit torch fp32, batches of 64", "embedkit", "torch", "fp32",
               token_budget=0),
        Engine("embedkit torch bf16", "embedkit", "torch", "bf16", dtype="bfloat16"),
        Engine("embedkit onnx fp32", "embedkit", "onnx", "fp32"),
        Engine("embedkit openvino fp32", "embedkit", "openvino", "fp32"),
        Engine("embedkit openvino bf16", "embedkit", "openvino", "bf16", dtype="bfloat16"),
        Engine("embedkit onnx int8 (dynamic)", "embedkit", "onnx", "int8", quantize="int8"),
        Engine("embedkit openvino int8 (weights)", "embedkit", "openvino", "int8",
               quantize="int8"),
        Engine("embedkit onnx int8-static", "embedkit", "onnx", "int8", quantize="int8-static"),
        Engine("embedkit openvino int8-static", "embedkit", "openvino", "int8",
               quantize="int8-static"),
        # the operations left in float by the static quantisation (layer norms, softmax, the
        # feed-forward MatMuls the exclusion keeps) run in bfloat16 where the CPU has it
        Engine("embedkit openvino int8-static, bf16 rest", "embedkit", "openvino", "int8",
               dtype="bfloat16", quantize="int8-static"),
    ]


def select_engines(names: tuple[str, ...]) -> list[Engine]:
    """The engines named (all when ``names`` is empty); an unknown name is an error naming the
    known ones."""
    engines = all_engines()
    known = {e.name: e for e in engines}
    unknown = [n for n in names if n not in known]
    if unknown:
        from embedkit.errors import ConfigError

        raise ConfigError(f"unknown engine {unknown[0]!r}; the engines: "
                          + "; ".join(known), param="engines")
    return [e for e in engines if not names or e.name in names]


# --------------------------------------------------------------------------------------------
# processes


def embedkit_command() -> list[str]:
    """How the driver starts ``embedkit``: this interpreter on the embedkit it imported (the
    ``embedkit`` script is ``python -m embedkit``)."""
    return [sys.executable, "-m", "embedkit"]


def embedkit_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of an ``embedkit`` process: this one, with the folder of the embedkit
    the driver imported first on ``PYTHONPATH`` (a checkout runs its own code)."""
    import embedkit

    root = str(Path(embedkit.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class Finished:
    """A process run to its end: exit status, wall seconds, peak resident MB, its output."""

    code: int
    wall_s: float
    peak_mb: float
    stdout: str
    stderr: str

    def reason(self) -> str:
        """The last line the process wrote to stderr (its one error line), or its status."""
        lines = [x.strip() for x in self.stderr.splitlines() if x.strip()]
        return lines[-1] if lines else f"exit status {self.code}"


#: a small launcher between the driver and the command: a child's peak memory counts the
#: memory of the process it was started from until its exec (Linux keeps the old address
#: space's high-water mark), so the command is started from this small process, not from the
#: driver, and the launcher reports the command's own wall time and peak (``os.wait4``)
_LAUNCH = """
import json, os, subprocess, sys, time
argv, result, timeout = json.loads(sys.argv[1]), sys.argv[2], float(sys.argv[3])
t = time.perf_counter()
proc = subprocess.Popen(argv)
deadline = t + timeout if timeout > 0 else None
while True:
    pid, status, usage = os.wait4(proc.pid, os.WNOHANG if deadline else 0)
    if pid:
        break
    if deadline and time.perf_counter() > deadline:
        proc.kill()
        deadline = None
    time.sleep(0.02)
wall = time.perf_counter() - t
code = os.waitstatus_to_exitcode(status)
with open(result, "w") as f:
    json.dump({"code": code, "wall_s": wall, "peak_mb": usage.ru_maxrss / 1024.0}, f)
"""


def run_process(argv: list[str], log: Path, *, env: dict[str, str] | None = None,
                cwd: str | None = None, timeout: float | None = None) -> Finished:
    """Run ``argv`` to its end (killed after ``timeout`` seconds); its own wall time and peak
    resident memory (measured by a small launcher process, :data:`_LAUNCH`); stdout and stderr
    kept in ``log`` (and ``log``.out)."""
    out_path = log.with_suffix(log.suffix + ".out")
    result = log.with_suffix(log.suffix + ".json")
    import json

    with open(log, "w", encoding="utf-8") as err, open(out_path, "w", encoding="utf-8") as out:
        subprocess.run([sys.executable, "-c", _LAUNCH, json.dumps(argv), str(result),
                        str(timeout or 0)], stdout=out, stderr=err, env=env, cwd=cwd,
                       check=False)
    got = json.loads(result.read_text()) if result.is_file() else \
        {"code": -1, "wall_s": 0.0, "peak_mb": 0.0}
    return Finished(int(got["code"]), float(got["wall_s"]), float(got["peak_mb"]),
                    out_path.read_text(encoding="utf-8", errors="replace"),
                    log.read_text(encoding="utf-8", errors="replace"))


@dataclass(frozen=True)
class Shape:
    """What every engine is given: model, threads, batch size, max length."""

    model: str
    threads: int
    batch_size: int
    max_length: int


def encode_argv(e: Engine, shape: Shape, corpus: Path, out: Path, cache: Path) -> list[str]:
    """The ``embedkit encode`` command of an embedkit engine (no vectors cache; the exports
    are kept under ``cache``)."""
    return [*embedkit_command(), "encode", "--model", shape.model, *e.flags(),
            "--threads", str(shape.threads), "--batch-size", str(shape.batch_size),
            "--max-length", str(shape.max_length), "--pooling", "last-avg", "--no-cache",
            "--cache-dir", str(cache), "--corpus", str(corpus), "--out", str(out), "--overwrite"]


def shown_command(argv: list[str]) -> str:
    """``argv`` as a user types it (``embedkit ...``, the work folder as WORK)."""
    import shlex

    words = list(argv)
    if words[:3] == embedkit_command():
        words = ["embedkit", *words[3:]]
    return shlex.join(words)


def st_spec(e: Engine, shape: Shape, folder: Path) -> dict[str, Any]:
    """The worker's settings for a sentence-transformers engine (its own model folder, where
    sentence-transformers keeps its exports)."""
    spec: dict[str, Any] = {"backend": e.backend, "quantize": e.quantize,
                            "ov_hint": e.ov_hint, "threads": shape.threads,
                            "batch_size": shape.batch_size, "max_length": shape.max_length,
                            "model_path": str(folder)}
    if e.quantize == "int8" and e.backend == "onnx":
        cfg = int8_config()
        spec.update(st_file=f"onnx/model_qint8_{cfg}.onnx", st_int8_config=cfg)
    return spec
