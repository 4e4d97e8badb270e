"""Encoding speed through the commands users run: every embedkit engine is an ``embedkit
encode`` process, against sentence-transformers' own fast paths, on the same sentences.

``python benchmarks/bench_speed.py`` (``make bench-speed``) runs :func:`run_speed`:

- sentences: the union of a seeded sample of pairs (``pairs`` per test split of the five tasks),
  so that the vectors of the timed runs also give each engine's Spearman (the STS evaluator)
  and its largest 1 - cosine against embedkit torch fp32;
- each engine first runs once on a few sentences (its export built, kept in the work folder's
  cache: the "export / first start" column), then ``rounds`` interleaved rounds (the order
  rotates), each engine a fresh process per round: ``embedkit encode ... --no-cache`` (its
  speed: the encode manifest's sentences/s over the model's own time) or, for
  sentence-transformers, :mod:`speed_worker` under its own environment (``st_python``);
  medians count; each process's wall time and peak memory measured from outside
  (:mod:`speed_engines`);
- an engine whose flags the installed embedkit refuses (or whose export fails) is reported as
  skipped with its one-line reason;
- hardware: float32 (and bfloat16) GEMM rates of this CPU (:mod:`speed_cost`);
- start-up (``embedkit --version``, a 30-pair bench with a cached export) and the cold
  ``make bench`` command with an empty cache (:mod:`startup_probe`); a profile of the fastest
  embedkit engine of each precision class (:mod:`speed_profile`).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _common import add_report_files, make_parser, recorded, run, write_report
from speed_cost import flops_per_sentence, gemm_peak, token_lengths
from speed_engines import (
    REFERENCE,
    Engine,
    Finished,
    Shape,
    embedkit_env,
    encode_argv,
    int8_config,
    run_process,
    select_engines,
    shown_command,
    st_spec,
)
from speed_report import targets

from embedkit.runs.record import run_record

if TYPE_CHECKING:  # numpy: imported where vectors are read, not to parse arguments
    import numpy as np

logger = logging.getLogger("embedkit.benchmarks.bench_speed")  # shown as embedkit's own log lines
WORKER = Path(__file__).with_name("speed_worker.py")
SCHEMA = 2        # the record's layout: 2 = engines as `embedkit encode` processes
WARM_SENTENCES = 64
PROCESS_TIMEOUT = 1800   # seconds an engine's process may take (an export with calibration)


@dataclass(frozen=True)
class SpeedOptions:
    """What the speed report measures (defaults: ``make bench-speed``)."""

    model: str = "m3e-small"
    pairs: int = 2000              # seeded pairs per test split; their sentences are timed
    sentences: int = 0             # at most this many sentences (0: every sentence of the pairs)
    batch_size: int = 64
    max_length: int = 64
    threads: int = 2
    rounds: int = 3
    seed: int = 0
    data_dir: str | None = None
    st_python: str | None = None   # interpreter for sentence-transformers' engines
    engines: tuple[str, ...] = ()  # names to run (empty: all)
    cold_bench: bool = True
    profile: bool = True
    startup: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> Shape:
        return Shape(self.model, self.threads, self.batch_size, self.max_length)


# --------------------------------------------------------------------------------------------
# the sentences: the pairs' union


def sample_pairs(opts: SpeedOptions) -> tuple[dict[str, Any], list[str]]:
    """The seeded pairs of each test split (the first pairs of each, round-robin, while their
    sentences fit in ``opts.sentences``) and their distinct sentences, sorted."""
    from embedkit.data import DEFAULT_TASKS, get_task, load_split

    splits = {t: load_split(get_task(t), "test", data_dir=opts.data_dir).sample(
        opts.pairs, opts.seed) for t in DEFAULT_TASKS}
    keep = {t: 0 for t in splits}
    full: set[str] = set()  # tasks whose next pair did not fit
    seen: set[str] = set()
    for i in range(max(s.n_pairs for s in splits.values())):
        for t, s in splits.items():
            if i >= s.n_pairs or t in full:
                continue
            new = {s.sentences1[i], s.sentences2[i]} - seen
            if opts.sentences and len(seen) + len(new) > opts.sentences:
                full.add(t)
                continue
            seen |= new
            keep[t] = i + 1
    kept = {t: _head(s, keep[t]) for t, s in splits.items() if keep[t]}
    return kept, sorted(x for x in seen if x.strip())


def _head(split: Any, n: int) -> Any:
    """The first ``n`` pairs of a split (its ``sha256`` names the parent and the count)."""
    import dataclasses

    from embedkit.provenance import sha256_text

    if n >= split.n_pairs:
        return split
    return dataclasses.replace(split, sentences1=list(split.sentences1[:n]),
                               sentences2=list(split.sentences2[:n]), labels=split.labels[:n],
                               sha256=sha256_text(f"{split.sha256}:head({n})"),
                               source=f"{split.source}#head({n})")


def write_corpus(sentences: list[str], path: Path) -> Path:
    path.write_text("".join(json.dumps({"text": s}, ensure_ascii=False) + "\n"
                            for s in sentences), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# one engine, one process


@dataclass
class Bench:
    """The run's shared state: work folder, corpus files, options."""

    opts: SpeedOptions
    work: Path
    corpus: Path
    warm: Path
    cache: Path
    st_python: str
    log_n: int = 0

    def log(self, name: str) -> Path:
        self.log_n += 1
        return self.work / "logs" / f"{self.log_n:03d}-{name.replace(' ', '_')[:40]}.log"

    def out(self, e: Engine) -> Path:
        return self.work / "out" / e.name.replace(" ", "_").replace("/", "_").replace(",", "")

    def st_folder(self, e: Engine) -> Path:
        return self.work / "st" / self.out(e).name


def run_engine(b: Bench, e: Engine, *, warm: bool) -> dict[str, Any]:
    """One process of ``e``: the warm-up (``warm``: a few sentences; exports built) or a timed
    run of the whole corpus. ``{"ok": False, "reason": ...}`` when the process failed."""
    if e.engine == "embedkit":
        out = b.out(e).with_name(b.out(e).name + ("-warm" if warm else ""))
        argv = encode_argv(e, b.opts.shape, b.warm if warm else b.corpus, out, b.cache)
        done = run_process(argv, b.log(e.name), env=embedkit_env(), timeout=PROCESS_TIMEOUT)
        return _encode_result(done, out, shown_command(argv).replace(str(b.work), "WORK"))
    spec = {**st_spec(e, b.opts.shape, b.st_folder(e)), "prepare": warm,
            "sentences": str(b.corpus), "out": str(b.out(e)) + ".npy"}
    done = run_process([b.st_python, str(WORKER), json.dumps(spec)], b.log(e.name),
                       timeout=PROCESS_TIMEOUT)
    line = next((x for x in done.stdout.splitlines() if x.startswith("SPEED ")), None)
    if done.code != 0 or line is None:
        return {"ok": False, "reason": done.reason(), "wall_s": done.wall_s}
    got = json.loads(line[len("SPEED "):])
    res = {"ok": True, "wall_s": done.wall_s, "peak_mb": done.peak_mb,
           "ran_at": got["ran_at"], "load_seconds": got["load_seconds"]}
    if not warm:
        res.update(sentences_per_second=got["n"] / got["seconds"], seconds=got["seconds"],
                   vectors=spec["out"])
    return res


def _encode_result(done: Finished, out: Path, command: str) -> dict[str, Any]:
    if done.code != 0:
        return {"ok": False, "reason": done.reason(), "wall_s": done.wall_s}
    man = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    t = man.get("timings") or {}
    seconds = t.get("seconds_model") or t.get("seconds_encoding")
    sps = t.get("sentences_per_second") or (t["rows_encoded"] / seconds)
    return {"ok": True, "wall_s": done.wall_s, "peak_mb": done.peak_mb,
            "sentences_per_second": float(sps), "seconds": seconds, "vectors": str(out),
            "command": command}


def warm_up(b: Bench, engines: list[Engine]) -> tuple[list[Engine], dict[str, Any],
                                                      dict[str, str]]:
    """Each engine once on a few sentences (exports built): the engines that ran, their
    warm-up (export / first start), and the skipped ones with their reason."""
    ran, first, skipped = [], {}, {}
    for e in engines:
        logger.info("export / first start: %s", e.name)
        res = run_engine(b, e, warm=True)
        if not res["ok"]:
            logger.warning("%s skipped: %s", e.name, res["reason"])
            skipped[e.name] = res["reason"]
            continue
        ran.append(e)
        first[e.name] = res
    return ran, first, skipped


def time_rounds(b: Bench, engines: list[Engine], skipped: dict[str, str]
                ) -> dict[str, list[dict[str, Any]]]:
    """Each engine's timed runs, ``rounds`` interleaved rounds (the order rotates)."""
    runs: dict[str, list[dict[str, Any]]] = {e.name: [] for e in engines}
    live = list(engines)
    for r in range(b.opts.rounds):
        k = r % max(len(live), 1)
        for e in live[k:] + live[:k]:
            if e.name in skipped:
                continue
            res = run_engine(b, e, warm=False)
            if not res["ok"]:
                logger.warning("%s failed in round %d: %s", e.name, r + 1, res["reason"])
                skipped[e.name] = res["reason"]
                continue
            runs[e.name].append(res)
            logger.info("round %d/%d: %s: %.1f sentences/s (process %.1f s)", r + 1,
                        b.opts.rounds, e.name, res["sentences_per_second"], res["wall_s"])
    return {n: r for n, r in runs.items() if n not in skipped}


# --------------------------------------------------------------------------------------------
# quality from the timed runs' vectors


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


def read_vectors(path: str, sentences: list[str]) -> np.ndarray:
    """An engine's vectors in corpus order: an encode folder's shards (checked to hold the
    corpus's texts in order) or a worker's ``.npy``."""
    import numpy as np

    if path.endswith(".npy"):
        return np.load(path)
    from embedkit.store.encode_folder import EncodeFolder

    texts, parts = [], []
    for _, t, x in EncodeFolder.open(path).shards():
        texts.extend(t)
        parts.append(x)
    if texts != sentences:
        raise RuntimeError(f"{path}: its texts are not the corpus's, in order")
    return np.concatenate(parts)


def quality(pairs: dict[str, Any], sentences: list[str], vectors: dict[str, str]
            ) -> dict[str, dict[str, Any]]:
    """Each engine's Spearman on each test split's pairs (the STS evaluator) and its largest
    1 - cosine against the reference's vectors."""
    import numpy as np

    from embedkit.data import get_task
    from embedkit.evaluation import STSEvaluator

    specs = [get_task(t) for t in pairs]
    evaluator = STSEvaluator.from_splits({t: {"test": s} for t, s in pairs.items()}, specs)
    arrays = {n: read_vectors(p, sentences) for n, p in vectors.items()}
    ref = arrays.get(REFERENCE)
    out: dict[str, dict[str, Any]] = {}
    for name, x in arrays.items():
        metrics = evaluator(_Lookup(sentences, x))
        gap = None
        if ref is not None:
            cos = (x * ref).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(ref, axis=1)
            gap = float(1.0 - cos.min())
        out[name] = {"spearman": {t: float(metrics[f"{t}/test/spearman"]) for t in pairs},
                     "max_cosine_gap": gap}
    return out


# --------------------------------------------------------------------------------------------
# the run


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in runs if r.get(key) is not None]
    return float(statistics.median(vals)) if vals else None


def engine_rows(engines: list[Engine], runs: dict[str, list[dict[str, Any]]],
                first: dict[str, Any], scores: dict[str, Any], flops: float
                ) -> dict[str, dict[str, Any]]:
    """The record's engine rows (medians of the rounds; the precision an engine really ran
    at: a sentence-transformers OpenVINO engine left to its default reports it)."""
    ref = scores.get(REFERENCE, {}).get("spearman", {})
    rows: dict[str, dict[str, Any]] = {}
    for e in engines:
        if e.name not in runs:
            continue
        r, sc = runs[e.name], scores[e.name]
        ran = first[e.name].get("ran_at")
        precision = e.precision if e.precision != "default" else (
            ran if ran in ("fp32", "bf16") else "fp32")
        sps = _median(r, "sentences_per_second") or 0.0
        rows[e.name] = {
            **asdict(e), "asked": e.precision, "precision": precision,
            "ran_at": ran or precision,
            "sentences_per_second": sps, "rates": [x["sentences_per_second"] for x in r],
            "wall_s": _median(r, "wall_s"), "walls": [x["wall_s"] for x in r],
            "first_start_s": first[e.name]["wall_s"], "peak_mb": _median(r, "peak_mb"),
            "gflops": flops * sps / 1e9, "command": r[0].get("command"),
            "spearman": sc["spearman"], "max_cosine_gap": sc["max_cosine_gap"],
            "spearman_delta": {t: (v - ref[t]) if t in ref else None
                               for t, v in sc["spearman"].items()}}
    return rows


def run_speed(opts: SpeedOptions, command: str | None = None,
              startup: Callable[[Path], dict[str, Any]] | None = None,
              cold: Callable[[Path], dict[str, Any]] | None = None,
              profile: Callable[[dict[str, Any], Path], dict[str, Any]] | None = None
              ) -> dict[str, Any]:
    """Time the engines on the same sentences; the JSON-ready record. ``startup(work)``,
    ``cold(work)`` and ``profile(engines, work)`` add their sections (the script passes
    :mod:`startup_probe`'s and :mod:`speed_profile`'s)."""
    import numpy as np

    from embedkit.encoders import resolve_model_path

    pairs, sentences = sample_pairs(opts)
    engines = select_engines(opts.engines)
    with tempfile.TemporaryDirectory(prefix="embedkit-speed-") as tmp:
        work = Path(tmp)
        (work / "logs").mkdir()
        (work / "out").mkdir()
        b = Bench(opts, work, write_corpus(sentences, work / "sentences.jsonl"),
                  write_corpus(sentences[:WARM_SENTENCES], work / "warm.jsonl"),
                  work / "cache", opts.st_python or sys.executable)
        model_path = resolve_model_path(opts.model)
        for e in engines:
            if e.engine == "st":  # a writable copy each: sentence-transformers saves exports
                shutil.copytree(model_path, b.st_folder(e))
        peak_before = gemm_peak(opts.threads)
        ran, first, skipped = warm_up(b, engines)
        runs = time_rounds(b, ran, skipped)
        peak_after = gemm_peak(opts.threads)
        bf16 = gemm_peak(opts.threads, dtype="bfloat16", repeats=3)
        scores = quality(pairs, sentences, {n: r[-1]["vectors"] for n, r in runs.items()})
        lengths = token_lengths(opts.model, sentences, opts.max_length)
        flops = flops_per_sentence(opts.model, lengths)
        rows = engine_rows(ran, runs, first, scores, flops)
        extra = {"runtimes": {"embedkit": runtime_versions(sys.executable, work),
                              "st": runtime_versions(b.st_python, work)},
                 "startup": startup(work) if startup and opts.startup else None,
                 "cold_bench": cold(work) if cold and opts.cold_bench else None,
                 "profile": profile(rows, work) if profile and opts.profile else None}
    settings = {**asdict(opts), "sentences": len(sentences), "max_sentences": opts.sentences,
                "engines": list(opts.engines)}
    settings.pop("extra")
    record = run_record("speed", command=command, encoder=None, settings=settings, data={})
    record.update({
        "schema": SCHEMA, "engines": rows, "skipped": skipped,
        "pairs": {t: s.n_pairs for t, s in pairs.items()},
        "gemm": {"gflops": statistics.median([*peak_before, *peak_after]),
                 "runs": [*peak_before, *peak_after], "n": 2048, "threads": opts.threads,
                 "bf16_gflops": statistics.median(bf16) if bf16 else None},
        "flops": {"per_sentence": flops, "mean_tokens": float(np.mean(lengths))},
        "int8_config": int8_config(), **extra})
    record["targets"] = targets(record)
    return record


_VERSIONS = """
import importlib.metadata as m, json
names = %r
got = {}
for n in names:
    try:
        got[n] = m.version(n)
    except m.PackageNotFoundError:
        pass
print(json.dumps(got))
"""
RUNTIMES = ("onnxruntime", "openvino", "nncf", "optimum", "optimum-intel",
            "sentence-transformers", "transformers", "torch")


def runtime_versions(python: str, work: Path) -> dict[str, str]:
    """The runtimes' versions under ``python`` (this environment, or sentence-transformers')."""
    done = run_process([python, "-c", _VERSIONS % (RUNTIMES,)], work / "logs" / "versions.log")
    try:
        return json.loads(done.stdout.strip().splitlines()[-1]) if done.code == 0 else {}
    except (ValueError, IndexError):
        return {}


def reprofile(record: dict[str, Any], command: str | None) -> dict[str, Any]:
    """The record with its profile section measured again (``--from-record F --reprofile``):
    the same sentences (drawn again from the record's settings), the same fastest engines, their
    exports built afresh; the timed rounds are kept as they are. The command is recorded
    (``profile_command``) and the report names it."""
    from speed_profile import profile_fastest

    s = record["settings"]
    opts = SpeedOptions(s["model"], s["pairs"], s["max_sentences"], s["batch_size"],
                        s["max_length"], s["threads"], s["rounds"], s["seed"], s["data_dir"])
    _, sentences = sample_pairs(opts)
    with tempfile.TemporaryDirectory(prefix="embedkit-profile-") as tmp:
        work = Path(tmp)
        write_corpus(sentences, work / "sentences.jsonl")
        record["profile"] = profile_fastest(record["engines"], opts, work / "cache")
    record["profile_command"] = command
    record["targets"] = targets(record)
    return record


def render(record: dict[str, Any]) -> str:
    """The Markdown report (:mod:`speed_report`)."""
    from speed_report import render as _render

    return _render(record)


# --------------------------------------------------------------------------------------------
# the script: python benchmarks/bench_speed.py [options]

SCRIPT = "bench_speed.py"


def build_parser() -> argparse.ArgumentParser:
    from embedkit.cli.common import add_data_dir, int_at_least, positive_int, thread_count

    s = make_parser(SCRIPT,
        "Time embedkit's engines (each an `embedkit encode` process: torch fp32 / bf16 / a "
        "token budget, onnx and openvino fp32 / bf16 / int8 / int8-static) against "
        "sentence-transformers (torch, onnx, openvino at its default precision and at f32, "
        "int8) on the sentences of seeded test pairs, a fresh process per engine per round, "
        "interleaved rounds, medians; Spearman per test set from the same vectors, GFLOP/s "
        "against this CPU's GEMM rate, peak memory, start-up, the cold `make bench`, and a "
        "profile of the fastest engines. Example: python benchmarks/bench_speed.py "
        "--data-dir ../shared/data --st-python .venv-st/bin/python --out eval/speed.md")
    d = SpeedOptions()
    s.add_argument("--model", default=d.model)
    s.add_argument("--pairs", type=positive_int, default=d.pairs,
                   help="seeded pairs per test split whose sentences are timed")
    s.add_argument("--sentences", type=int_at_least(0, "0 (all) or more"), default=d.sentences,
                   help="at most this many sentences (0: every sentence of the pairs)")
    s.add_argument("--batch-size", type=positive_int, default=d.batch_size)
    s.add_argument("--max-length", type=positive_int, default=d.max_length)
    s.add_argument("--threads", type=thread_count, default=d.threads)
    s.add_argument("--rounds", type=positive_int, default=d.rounds)
    s.add_argument("--seed", type=int, default=d.seed)
    s.add_argument("--st-python", metavar="PYTHON",
                   help="interpreter with sentence-transformers[onnx,openvino] for its engines "
                        "(default: this one)")
    s.add_argument("--engines", metavar="NAMES",
                   help="semicolon-separated engine names to run (default: all)")
    s.add_argument("--cold-bench", action=argparse.BooleanOptionalAction, default=True,
                   help="time the `make bench` command with an empty cache")
    s.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True,
                   help="profile the fastest embedkit engine of each precision class")
    s.add_argument("--reprofile", action="store_true",
                   help="with --from-record: measure the profile section again (the same "
                        "sentences and engines), keeping the timed rounds")
    s.add_argument("--startup", action=argparse.BooleanOptionalAction, default=True,
                   help="time `embedkit --version` and a 30-pair bench with a cached export")
    add_data_dir(s)
    add_report_files(s, "eval/speed")
    s.set_defaults(func=run_speed_cmd)
    return s


def run_speed_cmd(args: argparse.Namespace) -> int:
    out = Path(args.out)
    record = recorded(args, SCRIPT, build_parser, "speed")
    if record is not None:
        if record.get("schema") != SCHEMA:
            from embedkit.errors import ConfigError

            raise ConfigError(f"{args.from_record}: a speed record of the first layout (a "
                              "private harness, before schema 2); this report renders records "
                              "of `embedkit encode` processes: rerun make bench-speed",
                              param="from_record")
        if args.reprofile:
            record = reprofile(record, args.command_line)
    else:
        engines = tuple(e.strip() for e in (args.engines or "").split(";") if e.strip())
        opts = SpeedOptions(args.model, args.pairs, args.sentences, args.batch_size,
                            args.max_length, args.threads, args.rounds, args.seed,
                            args.data_dir, args.st_python, engines,
                            args.cold_bench, args.profile, args.startup)
        from speed_profile import profile_fastest
        from startup_probe import cold_bench, startup_profile

        record = run_speed(
            opts, command=args.command_line,
            startup=lambda w: startup_profile(opts.model, opts.data_dir, w / "startup"),
            cold=lambda w: cold_bench(opts.data_dir, w / "cold"),
            profile=lambda rows, w: profile_fastest(rows, opts, w / "cache"))
    write_report(out, record, render(record))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), SCRIPT, argv)


if __name__ == "__main__":
    sys.exit(main())
