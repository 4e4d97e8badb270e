"""Where an embedkit engine's time goes, measured (the speed report's profile section):
``python speed_profile.py SPEC_JSON`` in a process of its own (:func:`profile_fastest` runs it
for the fastest embedkit engine of each precision class).

Two views, on a slice of the report's sentences (bounded: about a minute an engine):

- the encoder's parts, timed around its own methods while it encodes the slice: tokenising
  (``_plan``: token ids and batches), padding (``_pad``), the runtime call (ONNX Runtime's or
  OpenVINO's session, torch's model forward) and pooling (the rest of ``_forward``); thread
  seconds, summed over the runtime's streams;
- the runtime's own per-operation times: OpenVINO's ``PERF_COUNT`` (``profiling_info`` of an
  infer request on the same export and settings) or ONNX Runtime's profiler, by operation type;
  the share of the matrix products (MatMul, FullyConnected, Gemm, and their int8 forms).

>>> op_shares({"MatMul": 3.0, "FullyConnected": 4.0, "FullyConnectedQuantizedLegacy": 1.0,
...            "Add": 2.0})["gemm_share"]
0.8
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

GEMM_OPS = ("MatMul", "FullyConnected", "Gemm", "MatMulInteger", "QLinearMatMul",
            "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "FusedMatMul", "QAttention",
            "Attention", "ScaledDotProductAttention")
OP_BATCHES = 20      # batches run through the runtime's profiler


def op_shares(times: dict[str, float], top: int = 6) -> dict[str, Any]:
    """Per-op-type times as the largest ``top`` types with their share, and the matrix
    products' share of all."""
    total = sum(times.values()) or 1.0
    ranked = sorted(times.items(), key=lambda kv: -kv[1])[:top]
    return {"top": [[t, round(s, 4), round(s / total, 4)] for t, s in ranked],
            "gemm_share": sum(s for t, s in times.items() if t.startswith(GEMM_OPS)) / total,
            "seconds": total}


class _Timers:
    """Seconds spent in wrapped callables, per part, from any thread."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.lock = threading.Lock()

    def wrap(self, part: str, fn: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                with self.lock:
                    self.seconds[part] += time.perf_counter() - t
        return timed


def _instrument(enc: Any, timers: _Timers) -> None:
    """Timers around the encoder's parts. An exported engine: the runtime's calls (``run`` on
    a stream thread, or OpenVINO's ``start`` + ``result`` from the calling thread, which then
    counts the time it waits for the streams) and ``_pooled``; torch: the model's forward and
    the rest of ``_forward``."""
    enc._plan = timers.wrap("tokenise", enc._plan)
    enc._pad = timers.wrap("pad", enc._pad)
    session = getattr(enc, "session", None)
    if session is not None:
        for name in ("run", "start", "result"):
            if hasattr(session, name):
                setattr(session, name, timers.wrap("runtime", getattr(session, name)))
        enc._pooled = timers.wrap("pooling", enc._pooled)
    elif getattr(enc, "model", None) is not None:
        enc._forward = timers.wrap("forward", enc._forward)
        enc.model.forward = timers.wrap("runtime", enc.model.forward)


def _parts(timers: _Timers) -> dict[str, float]:
    s = timers.seconds
    pooling = s["pooling"] if "pooling" in s else max(s["forward"] - s["runtime"], 0.0)
    return {"tokenise": s["tokenise"], "pad": s["pad"], "runtime": s["runtime"],
            "pooling": pooling}


def _batches(enc: Any, sentences: list[str], max_length: int, n: int) -> list[Any]:
    ids, batches = enc._plan(sentences, max_length, enc.batch_size)
    return [enc._pad(ids, sel) for sel in batches[:n]]


def _openvino_ops(enc: Any, spec: dict[str, Any], feeds: list[Any]) -> dict[str, Any]:
    import openvino as ov

    hint = "bf16" if spec.get("dtype") == "bfloat16" else "f32"
    model, pooled = enc.session._model, enc.session.pooled
    if pooled:  # the graph the engine runs: pruned to its pooled outputs
        model = ov.Model([model.output(n).get_node() for n in pooled], model.get_parameters())
    compiled = ov.Core().compile_model(model, "CPU", {
        "PERF_COUNT": True, "INFERENCE_NUM_THREADS": int(spec["threads"]),
        "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": hint})
    request = compiled.create_infer_request()
    times: dict[str, float] = defaultdict(float)
    for ids, mask in feeds:
        request.infer({"input_ids": ids, "attention_mask": mask})
        for info in request.profiling_info:
            if str(info.status).endswith("EXECUTED"):
                times[info.node_type] += info.real_time.total_seconds()
    return {"runtime": "OpenVINO", **op_shares(times)}


def _onnx_ops(enc: Any, spec: dict[str, Any], feeds: list[Any], folder: Path) -> dict[str, Any]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(spec["threads"])
    so.enable_profiling = True
    so.profile_file_prefix = str(folder / "ort-profile")
    session = ort.InferenceSession(str(enc.graph.graph), so, providers=["CPUExecutionProvider"])
    for ids, mask in feeds:
        session.run(None, {"input_ids": ids, "attention_mask": mask})
    events = json.loads(Path(session.end_profiling()).read_text(encoding="utf-8"))
    times: dict[str, float] = defaultdict(float)
    for ev in events:
        if ev.get("cat") == "Node" and ev.get("name", "").endswith("_kernel_time"):
            times[ev.get("args", {}).get("op_name", "?")] += ev.get("dur", 0) / 1e6
    return {"runtime": "ONNX Runtime", **op_shares(times)}


def profile(spec: dict[str, Any]) -> dict[str, Any]:
    """The profile of one engine (``spec``: its settings, sentences file, work folder)."""
    from embedkit.encoders.config import EncoderConfig

    cfg = EncoderConfig(spec["model"], backend=spec["backend"], dtype=spec["dtype"],
                        quantize=spec["quantize"], threads=int(spec["threads"]),
                        batch_size=int(spec["batch_size"]), token_budget=spec["token_budget"],
                        cache=False, cache_dir=spec["cache_dir"], progress=False)
    enc = cfg.build_model()
    with open(spec["sentences"], encoding="utf-8") as f:
        sentences = [json.loads(x)["text"] for x in f if x.strip()][: int(spec["n"])]
    max_length = int(spec["max_length"])
    enc.encode(sentences[:64], "last-avg", max_length=max_length)  # warm
    timers = _Timers()
    _instrument(enc, timers)
    t = time.perf_counter()
    enc.encode(sentences, "last-avg", max_length=max_length)
    wall = time.perf_counter() - t
    session = getattr(enc, "session", None)
    out: dict[str, Any] = {"sentences": len(sentences), "wall_s": wall,
                           "streams": getattr(session, "streams", 1), "parts": _parts(timers)}
    if spec["backend"] in ("openvino", "onnx"):
        feeds = _batches(enc, sentences, max_length, OP_BATCHES)
        out["ops"] = (_openvino_ops(enc, spec, feeds) if spec["backend"] == "openvino" else
                      _onnx_ops(enc, spec, feeds, Path(spec["work"])))
    return out


def profile_fastest(rows: dict[str, dict[str, Any]], opts: Any, cache: Path,
                    n: int = 2000, timeout: float = 180) -> dict[str, Any]:
    """The profile of the fastest embedkit engine of each precision class (``rows``: the
    report's engine rows), each in its own process; an engine that cannot be profiled says
    why."""
    from speed_engines import PRECISIONS, embedkit_env, run_process

    work = cache.parent / "profile"
    work.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {}
    for precision in PRECISIONS:
        mine = [k for k, e in rows.items() if e["engine"] == "embedkit"
                and e["precision"] == precision]
        if not mine:
            continue
        name = max(mine, key=lambda k: rows[k]["sentences_per_second"])
        e = rows[name]
        spec = {"model": opts.model, "backend": e["backend"], "dtype": e["dtype"],
                "quantize": e["quantize"], "token_budget": e["token_budget"],
                "threads": opts.threads, "batch_size": opts.batch_size,
                "max_length": opts.max_length, "cache_dir": str(cache), "n": n,
                "sentences": str(cache.parent / "sentences.jsonl"), "work": str(work)}
        done = run_process([sys.executable, __file__, json.dumps(spec)],
                           work / f"{precision}.log", env=embedkit_env(), timeout=timeout)
        line = next((x for x in done.stdout.splitlines() if x.startswith("PROFILE ")), None)
        out[name] = json.loads(line[len("PROFILE "):]) if done.code == 0 and line else \
            {"reason": done.reason()}
    return out


if __name__ == "__main__":
    result = profile(json.loads(sys.argv[1]))
    print("PROFILE " + json.dumps(result), flush=True)
