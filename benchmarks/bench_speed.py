"""Encoding speed: every embedkit backend and quantisation against sentence-transformers' own
fast paths (torch, ONNX, OpenVINO, ONNX dynamic int8, OpenVINO int8), on the same sentences.

``python benchmarks/bench_speed.py`` (``make bench-speed``) runs :func:`run_speed`:

- every engine runs in its own process (:mod:`speed_worker`), so its
  threads, peak memory and start-up are its own; sentence-transformers' ONNX and OpenVINO
  backends need optimum, whose exporter needs an older transformers than embedkit's, so those
  engines may run under another interpreter (``st_python``: a virtual environment the Makefile
  makes);
- all engines encode the same seeded sample of distinct sentences of the five test splits, with
  the same max length, batch size, pooling (mean of the last layer) and threads, no cache;
  rounds interleave the engines (the order rotates each round) and the median round counts;
- quality: each engine encodes a seeded sample of pairs of each test split, scored by
  :class:`~embedkit.evaluation.STSEvaluator`, beside its difference from fp32 torch;
- hardware: a float32 matrix product (2048 x 2048, torch, the same threads) measures this
  machine's attainable GEMM rate; each engine's GFLOP/s counts the model's multiply-adds for the
  real (unpadded) tokens it encoded;
- start-up: the wall time of ``embedkit bench`` on a 30-pair file, and which heavy libraries
  it imported.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _common import add_from_record, make_parser, read_record, run, write_report
from speed_cost import flops_per_sentence, gemm_peak, token_lengths
from speed_report import REFERENCE, ST_TORCH, targets

from embedkit.runs.record import run_record

if TYPE_CHECKING:  # numpy: imported where vectors are read, not to parse arguments
    import numpy as np

logger = logging.getLogger("embedkit.benchmarks.bench_speed")  # shown as embedkit's own log lines
WORKER = Path(__file__).with_name("speed_worker.py")


@dataclass(frozen=True)
class Engine:
    """One configuration timed: who runs it (``st`` or ``embedkit``), on what."""

    name: str
    engine: str
    backend: str
    quantize: str = "none"
    token_budget: int | None = None

    @property
    def precision(self) -> str:
        return "int8" if self.quantize == "int8" else "fp32"


@dataclass(frozen=True)
class SpeedOptions:
    """What the speed report measures (defaults: ``make bench-speed``)."""

    model: str = "m3e-small"
    sentences: int = 20000
    batch_size: int = 64
    max_length: int = 64
    threads: int = 2
    rounds: int = 3
    seed: int = 0
    spearman_pairs: int = 2000   # pairs per task for the quality columns (0: all)
    data_dir: str | None = None
    st_python: str | None = None  # interpreter for sentence-transformers' engines
    engines: tuple[str, ...] = ()  # names to run (empty: all)
    extra: dict[str, Any] = field(default_factory=dict)


def sample_sentences(n: int, seed: int, data_dir: str | None) -> list[str]:
    """``n`` distinct sentences drawn (seeded) from the five test splits."""
    from embedkit.data import DEFAULT_TASKS, get_task, load_split

    pool: list[str] = []
    for t in DEFAULT_TASKS:
        pool.extend(load_split(get_task(t), "test", data_dir=data_dir).unique_sentences())
    pool = list(dict.fromkeys(pool))
    rng = random.Random(seed)
    return rng.sample(pool, min(n, len(pool)))


def int8_config() -> str:
    """sentence-transformers' int8 export config for this CPU (``avx512_vnni``, ``avx512``,
    ``avx2``), read from /proc/cpuinfo's flags."""
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), "").split()
    except OSError:
        flags = []
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    return "avx512" if "avx512f" in flags else "avx2"


def default_engines(opts: SpeedOptions) -> list[Engine]:
    cfg = int8_config()
    engines = [
        Engine(ST_TORCH, "st", "torch"),
        Engine("sentence-transformers onnx", "st", "onnx"),
        Engine("sentence-transformers openvino", "st", "openvino"),
        Engine(f"sentence-transformers onnx int8 ({cfg})", "st", "onnx", "int8"),
        Engine("sentence-transformers openvino int8 (weights)", "st", "openvino", "int8"),
        Engine(REFERENCE, "embedkit", "torch"),
        Engine("embedkit onnx fp32", "embedkit", "onnx"),
        Engine("embedkit openvino fp32", "embedkit", "openvino"),
        Engine(f"embedkit openvino fp32, batches of {opts.batch_size}", "embedkit", "openvino",
               token_budget=0),
        Engine("embedkit onnx int8", "embedkit", "onnx", "int8"),
        Engine("embedkit openvino int8", "embedkit", "openvino", "int8"),
    ]
    return [e for e in engines if not opts.engines or e.name in opts.engines]


class Worker:
    """One engine's process: started, asked JSON commands, closed."""

    def __init__(self, engine: Engine, spec: dict[str, Any], python: str, log: Path) -> None:
        self.engine = engine
        self.log = log
        self._err = open(log, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen([python, str(WORKER), json.dumps(spec)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._err, text=True)
        self.started = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self._err.flush()
            tail = self.log.read_text(encoding="utf-8", errors="replace").strip()
            raise RuntimeError(f"{self.engine.name}: the worker stopped: "
                               f"{tail.splitlines()[-1] if tail else 'no output'}")
        return json.loads(line)

    def ask(self, cmd: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> dict[str, Any]:
        try:
            return self.ask({"cmd": "quit"}) if self.proc.poll() is None else {}
        finally:
            self.proc.wait(timeout=60)
            self._err.close()


def _spec(e: Engine, opts: SpeedOptions, st_folder: str, work: Path) -> dict[str, Any]:
    spec: dict[str, Any] = {"engine": e.engine, "backend": e.backend, "quantize": e.quantize,
                            "threads": opts.threads, "batch_size": opts.batch_size,
                            "max_length": opts.max_length, "token_budget": e.token_budget}
    if e.engine == "embedkit":
        spec.update(model_path=opts.model, export_root=str(work / "embedkit-exports"))
    else:
        spec.update(model_path=st_folder)
        if e.quantize == "int8" and e.backend == "onnx":
            spec.update(st_file=f"onnx/model_qint8_{int8_config()}.onnx",
                        st_int8_config=int8_config())
    return spec


def start_workers(engines: list[Engine], opts: SpeedOptions, work: Path) -> list[Worker]:
    """Each engine's worker, started one after the other (loading does not overlap)."""
    from embedkit.encoders import resolve_model_path

    st_folder = str(work / "st-model")  # a writable copy: sentence-transformers writes exports
    import shutil

    shutil.copytree(resolve_model_path(opts.model), st_folder)
    workers: list[Worker] = []
    for e in engines:
        python = (opts.st_python or sys.executable) if e.engine == "st" else sys.executable
        logger.info("starting %s", e.name)
        try:
            workers.append(Worker(e, _spec(e, opts, st_folder, work), python,
                                  work / f"{len(workers)}.log"))
        except RuntimeError as err:
            logger.warning("%s cannot run here: %s", e.name, err)
    return workers


def time_rounds(workers: list[Worker], sentences_file: Path, rounds: int) -> dict[str, list]:
    """Seconds per round for each engine; the order rotates so no engine always goes first."""
    times: dict[str, list[float]] = {w.engine.name: [] for w in workers}
    for r in range(rounds):
        order = workers[r % len(workers):] + workers[:r % len(workers)]
        for w in order:
            ans = w.ask({"cmd": "run", "sentences": str(sentences_file)})
            times[w.engine.name].append(float(ans["seconds"]))
            logger.info("round %d/%d: %s: %.1f sentences/s", r + 1, rounds, w.engine.name,
                        ans["n"] / ans["seconds"])
    return times


class _Lookup:
    """Vectors an engine computed, served to the STS evaluator as an encoder."""

    name = identity = "precomputed"
    default_pooling = "last-avg"

    def __init__(self, sentences: list[str], vectors: np.ndarray) -> None:
        self.rows = {s: i for i, s in enumerate(sentences)}
        self.vectors = vectors
        self.dim = int(vectors.shape[1])

    def model_max_length(self) -> int:
        return 512

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    def encode(self, sentences: Any, pooling: Any = None, **_: Any) -> np.ndarray:
        return self.vectors[[self.rows[s] for s in sentences]]

    def encode_multi(self, sentences: Any, poolings: Any, **_: Any) -> dict[str, np.ndarray]:
        return {str(p): self.encode(sentences) for p in poolings}


def quality(workers: list[Worker], opts: SpeedOptions, work: Path) -> dict[str, dict[str, Any]]:
    """Each engine's Spearman on each test split (seeded pairs), by the STS evaluator."""
    import numpy as np

    from embedkit.data import DEFAULT_TASKS, get_task, load_split
    from embedkit.evaluation import STSEvaluator

    specs = [get_task(t) for t in DEFAULT_TASKS]
    data = {s.name: {"test": load_split(s, "test", data_dir=opts.data_dir).sample(
        opts.spearman_pairs, opts.seed)} for s in specs}
    evaluator = STSEvaluator.from_splits(data, specs)
    sentences = sorted({t for d in data.values() for s in d.values()
                        for t in [*s.sentences1, *s.sentences2]})
    path = work / "quality.json"
    path.write_text(json.dumps(sentences, ensure_ascii=False), encoding="utf-8")
    out: dict[str, dict[str, Any]] = {}
    for w in workers:
        npy = work / f"{w.engine.name.replace(' ', '_').replace('/', '_')}.npy"
        w.ask({"cmd": "vectors", "sentences": str(path), "out": str(npy)})
        vectors = np.load(npy)
        metrics = evaluator(_Lookup(sentences, vectors))
        out[w.engine.name] = {"spearman": {s.name: metrics[f"{s.name}/test/spearman"]
                                           for s in specs},
                              "pairs": {s.name: data[s.name]["test"].n_pairs for s in specs},
                              "vectors": str(npy)}
        logger.info("quality: %s: %s", w.engine.name, ", ".join(
            f"{k} {100 * v:.2f}" for k, v in out[w.engine.name]["spearman"].items()))
    return out


def _cosine_gap(a_path: str, b_path: str) -> float:
    import numpy as np

    a, b = np.load(a_path), np.load(b_path)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return float(1.0 - cos.min())


def run_speed(opts: SpeedOptions, command: str | None = None,
              startup: Callable[[], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Time the engines on the same sentences and return the JSON-ready record; ``startup``
    measures the command line's start-up (the script passes :mod:`startup_probe`'s)."""
    import numpy as np

    sentences = sample_sentences(opts.sentences, opts.seed, opts.data_dir)
    with tempfile.TemporaryDirectory(prefix="embedkit-speed-") as tmp:
        work = Path(tmp)
        sentences_file = work / "sentences.json"
        sentences_file.write_text(json.dumps(sentences, ensure_ascii=False), encoding="utf-8")
        peak_before = gemm_peak(opts.threads)
        workers = start_workers(default_engines(opts), opts, work)
        try:
            times = time_rounds(workers, sentences_file, opts.rounds)
            scores = quality(workers, opts, work)
            ref = scores.get(REFERENCE)
            gaps = {n: _cosine_gap(q["vectors"], ref["vectors"]) if ref else None
                    for n, q in scores.items()}
        finally:
            closing = {w.engine.name: {**w.started, **w.close()} for w in workers}
        peak_after = gemm_peak(opts.threads)
    lengths = token_lengths(opts.model, sentences, opts.max_length)
    flops = flops_per_sentence(opts.model, lengths)
    engines = _engine_rows(workers, times, scores, gaps, closing, len(sentences), flops)
    gemm = statistics.median([*peak_before, *peak_after])
    settings = {**asdict(opts), "sentences": len(sentences), "engines": list(opts.engines)}
    settings.pop("extra")
    record = run_record("speed", command=command, encoder=None, settings=settings, data={})
    record.update({
        "engines": engines, "gemm": {"gflops": gemm, "runs": [*peak_before, *peak_after],
                                     "n": 2048, "threads": opts.threads},
        "flops": {"per_sentence": flops, "mean_tokens": float(np.mean(lengths))},
        "startup": startup() if startup is not None else None,
        "int8_config": int8_config()})
    record["targets"] = targets(record)
    return record


def _engine_rows(workers: list[Worker], times: dict[str, list], scores: dict[str, Any],
                 gaps: dict[str, float | None], closing: dict[str, dict[str, Any]], n: int,
                 flops: float) -> dict[str, dict[str, Any]]:
    ref = scores.get(REFERENCE, {}).get("spearman", {})
    rows: dict[str, dict[str, Any]] = {}
    for w in workers:
        name = w.engine.name
        med = statistics.median(times[name])
        sps = scores[name]["spearman"]
        rows[name] = {
            **asdict(w.engine), "precision": w.engine.precision, "seconds": times[name],
            "median_seconds": med, "sentences_per_second": n / med,
            "gflops": flops * n / med / 1e9, "peak_mb": closing[name].get("peak_mb"),
            "load_seconds": closing[name].get("load_seconds"), "spearman": sps,
            "spearman_delta": {t: (v - ref[t]) if t in ref else None for t, v in sps.items()},
            "pairs": scores[name]["pairs"], "max_cosine_gap": gaps.get(name)}
    return rows


def render(record: dict[str, Any]) -> str:
    """The Markdown report (:mod:`speed_report`)."""
    from speed_report import render as _render

    return _render(record)


# --------------------------------------------------------------------------------------------
# the script: python benchmarks/bench_speed.py [options]

SCRIPT = "bench_speed.py"


def build_parser() -> argparse.ArgumentParser:
    from embedkit.cli.common import add_data_dir, positive_int, thread_count

    s = make_parser(SCRIPT,
        "Time sentence-transformers (torch, onnx, openvino, int8) and embedkit "
        "(torch, onnx, openvino, int8, batches by count) on the same distinct "
        "sentences, each engine in its own process, interleaved rounds, median "
        "reported; each engine's Spearman on the five test sets, GFLOP/s against "
        "this CPU's measured GEMM rate, peak memory and start-up. Example: "
        "python benchmarks/bench_speed.py --sentences 20000 --data-dir ../shared/data "
        "--st-python .venv-st/bin/python --out eval/speed.md")
    d = SpeedOptions()
    s.add_argument("--model", default=d.model)
    s.add_argument("--sentences", type=positive_int, default=d.sentences)
    s.add_argument("--batch-size", type=positive_int, default=d.batch_size)
    s.add_argument("--max-length", type=positive_int, default=d.max_length)
    s.add_argument("--threads", type=thread_count, default=d.threads)
    s.add_argument("--rounds", type=positive_int, default=d.rounds)
    s.add_argument("--seed", type=int, default=d.seed)
    s.add_argument("--spearman-pairs", type=int, default=d.spearman_pairs,
                   help="pairs per task for the quality columns (0: all)")
    s.add_argument("--st-python", metavar="PYTHON",
                   help="interpreter with sentence-transformers[onnx,openvino] for its engines "
                        "(default: this one)")
    s.add_argument("--engines", metavar="NAMES",
                   help="semicolon-separated engine names to run (default: all)")
    add_data_dir(s)
    s.add_argument("--out", default="eval/speed.md")
    add_from_record(s, "eval/speed.json")
    s.set_defaults(func=run_speed_cmd)
    return s


def run_speed_cmd(args: argparse.Namespace) -> int:
    from embedkit.cli.common import check_output_path

    check_output_path(args.out, "out")
    out = Path(args.out)
    if args.from_record:
        record = read_record(args.from_record, SCRIPT, build_parser(), "speed")
    else:
        engines = tuple(e.strip() for e in (args.engines or "").split(";") if e.strip())
        opts = SpeedOptions(args.model, args.sentences, args.batch_size, args.max_length,
                            args.threads, args.rounds, args.seed, args.spearman_pairs,
                            args.data_dir, args.st_python, engines)
        from startup_probe import startup_profile

        record = run_speed(opts, command=args.command_line,
                           startup=lambda: startup_profile(opts.model, opts.data_dir))
    write_report(out, record, render(record))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), SCRIPT, argv)


if __name__ == "__main__":
    sys.exit(main())
