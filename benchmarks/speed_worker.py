"""One sentence-transformers engine of the speed report, one process:
``python speed_worker.py SPEC_JSON``.

sentence-transformers is not embedkit's command, so it gets this small harness; like embedkit's
engines (``embedkit encode`` processes) it runs in a fresh process per round, and the driver
(:mod:`bench_speed`) times the process from outside too. The spec says the backend, the
settings, and either ``"prepare": true`` (export the backend's files into the engine's own model
folder and save them, so that timed rounds load them: the "export / first start" column) or
``"sentences"`` (a JSON-lines file of ``{"text": ...}``) and ``"out"`` (the vectors, ``.npy``):
those are encoded with no warm-up call before, as ``embedkit encode`` encodes them.
It answers one JSON line: load seconds, encoding seconds, sentences, peak MB, and the precision
the runtime really ran at (OpenVINO: the compiled model's ``INFERENCE_PRECISION_HINT``).

The file runs under another interpreter (sentence-transformers' ONNX and OpenVINO backends need
optimum, which needs an older transformers than embedkit's environment has), so it imports
nothing from embedkit.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from typing import Any

import numpy as np


def _kwargs(spec: dict[str, Any]) -> dict[str, Any]:
    backend, threads = spec["backend"], int(spec["threads"])
    if backend == "onnx":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        kw: dict[str, Any] = {"provider": "CPUExecutionProvider", "session_options": so}
        if spec.get("quantize") == "int8" and not spec.get("prepare"):
            kw["file_name"] = spec["st_file"]
        return kw
    if backend == "openvino":
        ov: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        if spec.get("ov_hint"):
            ov["INFERENCE_PRECISION_HINT"] = spec["ov_hint"]
        kw = {"ov_config": ov}
        if spec.get("quantize") == "int8" and spec.get("prepare"):
            from optimum.intel import OVWeightQuantizationConfig

            kw.update(quantization_config=OVWeightQuantizationConfig(bits=8), export=True)
        return kw
    return {}


def load(spec: dict[str, Any]) -> Any:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(spec["model_path"], device="cpu", backend=spec["backend"],
                                model_kwargs=_kwargs(spec))
    model.max_seq_length = int(spec["max_length"])
    return model


def prepare(model: Any, spec: dict[str, Any]) -> None:
    """Save the export into the engine's folder (and the int8 ONNX file ST makes for this CPU)."""
    if spec["backend"] == "torch":
        return
    model.save_pretrained(spec["model_path"])
    if spec["backend"] == "onnx" and spec.get("quantize") == "int8":
        from sentence_transformers import export_dynamic_quantized_onnx_model

        export_dynamic_quantized_onnx_model(model, spec["st_int8_config"], spec["model_path"])


def ran_at(model: Any, spec: dict[str, Any]) -> str:
    """The precision the runtime computed in: OpenVINO's compiled model says; torch and ONNX
    Runtime on the CPU compute in float32 (int8 files: int8)."""
    if spec["backend"] != "openvino":
        return "int8" if spec.get("quantize") == "int8" else "fp32"
    try:
        compiled = model[0].auto_model.request
        hint = compiled.get_property("INFERENCE_PRECISION_HINT")
        name = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
    except Exception as exc:  # an optimum without .request: said, not guessed
        return f"unknown ({type(exc).__name__})"
    return {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}.get(name, name)


def _texts(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def main(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(int(spec["threads"]))
    batch = int(spec["batch_size"])
    t0 = time.perf_counter()
    model = load(spec)
    answer: dict[str, Any] = {"load_seconds": time.perf_counter() - t0}
    if spec.get("prepare"):
        model.encode(["预热"] * 4, batch_size=batch, show_progress_bar=False)
        prepare(model, spec)
    else:  # no warm-up call: the first batch counts, as it does in `embedkit encode`
        sentences = _texts(spec["sentences"])
        t = time.perf_counter()
        vectors = model.encode(sentences, batch_size=batch, convert_to_numpy=True,
                               show_progress_bar=False)
        answer.update(seconds=time.perf_counter() - t, n=len(sentences))
        np.save(spec["out"], np.asarray(vectors, dtype=np.float32))
    answer["ran_at"] = ran_at(model, spec)
    answer["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return answer


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    result = main(json.loads(sys.argv[1]))
    sys.stderr.flush()
    print("SPEED " + json.dumps(result), flush=True)
