"""The Markdown of the speed report and its targets (:mod:`bench_speed`).

>>> best({"a": {"engine": "st", "precision": "fp32", "sentences_per_second": 2.0},
...       "b": {"engine": "st", "precision": "fp32", "sentences_per_second": 3.0}}, "st", "fp32")
'b'
"""

from __future__ import annotations

from typing import Any

from embedkit.reports.bench import provenance_lines

ST_TORCH = "sentence-transformers torch"
REFERENCE = "embedkit torch fp32"   # the quality reference: exact, fp32
TASKS = ("ATEC", "BQ", "LCQMC", "PAWSX", "STS-B")


def best(engines: dict[str, dict[str, Any]], who: str, precision: str) -> str | None:
    """The fastest engine of ``who`` (``st``/``embedkit``) at ``precision``."""
    names = [n for n, e in engines.items() if e["engine"] == who and e["precision"] == precision]
    return max(names, key=lambda n: engines[n]["sentences_per_second"]) if names else None


def _ratio(engines: dict[str, Any], a: str | None, b: str | None) -> float | None:
    if a is None or b is None:
        return None
    return engines[a]["sentences_per_second"] / engines[b]["sentences_per_second"]


def _worst_delta(e: dict[str, Any]) -> float:
    return max(abs(v) for v in e["spearman_delta"].values() if v is not None) * 100


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def targets(record: dict[str, Any]) -> list[str]:
    """The issue's targets, each with the measured value and met / NOT met."""
    eng, gemm = record["engines"], record["gemm"]["gflops"]
    out = []
    ek32, st32 = best(eng, "embedkit", "fp32"), best(eng, "st", "fp32")
    r = _ratio(eng, ek32, st32)
    if r is not None and ek32 is not None:
        d = _worst_delta(eng[ek32])
        share = eng[ek32]["gflops"] / gemm
        out.append(f"fp32: fastest embedkit fp32 ({ek32}) {r:.2f}x the fastest "
                   f"sentence-transformers fp32 ({st32}), target 1.15x: {_met(r >= 1.15)}; "
                   f"largest Spearman change {d:.3f} points, target 0.02: {_met(d <= 0.02)}; "
                   f"{100 * share:.0f}% of the measured GEMM rate, target 80%: "
                   f"{_met(share >= 0.8)}")
    ek8, st8 = best(eng, "embedkit", "int8"), best(eng, "st", "int8")
    r8, rt = _ratio(eng, ek8, st8), _ratio(eng, ek8, ST_TORCH if ST_TORCH in eng else None)
    if ek8 is not None:
        d8 = _worst_delta(eng[ek8])
        out.append(f"int8: fastest embedkit int8 ({ek8}) "
                   + (f"{r8:.2f}x the fastest sentence-transformers int8 ({st8}), target 1.25x:"
                      f" {_met(r8 >= 1.25)}; " if r8 is not None else "")
                   + (f"{rt:.2f}x sentence-transformers torch, target 1.8x: {_met(rt >= 1.8)};"
                      " " if rt is not None else "")
                   + f"largest Spearman change {d8:.2f} points, target 0.3: {_met(d8 <= 0.3)}")
    gaps = {n: e["max_cosine_gap"] for n, e in eng.items()
            if e["engine"] == "embedkit" and e["precision"] == "fp32"
            and e["max_cosine_gap"] is not None}
    if gaps:
        worst = max(gaps.values())
        out.append(f"fp32 backends agree with fp32 torch: largest 1 - cosine {worst:.1e}, "
                   f"target 1e-4: {_met(worst <= 1e-4)}")
    return out


def _engine_table(record: dict[str, Any]) -> list[str]:
    eng, gemm = record["engines"], record["gemm"]["gflops"]
    st_torch = eng.get(ST_TORCH, {}).get("sentences_per_second")
    lines = ["| engine | precision | sentences/s | x ST torch | x fastest ST same precision | "
             "GFLOP/s | % of GEMM | peak MB | start s | " + " | ".join(TASKS)
             + " | max 1-cos vs fp32 torch |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(TASKS) + "---:|"]
    for name, e in eng.items():
        sps = e["sentences_per_second"]
        fastest = best(eng, "st", e["precision"])
        vs_best = f"{sps / eng[fastest]['sentences_per_second']:.2f}x" if fastest else "-"
        vs_torch = f"{sps / st_torch:.2f}x" if st_torch else "-"
        cells = []
        for t in TASKS:
            v, d = e["spearman"].get(t), e["spearman_delta"].get(t)
            cells.append("-" if v is None else f"{100 * v:.2f}" + (
                "" if d is None or name == REFERENCE else f" ({100 * d:+.2f})"))
        gap = e.get("max_cosine_gap")
        lines.append(f"| {name} | {e['precision']} | {sps:.1f} | {vs_torch} | {vs_best} | "
                     f"{e['gflops']:.0f} | {100 * e['gflops'] / gemm:.0f}% | "
                     f"{e['peak_mb'] or 0:.0f} | {e['load_seconds'] or 0:.1f} | "
                     + " | ".join(cells) + f" | {'-' if gap is None else f'{gap:.1e}'} |")
    return lines


def _startup(record: dict[str, Any]) -> list[str]:
    s = record.get("startup") or {}
    if not s:
        return []
    heavy = ", ".join(s.get("imported") or []) or "none"
    return ["", "## Start-up", "",
            f"`{s.get('command')}` in a fresh process: {s.get('wall_s', 0):.1f} s in all, of "
            f"which importing the command line {s.get('import_s', 0):.2f} s and the run "
            f"(model load, data, {s.get('pairs')} pairs encoded, scored) "
            f"{s.get('run_s', 0):.1f} s. Libraries it imported that it does not use: {heavy}."]


def render(record: dict[str, Any]) -> str:
    s, g, f = record["settings"], record["gemm"], record["flops"]
    lines = ["# Encoding speed: embedkit's backends vs sentence-transformers' fast paths", ""]
    lines += provenance_lines(record)
    lines += [
        f"- Model: `{s['model']}`, mean pooling of the last layer, max length {s['max_length']},"
        f" batch size {s['batch_size']}, {s['threads']} threads, {s['sentences']} distinct "
        f"sentences from the five test splits (seed {s['seed']}, {f['mean_tokens']:.1f} tokens "
        f"on average), {s['rounds']} interleaved rounds (order rotated), median reported, no "
        "cache; every engine in its own process",
        f"- This CPU's float32 GEMM rate (torch, 2048^3, {g['threads']} threads, median of "
        f"{len(g['runs'])} runs before and after): {g['gflops']:.0f} GFLOP/s; the model costs "
        f"{f['per_sentence'] / 1e6:.0f} MFLOP per sentence (real tokens, no padding)",
        f"- sentence-transformers' int8 ONNX export config for this CPU: "
        f"`{record.get('int8_config')}`; Spearman x 100 on {s['spearman_pairs'] or 'all'} "
        f"seeded pairs per test split, (change vs {REFERENCE})", "",
        "## Engines", ""]
    lines += _engine_table(record)
    lines += ["", "## Targets", ""] + [f"- {t}" for t in record["targets"]]
    lines += _startup(record)
    lines += [""]
    return "\n".join(lines)
