"""Encoding speed: embedkit (float32, bfloat16) against ``SentenceTransformer.encode``.

Run as ``python -m embedkit.experiments.speed --out eval/speed.md`` (``make bench-speed``).
All engines encode the same sentences (a seeded sample of the unique sentences of the five
test splits: no duplicates, so embedkit's de-duplication gives it no advantage), with the
same max length, batch size and pooling (mean of the last layer, m3e-small's own), no cache.
Rounds interleave the engines so that background load hits them alike; the median round is
reported. A second part measures how far bfloat16 moves each task's Spearman.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time

import numpy as np

from embedkit.io.atomic import atomic_write_json, atomic_write_text
from embedkit.data import DEFAULT_TASKS, get_task, load_split
from embedkit.encoders import Encoder
from embedkit.evaluation.metrics import cosine_scores, spearman
from embedkit.provenance import library_versions, machine_description
from embedkit.experiments.report import provenance_lines


def sample_sentences(n: int, seed: int, data_dir) -> list[str]:
    """``n`` distinct sentences drawn (seeded) from the five test splits."""
    pool: list[str] = []
    for t in DEFAULT_TASKS:
        pool.extend(load_split(get_task(t), "test", data_dir=data_dir).unique_sentences())
    pool = list(dict.fromkeys(pool))
    rng = random.Random(seed)
    return rng.sample(pool, min(n, len(pool)))


def _st_model(path: str, device: str, max_length: int):
    import logging

    from sentence_transformers import SentenceTransformer

    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)  # "creating mean pooling"
    st = SentenceTransformer(path, device=device)
    st.max_seq_length = max_length
    return st


def time_engines(model: str, sentences: list[str], *, dtypes: list[str], batch_size: int,
                 max_length: int, rounds: int, device: str) -> tuple[dict, dict]:
    """Seconds per round for each engine, and the vectors of the last round."""
    encoders = {f"embedkit {d}": Encoder(model, "last-avg", dtype=d, device=device, cache=None)
                for d in dtypes}
    st = _st_model(next(iter(encoders.values())).path, device, max_length)
    engines = {"sentence-transformers float32": lambda s: st.encode(
        s, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)}
    for name, enc in encoders.items():
        engines[name] = lambda s, e=enc: e.encode(s, max_length=max_length, batch_size=batch_size)
    warm = sentences[:256]
    for fn in engines.values():
        fn(warm)
    times: dict[str, list[float]] = {k: [] for k in engines}
    vectors: dict[str, np.ndarray] = {}
    for r in range(rounds):
        for name, fn in engines.items():
            t0 = time.perf_counter()
            vectors[name] = fn(sentences)
            times[name].append(time.perf_counter() - t0)
            print(f"round {r + 1}/{rounds}: {name}: {len(sentences) / times[name][-1]:.1f} "
                  "sentences/s", file=sys.stderr)
    return times, vectors


def spearman_shift(model: str, dtypes: list[str], pairs_per_task: int, seed: int, data_dir,
                   batch_size: int, device: str) -> list[dict]:
    """Each task's test Spearman per dtype (on a seeded sample of pairs, or all if 0)."""
    from embedkit.encoders.cache import EmbeddingCache

    cache = EmbeddingCache()
    encs = {d: Encoder(model, "last-avg", dtype=d, device=device, cache=cache) for d in dtypes}
    rows = []
    for t in DEFAULT_TASKS:
        spec = get_task(t)
        s = load_split(spec, "test", data_dir=data_dir)
        idx = np.arange(s.n_pairs)
        if pairs_per_task and pairs_per_task < s.n_pairs:
            idx = np.sort(np.random.default_rng(seed).choice(s.n_pairs, pairs_per_task, replace=False))
        s1 = [s.sentences1[i] for i in idx]
        s2 = [s.sentences2[i] for i in idx]
        row = {"task": t, "pairs": len(idx)}
        for d, enc in encs.items():
            e1 = enc.encode(s1, max_length=spec.max_length, batch_size=batch_size)
            e2 = enc.encode(s2, max_length=spec.max_length, batch_size=batch_size)
            row[d] = spearman(cosine_scores(e1, e2), s.labels[idx])
        rows.append(row)
        print(f"{t}: " + ", ".join(f"{d} {100 * row[d]:.2f}" for d in dtypes), file=sys.stderr)
    return rows


def render(record: dict) -> str:
    ref = "sentence-transformers float32"
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m embedkit.experiments.speed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="m3e-small")
    p.add_argument("--sentences", type=int, default=20000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--spearman-pairs", type=int, default=2000,
                   help="pairs per task for the dtype comparison (0: all; cached afterwards)")
    p.add_argument("--data-dir")
    p.add_argument("--out", default="eval/speed.md")
    p.add_argument("--rerender", action="store_true",
                   help="only rewrite the Markdown from the JSON saved beside --out")
    args = p.parse_args(argv)
    if args.rerender:
        import json

        record = json.loads(open(args.out.rsplit(".", 1)[0] + ".json", encoding="utf-8").read())
        record["machine"] = {**machine_description(), **record["machine"],
                             "cpu_bf16": machine_description()["cpu_bf16"]}
        atomic_write_json(args.out.rsplit(".", 1)[0] + ".json", record)
        atomic_write_text(args.out, render(record))
        return 0
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    sentences = sample_sentences(args.sentences, args.seed, args.data_dir)
    times, vectors = time_engines(args.model, sentences, dtypes=dtypes, batch_size=args.batch_size,
                                  max_length=args.max_length, rounds=args.rounds,
                                  device=args.device)
    ref = "sentence-transformers float32"
    engines = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        engines[name] = {"seconds": ts, "median_seconds": med,
                         "sentences_per_second": len(sentences) / med,
                         "max_abs_diff_vs_st": float(np.abs(vectors[name] - vectors[ref]).max())}
    shift = spearman_shift(args.model, dtypes, args.spearman_pairs, args.seed, args.data_dir,
                           args.batch_size, args.device) if len(dtypes) > 1 else []
    st_sps = engines[ref]["sentences_per_second"]
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
    record = {
        "command": "python -m embedkit.experiments.speed " + " ".join(argv or sys.argv[1:]),
        "versions": library_versions(), "machine": machine_description(),
        "settings": {"model": args.model, "sentences": len(sentences), "batch_size": args.batch_size,
                     "max_length": args.max_length, "dtypes": dtypes, "rounds": args.rounds,
                     "device": args.device, "seed": args.seed,
                     "spearman_pairs": args.spearman_pairs},
        "engines": engines, "spearman": shift, "targets": targets,
    }
    md = render(record)
    atomic_write_text(args.out, md)
    atomic_write_json(args.out.rsplit(".", 1)[0] + ".json", record)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
