"""One engine of the speed report in its own process: ``python speed_worker.py SPEC_JSON``.

Each engine (sentence-transformers on a backend, or embedkit on a backend) runs in a process of
its own, so that its threads, its memory peak and its start-up are its own and no engine's
state (a thread pool, a cache, an allocator) helps or hurts another. The driver
(:mod:`bench_speed`) sends one JSON command a line on standard input and reads
one JSON answer a line from standard output:

- ``{"cmd": "run", "sentences": FILE}``: encode the sentences (one JSON list in FILE), answer
  ``{"seconds": ...}``;
- ``{"cmd": "vectors", "sentences": FILE, "out": FILE.npy}``: encode and save the vectors;
- ``{"cmd": "quit"}``: answer the peak resident memory and exit.

The file runs as a script under another interpreter too (sentence-transformers' ONNX and
OpenVINO backends need optimum, which needs an older transformers than embedkit's
environment has), so the sentence-transformers half imports nothing from embedkit.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from typing import Any

import numpy as np


def _st_engine(spec: dict[str, Any]) -> Any:
    """A ``SentenceTransformer`` on the spec's backend (int8 files exported first if asked)."""
    from sentence_transformers import SentenceTransformer

    backend, threads = spec["backend"], int(spec["threads"])
    kwargs: dict[str, Any] = {}
    if backend == "onnx":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        kwargs = {"provider": "CPUExecutionProvider", "session_options": so}
    elif backend == "openvino":
        kwargs = {"ov_config": {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                                "INFERENCE_PRECISION_HINT": "f32"}}
    if spec.get("quantize") == "int8":
        kwargs.update(_st_int8(spec, backend))
    model = SentenceTransformer(spec["model_path"], device="cpu", backend=backend,
                                model_kwargs=kwargs)
    model.max_seq_length = int(spec["max_length"])
    batch = int(spec["batch_size"])
    return lambda s: model.encode(s, batch_size=batch, convert_to_numpy=True,
                                  show_progress_bar=False)


def _st_int8(spec: dict[str, Any], backend: str) -> dict[str, Any]:
    """sentence-transformers' int8 paths that run offline: its dynamic int8 ONNX export (the
    config for this CPU), and OpenVINO with int8 weights (its static quantisation calibrates on
    a dataset downloaded from the hub, which cannot run here)."""
    from sentence_transformers import SentenceTransformer

    if backend == "onnx":
        target = os.path.join(spec["model_path"], spec["st_file"])
        if not os.path.exists(target):
            from sentence_transformers import export_dynamic_quantized_onnx_model

            fp32 = SentenceTransformer(spec["model_path"], device="cpu", backend="onnx")
            export_dynamic_quantized_onnx_model(fp32, spec["st_int8_config"],
                                                spec["model_path"])
        return {"file_name": spec["st_file"]}
    from optimum.intel import OVWeightQuantizationConfig

    return {"quantization_config": OVWeightQuantizationConfig(bits=8), "export": True}


def _embedkit_engine(spec: dict[str, Any]) -> Any:
    from embedkit.encoders.config import EncoderConfig

    enc = EncoderConfig(spec["model_path"], pooling="last-avg", backend=spec["backend"],
                        quantize=spec.get("quantize", "none"), batch_size=int(spec["batch_size"]),
                        threads=int(spec["threads"]), token_budget=spec.get("token_budget"),
                        cache_dir=spec.get("export_root")).build_model()
    max_length = int(spec["max_length"])
    return lambda s: enc.encode(s, "last-avg", max_length=max_length)


_CHANNEL: list[Any] = []  # the answers' stream: the process's stdout before redirect_output()


def redirect_output() -> None:
    """Keep the real standard output for answers, and send everything else written to it (a
    library's print, a C library's output) to standard error."""
    sys.stdout.flush()
    _CHANNEL.append(os.fdopen(os.dup(1), "w", encoding="utf-8"))
    os.dup2(2, 1)


def _answer(obj: dict[str, Any]) -> None:
    channel = _CHANNEL[0] if _CHANNEL else sys.stdout
    channel.write(json.dumps(obj) + "\n")
    channel.flush()


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def serve(spec: dict[str, Any]) -> None:
    """Load the engine, then answer commands until ``quit``."""
    if spec["engine"] == "st":
        import torch

        torch.set_num_threads(int(spec["threads"]))
    t0 = time.perf_counter()
    encode = _st_engine(spec) if spec["engine"] == "st" else _embedkit_engine(spec)
    encode(["预热"] * 4)  # the first call compiles kernels on some runtimes
    _answer({"loaded": True, "load_seconds": time.perf_counter() - t0, "peak_mb": _peak_mb()})
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "quit":
            _answer({"peak_mb": _peak_mb()})
            return
        with open(cmd["sentences"], encoding="utf-8") as f:
            sentences = json.load(f)
        t = time.perf_counter()
        vectors = np.asarray(encode(sentences), dtype=np.float32)
        seconds = time.perf_counter() - t
        if cmd["cmd"] == "vectors":
            np.save(cmd["out"], vectors)
        _answer({"seconds": seconds, "n": len(sentences), "peak_mb": _peak_mb()})


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    redirect_output()
    serve(json.loads(sys.argv[1]))
