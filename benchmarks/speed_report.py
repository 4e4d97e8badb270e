"""The Markdown of the speed report and its targets (:mod:`bench_speed`).

A target is met or missed by a stated amount; quality budgets are in Spearman points (x 100) and
hold on every test set.

>>> best({"a": {"engine": "st", "precision": "fp32", "sentences_per_second": 2.0},
...       "b": {"engine": "st", "precision": "fp32", "sentences_per_second": 3.0}}, "st", "fp32")
'b'
>>> _at_least(1.14, 1.25)
'NOT met (1.14x, target 1.25x: short by 0.11x, 9.6% more sentences/s needed)'
>>> _at_most(3.4, 3.0, "s")
'NOT met (3.4 s, target 3.0 s: over by 0.4 s, 13%)'
"""

from __future__ import annotations

from typing import Any

from speed_engines import REFERENCE, ST_TORCH

from embedkit.reports.bench import provenance_lines

TASKS = ("ATEC", "BQ", "LCQMC", "PAWSX", "STS-B")
#: the issue's targets (issue 23): speed ratios, quality budgets in points, seconds
FP32 = {"vs_fastest_st": 1.25, "points": 0.02}
BF16 = {"vs_st_torch": 2.0, "points": 0.05}
INT8 = {"vs_fastest_st": 1.5, "vs_st_torch": 4.0, "points": 0.3}
START_S, VERSION_S, COLD_S = 3.0, 0.5, 180.0
AGREE = 1e-4


def best(engines: dict[str, dict[str, Any]], who: str, precision: str,
         points: float | None = None) -> str | None:
    """The fastest engine of ``who`` (``st``/``embedkit``) at ``precision`` (within ``points``
    of the reference on every set, when given)."""
    names = [n for n, e in engines.items() if e["engine"] == who and e["precision"] == precision
             and (points is None or _within(e, points))]
    return max(names, key=lambda n: engines[n]["sentences_per_second"]) if names else None


def worst_change(e: dict[str, Any]) -> tuple[float, str] | None:
    """The largest Spearman change from the reference, in points, and its set (None: no
    reference)."""
    deltas = [(abs(v) * 100, t) for t, v in (e.get("spearman_delta") or {}).items()
              if v is not None and v == v]  # NaN (a set without a defined Spearman): no change
    return max(deltas) if deltas else None


def _within(e: dict[str, Any], points: float) -> bool:
    w = worst_change(e)
    return w is not None and w[0] <= points + 1e-12


def _at_least(value: float, target: float) -> str:
    if value >= target:
        return f"met ({value:.2f}x, target {target:.2f}x)"
    return (f"NOT met ({value:.2f}x, target {target:.2f}x: short by {target - value:.2f}x, "
            f"{100 * (target / value - 1):.1f}% more sentences/s needed)")


def _at_most(value: float, target: float, unit: str) -> str:
    if value <= target:
        return f"met ({value:.1f} {unit}, target {target:.1f} {unit})"
    return (f"NOT met ({value:.1f} {unit}, target {target:.1f} {unit}: over by "
            f"{value - target:.1f} {unit}, {100 * (value / target - 1):.0f}%)")


def _sps(eng: dict[str, Any], name: str | None) -> float | None:
    return eng[name]["sentences_per_second"] if name in eng else None


def _quality_miss(eng: dict[str, Any], precision: str, points: float) -> str:
    """Why no engine of ``precision`` qualifies: the fastest one's worst set."""
    fastest = best(eng, "embedkit", precision)
    if fastest is None:
        return f"no embedkit {precision} engine ran"
    w = worst_change(eng[fastest])
    where = "no reference to compare with" if w is None else \
        f"{w[0]:.2f} points on {w[1]}, over by {w[0] - points:.2f}"
    return (f"NOT met: no embedkit {precision} engine stays within {points} points on every "
            f"set (the fastest, {fastest}: {where})")


def _speed_target(eng: dict[str, Any], precision: str, points: float,
                  against: list[tuple[str | None, float, str]]) -> str:
    ek = best(eng, "embedkit", precision, points)
    if ek is None:
        return f"{precision}: " + _quality_miss(eng, precision, points)
    w = worst_change(eng[ek])
    parts = []
    for ref, target, label in against:
        if ref is None or ref not in eng:
            parts.append(f"{label}: not measured")
            continue
        parts.append(f"{_at_least(eng[ek]['sentences_per_second'] / eng[ref]['sentences_per_second'], target)} "
                     f"x {label} ({ref})")
    head = (f"{precision}: fastest embedkit {precision} within {points} points on every set: "
            f"{ek}, largest change {w[0] if w else 0:.3f} points; ")
    return head + "; ".join(parts)


def _where(record: dict[str, Any], precision: str) -> str:
    """Where the time of the fastest embedkit engine of ``precision`` goes (its profile), for
    a missed target."""
    eng, prof = record["engines"], record.get("profile") or {}
    name = best(eng, "embedkit", precision)
    p = prof.get(name or "") or {}
    if not p.get("parts"):
        return ""
    parts, total = p["parts"], sum(p["parts"].values()) or 1.0
    ops = p.get("ops") or {}
    gemm = (f", matrix products {100 * ops['gemm_share']:.0f}% of its op time"
            if ops.get("gemm_share") is not None else "")
    return (f" [profile of {name}: runtime call {100 * parts['runtime'] / total:.0f}% of the "
            f"encoder's time{gemm}; tokenising {100 * parts['tokenise'] / total:.0f}%, padding "
            f"{100 * parts['pad'] / total:.0f}%, pooling {100 * parts['pooling'] / total:.0f}%]")


def targets(record: dict[str, Any]) -> list[str]:
    """The issue's targets, each met or NOT met by how much (a missed speed target with where
    its time goes, when profiled)."""
    out = [t + (_where(record, t.split(":")[0]) if "NOT met" in t else "")
           for t in _speed_targets(record)]
    return out + _other_targets(record)


def _speed_targets(record: dict[str, Any]) -> list[str]:
    eng = record["engines"]
    st_torch = ST_TORCH if ST_TORCH in eng else None
    out = [
        _speed_target(eng, "fp32", FP32["points"], [
            (best(eng, "st", "fp32"), FP32["vs_fastest_st"],
             "the fastest sentence-transformers fp32")]),
        _speed_target(eng, "bf16", BF16["points"], [
            (st_torch, BF16["vs_st_torch"], "sentence-transformers torch fp32")]),
        _speed_target(eng, "int8", INT8["points"], [
            (best(eng, "st", "int8"), INT8["vs_fastest_st"],
             "the fastest sentence-transformers int8"),
            (st_torch, INT8["vs_st_torch"], "sentence-transformers torch")]),
    ]
    return out


def _other_targets(record: dict[str, Any]) -> list[str]:
    eng, out = record["engines"], []
    s = record.get("startup") or {}
    if s:
        out.append(f"start: 30-pair bench with a cached export: {_at_most(s['wall_s'], START_S, 's')}"
                   + (f" (failed: {s['reason']})" if s.get("reason") else ""))
        v = s.get("version") or {}
        if v:
            out.append(f"start: `embedkit --version`: {_at_most(v['wall_s'], VERSION_S, 's')}")
    c = record.get("cold_bench") or {}
    if c:
        out.append(f"cold `make bench` (empty cache): {_at_most(c['wall_s'], COLD_S, 's')}"
                   + (f" (failed: {c['reason']})" if c.get("reason") else ""))
    gaps = [e["max_cosine_gap"] for e in eng.values() if e["engine"] == "embedkit"
            and e["precision"] == "fp32" and e.get("max_cosine_gap") is not None]
    if gaps:
        worst = max(gaps)
        out.append(f"fp32 backends agree with fp32 torch: largest 1 - cosine {worst:.1e}, "
                   f"target {AGREE:.0e}: {'met' if worst <= AGREE else 'NOT met'}")
    return out


# --------------------------------------------------------------------------------------------
# the Markdown


def _gemm(record: dict[str, Any], precision: str) -> float | None:
    g = record["gemm"]
    return g.get("bf16_gflops") if precision == "bf16" else g["gflops"]


def _row(record: dict[str, Any], name: str, e: dict[str, Any]) -> str:
    eng = record["engines"]
    sps = e["sentences_per_second"]
    st_torch = _sps(eng, ST_TORCH)
    fastest = best(eng, "st", e["precision"])
    vs_best = f"{sps / eng[fastest]['sentences_per_second']:.2f}x" if fastest else "-"
    vs_torch = f"{sps / st_torch:.2f}x" if st_torch else "-"
    gemm = _gemm(record, e["precision"])
    share = f"{100 * e['gflops'] / gemm:.0f}%" if gemm else "-"
    cells = []
    for t in TASKS:
        v, d = e["spearman"].get(t), e["spearman_delta"].get(t)
        cells.append("-" if v is None else f"{100 * v:.2f}" + (
            "" if d is None or name == REFERENCE else f" ({100 * d:+.2f})"))
    gap = e.get("max_cosine_gap")
    ran = e["precision"] if e.get("ran_at") in (None, e["precision"]) else \
        f"int8 (activations {e['ran_at']})" if e["precision"] == "int8" else \
        f"{e['precision']} (ran at {e['ran_at']})"
    shown = f"{name}: ran at {e['ran_at']}" if e.get("asked") == "default" else name
    return (f"| {shown} | {ran} | {sps:.1f} | {e['wall_s'] or 0:.1f} | "
            f"{e['first_start_s'] or 0:.1f} | {vs_torch} | {vs_best} | {e['gflops']:.0f} | "
            f"{share} | {e['peak_mb'] or 0:.0f} | " + " | ".join(cells)
            + f" | {'-' if gap is None else f'{gap:.1e}'} |")


def _engine_table(record: dict[str, Any]) -> list[str]:
    lines = ["| engine | precision | sentences/s | process s | export / first start s | "
             "x ST torch | x fastest ST same precision | GFLOP/s | % of GEMM | peak MB | "
             + " | ".join(TASKS) + " | max 1-cos vs fp32 torch |",
             "|---|---|" + "---:|" * 8 + "---:|" * len(TASKS) + "---:|"]
    lines += [_row(record, n, e) for n, e in record["engines"].items()]
    skipped = record.get("skipped") or {}
    if skipped:
        lines += ["", "Skipped (the installed embedkit or runtime refused them):", ""]
        lines += [f"- {n}: {why}" for n, why in skipped.items()]
    return lines


def _startup(record: dict[str, Any]) -> list[str]:
    s, c = record.get("startup") or {}, record.get("cold_bench") or {}
    lines = []
    if s:
        heavy = ", ".join(s.get("imported") or []) or "none"
        v = s.get("version") or {}
        lines += ["", "## Start-up", ""]
        if v:
            lines.append(f"- `{v['command']}`: {v['wall_s']:.2f} s (median of "
                         f"{len(v.get('walls') or [])} processes)")
        lines.append(
            f"- `{s.get('command')}` in a fresh process: {s.get('wall_s', 0):.1f} s in all (the "
            f"first run, building the export: {s.get('first_wall_s', 0):.1f} s), of which "
            f"importing the command line {s.get('import_s', 0):.2f} s and the run (model load, "
            f"data, {s.get('pairs')} pairs encoded, scored) {s.get('run_s', 0):.1f} s. "
            f"Libraries it imported that it does not need: {heavy}.")
    if c:
        lines += ["", "## Cold `make bench`", "",
                  f"`{c['command']}` with an empty cache folder (vectors and exports): "
                  f"{c['wall_s']:.1f} s, exit status {c['code']}, peak {c.get('peak_mb') or 0:.0f} MB"
                  + (f" ({c['reason']})" if c.get("reason") else "") + "."]
    return lines


def _profile(record: dict[str, Any]) -> list[str]:
    prof = record.get("profile") or {}
    if not prof:
        return []
    lines = ["", "## Where the time goes (profile)", "",
             "The fastest embedkit engine of each precision class, in one process on the first "
             f"{next((p['sentences'] for p in prof.values() if 'sentences' in p), '?')} "
             "sentences: seconds in each "
             "part of the encoder (threads' time summed over the runtime's streams; OpenVINO's "
             "streams are started and collected from one thread, so its runtime call is the "
             "time that thread spends starting batches and waiting for them), and the "
             "runtime's own per-operation times (OpenVINO's PERF_COUNT, ONNX Runtime's "
             "profiler) by operation type, on the first batches (fused attention nodes, "
             "which hold the attention products, count as matrix products)."
             + (f" Measured again with `{record['profile_command']}`."
                if record.get("profile_command") else ""),
             "", "| engine | wall s | streams | tokenise | pad | runtime call | pooling | "
                 "matrix products in the runtime |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    notes = []
    for name, p in prof.items():
        if p.get("reason"):
            notes.append(f"- {name}: not profiled ({p['reason']})")
            continue
        parts = p["parts"]
        total = sum(parts.values()) or 1.0
        cells = [f"{parts.get(k, 0):.2f} s ({100 * parts.get(k, 0) / total:.0f}%)"
                 for k in ("tokenise", "pad", "runtime", "pooling")]
        ops = p.get("ops") or {}
        gemm = f"{100 * ops['gemm_share']:.0f}% of op time" if ops.get("gemm_share") is not None \
            else "-"
        lines.append(f"| {name} | {p['wall_s']:.2f} | {p['streams']} | " + " | ".join(cells)
                     + f" | {gemm} |")
        if ops.get("top"):
            notes.append(f"- {name}, {ops.get('runtime', 'runtime')} op types by time: " + ", ".join(
                f"{t} {100 * share:.0f}%" for t, _, share in ops["top"]))
    return lines + ([""] + notes if notes else [])


def render(record: dict[str, Any]) -> str:
    s, g, f = record["settings"], record["gemm"], record["flops"]
    pairs = record.get("pairs") or {}
    lines = ["# Encoding speed through the commands users run: embedkit vs "
             "sentence-transformers", ""]
    lines += provenance_lines(record)
    bf16 = f", bfloat16 {g['bf16_gflops']:.0f} GFLOP/s" if g.get("bf16_gflops") else ""
    rt = record.get("runtimes") or {}
    if rt:
        lines.append("- Runtimes: " + ", ".join(f"{k} {v}" for k, v in rt.get("embedkit", {}).items())
                     + "; sentence-transformers' environment: "
                     + (", ".join(f"{k} {v}" for k, v in rt.get("st", {}).items()) or "-"))
    lines += [
        f"- Model: `{s['model']}`, mean pooling of the last layer, max length {s['max_length']},"
        f" batch size {s['batch_size']}, {s['threads']} threads; {s['sentences']} distinct "
        f"sentences: those of {s['pairs']} seeded pairs per test split"
        + (f", capped at {s['max_sentences']} sentences" if s.get("max_sentences") else "")
        + f" (seed {s['seed']}; "
        + ", ".join(f"{t} {n}" for t, n in pairs.items())
        + f" pairs), {f['mean_tokens']:.1f} tokens on average",
        f"- Each embedkit engine is an `embedkit encode ... --no-cache` process (speed: the "
        f"encode manifest's sentences/s over the model's own time; process s: the whole "
        f"command), each sentence-transformers engine a worker process; one fresh process per "
        f"engine per round, {s['rounds']} interleaved rounds (order rotated), medians; exports "
        "built once before (export / first start)",
        f"- This CPU's GEMM rate (torch, 2048^3, {g['threads']} threads): float32 "
        f"{g['gflops']:.0f} GFLOP/s{bf16}; the model costs {f['per_sentence'] / 1e6:.0f} MFLOP "
        "per sentence (real tokens, no padding); % of GEMM: of the engine's own precision's "
        "rate (int8: of float32's)",
        f"- sentence-transformers' int8 ONNX export config for this CPU: "
        f"`{record.get('int8_config')}`; Spearman x 100 on the pairs, from the timed runs' "
        f"vectors (change vs {REFERENCE})", ""]
    example = next((e.get("command") for e in record["engines"].values() if e.get("command")),
                   None)
    if example:
        lines += ["An embedkit engine's command (WORK: the run's folder):", "", "```", example,
                  "```", ""]
    lines += ["## Engines", ""] + _engine_table(record)
    lines += ["", "## Targets", ""] + [f"- {t}" for t in record["targets"]]
    lines += _startup(record) + _profile(record) + [""]
    return "\n".join(lines)
