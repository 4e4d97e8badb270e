"""Encoding speed: embedkit (float32, bfloat16) against ``SentenceTransformer.encode``.

``embedkit report speed`` (``make bench-speed``) runs :func:`run_speed`.
All engines encode the same sentences (a seeded sample of the unique sentences of the five
test splits: no duplicates, so embedkit's de-duplication gives it no advantage), with the
same max length, batch size and pooling (mean of the last layer, m3e-small's own), no cache.
Rounds interleave the engines so that background load hits them alike; the median round is
reported. A second part measures how far bfloat16 moves each task's Spearman.
"""

from __future__ import annotations

import logging
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from embedkit.data import DEFAULT_TASKS, get_task, load_split
from embedkit.encoders import EncoderConfig, SentenceEncoder
from embedkit.evaluation import STSEvaluator
from embedkit.experiments.record import run_record
from embedkit.experiments.report import provenance_lines

logger = logging.getLogger(__name__)
REFERENCE = "sentence-transformers float32"


@dataclass(frozen=True)
class SpeedOptions:
    """What the speed report measures (defaults: ``make bench-speed``)."""

    model: str = "m3e-small"
    sentences: int = 20000
    batch_size: int = 64
    max_length: int = 64
    dtypes: tuple[str, ...] = ("float32", "bfloat16")
    rounds: int = 1
    device: str = "cpu"
    seed: int = 0
    spearman_pairs: int = 2000   # pairs per task for the dtype comparison (0: all)
    data_dir: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def sample_sentences(n: int, seed: int, data_dir: str | None) -> list[str]:
    """``n`` distinct sentences drawn (seeded) from the five test splits."""
    pool: list[str] = []
    for t in DEFAULT_TASKS:
        pool.extend(load_split(get_task(t), "test", data_dir=data_dir).unique_sentences())
    pool = list(dict.fromkeys(pool))
    rng = random.Random(seed)
    return rng.sample(pool, min(n, len(pool)))


def _st_model(path: str, device: str, max_length: int) -> Any:
    from sentence_transformers import SentenceTransformer

    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)  # "creating mean pooling"
    st = SentenceTransformer(path, device=device)
    st.max_seq_length = max_length
    return st


def _engines(opts: SpeedOptions) -> dict[str, Callable[[list[str]], np.ndarray]]:
    encoders = {f"embedkit {d}": EncoderConfig(opts.model, device=opts.device, dtype=d,
                                               batch_size=opts.batch_size, cache=False,
                                               pooling="last-avg", progress=False).build()
                for d in opts.dtypes}
    first: Any = next(iter(encoders.values()))
    st = _st_model(first.path, opts.device, opts.max_length)
    engines: dict[str, Callable[[list[str]], np.ndarray]] = {REFERENCE: lambda s: st.encode(
        s, batch_size=opts.batch_size, convert_to_numpy=True, show_progress_bar=False)}
    for name, enc in encoders.items():
        engines[name] = _encode_fn(enc, opts.max_length)
    return engines


def _encode_fn(enc: SentenceEncoder, max_length: int) -> Callable[[list[str]], np.ndarray]:
    return lambda s: enc.encode(s, max_length=max_length)


def time_engines(opts: SpeedOptions, sentences: list[str]
                 ) -> tuple[dict[str, list[float]], dict[str, np.ndarray]]:
    """Seconds per round for each engine, and the vectors of the last round."""
    engines = _engines(opts)
    for fn in engines.values():
        fn(sentences[:256])  # warm-up
    times: dict[str, list[float]] = {k: [] for k in engines}
    vectors: dict[str, np.ndarray] = {}
    for r in range(opts.rounds):
        for name, fn in engines.items():
            t0 = time.perf_counter()
            vectors[name] = fn(sentences)
            times[name].append(time.perf_counter() - t0)
            logger.info("round %d/%d: %s: %.1f sentences/s", r + 1, opts.rounds, name,
                        len(sentences) / times[name][-1])
    return times, vectors


def spearman_shift(opts: SpeedOptions) -> list[dict[str, Any]]:
    """Each task's test Spearman per dtype (on a seeded sample of pairs, or all if 0), scored
    by the STS evaluator."""
    specs = [get_task(t) for t in DEFAULT_TASKS]
    data = {s.name: {"test": load_split(s, "test", data_dir=opts.data_dir).sample(
        opts.spearman_pairs, opts.seed)} for s in specs}
    evaluator = STSEvaluator.from_splits(data, specs)
    encs: dict[str, SentenceEncoder] = {d: EncoderConfig(
        opts.model, device=opts.device, dtype=d, batch_size=opts.batch_size,
        pooling="last-avg").build() for d in opts.dtypes}
    scores = {d: evaluator(enc) for d, enc in encs.items()}
    rows = []
    for s in specs:
        row: dict[str, Any] = {"task": s.name, "pairs": data[s.name]["test"].n_pairs}
        row.update({d: scores[d][f"{s.name}/test/spearman"] for d in opts.dtypes})
        logger.info("%s: %s", s.name, ", ".join(f"{d} {100 * row[d]:.2f}" for d in opts.dtypes))
        rows.append(row)
    return rows


def _targets(engines: dict[str, dict[str, Any]], shift: list[dict[str, Any]],
             dtypes: tuple[str, ...]) -> list[str]:
    st_sps = engines[REFERENCE]["sentences_per_second"]
    targets = []
    if "embedkit float32" in engines:
        r = engines["embedkit float32"]["sentences_per_second"] / st_sps
        targets.append(f"float32 at least as fast as sentence-transformers: {r:.2f}x "
                       f"({'met' if r >= 1 else 'NOT met'})")
    if "embedkit bfloat16" in engines:
        r = engines["embedkit bfloat16"]["sentences_per_second"] / st_sps
        targets.append(f"bfloat16 at least 1.8x sentence-transformers: {r:.2f}x "
                       f"({'met' if r >= 1.8 else 'NOT met'})")
    if shift:
        worst = max(abs(row[dtypes[-1]] - row[dtypes[0]]) for row in shift) * 100
        targets.append(f"every Spearman within 0.1 points of float32: largest change {worst:.2f} "
                       f"({'met' if worst <= 0.1 else 'NOT met'})")
    return targets


def run_speed(opts: SpeedOptions, command: str | None = None) -> dict[str, Any]:
    """Time the engines on the same sentences and return the JSON-ready record."""
    sentences = sample_sentences(opts.sentences, opts.seed, opts.data_dir)
    times, vectors = time_engines(opts, sentences)
    engines = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        engines[name] = {"seconds": ts, "median_seconds": med,
                         "sentences_per_second": len(sentences) / med,
                         "max_abs_diff_vs_st": float(np.abs(vectors[name]
                                                            - vectors[REFERENCE]).max())}
    shift = spearman_shift(opts) if len(opts.dtypes) > 1 else []
    settings = {**asdict(opts), "sentences": len(sentences), "dtypes": list(opts.dtypes)}
    settings.pop("extra")
    record = run_record("speed", command=command, encoder=None, settings=settings, data={})
    record.update({"engines": engines, "spearman": shift,
                   "targets": _targets(engines, shift, opts.dtypes)})
    return record


def render(record: dict[str, Any]) -> str:
    """The Markdown report of a :func:`run_speed` record."""
    ref = REFERENCE
    lines = ["# Encoding speed: embedkit vs sentence-transformers", ""]
    lines += provenance_lines(record)
    s = record["settings"]
    lines += [f"- Model: `{s['model']}`, mean pooling of the last layer, max length "
              f"{s['max_length']}, batch size {s['batch_size']}, device {s['device']}, "
              f"{s['sentences']} distinct sentences from the five test splits (seed {s['seed']}), "
              f"{s['rounds']} interleaved round(s), median reported, no cache", "",
              "## Sentences per second", "",
              "| engine | sentences/s | ratio to sentence-transformers | max abs diff vs sentence-transformers |",
              "|---|---:|---:|---:|"]
    for name, r in record["engines"].items():
        lines.append(f"| {name} | {r['sentences_per_second']:.1f} | "
                     f"{r['sentences_per_second'] / record['engines'][ref]['sentences_per_second']:.2f}x"
                     f" | {r['max_abs_diff_vs_st']:.2e} |")
    if record.get("spearman"):
        dts = s["dtypes"]
        lines += ["", "## Spearman x 100 by dtype (test splits"
                  + (f", {s['spearman_pairs']} seeded pairs per task)" if s["spearman_pairs"]
                     else ")"), "",
                  "| task | pairs | " + " | ".join(dts) + " | change |",
                  "|---|---:|" + "---:|" * (len(dts) + 1)]
        for r in record["spearman"]:
            change = 100 * (r[dts[-1]] - r[dts[0]])
            lines.append(f"| {r['task']} | {r['pairs']} | "
                         + " | ".join(f"{100 * r[d]:.2f}" for d in dts) + f" | {change:+.2f} |")
    lines += ["", "## Targets", ""] + [f"- {t}" for t in record["targets"]]
    bf16 = record["machine"].get("cpu_bf16", "unknown")
    if s["device"] == "cpu":
        lines += ["", f"Native bfloat16 instructions on this CPU: {bf16}. Without AVX512-BF16 or "
                  "AMX, torch runs bfloat16 matrix products through conversions to float32, so "
                  "bfloat16 is slower than float32 here; the bfloat16 speed target is for "
                  "hardware with native bfloat16 (a GPU, or such a CPU). The Spearman rows show "
                  "what bfloat16 costs in accuracy wherever it runs."]
    lines += [""]
    return "\n".join(lines)
