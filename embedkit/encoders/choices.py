"""The values encoder settings take, in a module that imports nothing heavy (no torch, no
numpy), so that a command line can list them without loading a backend.

>>> BACKENDS, QUANTIZE
(('torch', 'onnx', 'openvino'), ('none', 'int8', 'int8-static'))
>>> available_cores() >= 1
True
"""

from __future__ import annotations

from embedkit.errors import ConfigError
from embedkit.provenance import available_cores as available_cores  # noqa: PLC0414 - its home

#: inference engines (``EncoderConfig.backend``)
BACKENDS = ("torch", "onnx", "openvino")
#: quantisation of an exported graph (``EncoderConfig.quantize``)
QUANTIZE = ("none", "int8", "int8-static")
#: the similarity functions sentence-transformers declares (``similarity_fn_name``)
SIMILARITIES = ("cosine", "dot", "euclidean", "manhattan")
#: the weights' dtypes (``EncoderConfig.dtype``), and the short names also accepted
DTYPE_NAMES = ("float32", "bfloat16", "float16")
_DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
#: the dtypes vectors are stored in once encoded (encode folders' shards)
VECTOR_DTYPES = ("float32", "float16")


def canonical_dtype(dtype: str) -> str:
    """``float32``, ``bfloat16`` or ``float16`` (``fp32``/``bf16``/``fp16`` accepted).

    >>> canonical_dtype("bf16")
    'bfloat16'
    """
    name = _DTYPE_ALIASES.get(dtype, dtype)
    if name not in DTYPE_NAMES:
        raise ConfigError(f"unknown dtype {dtype!r}; valid: float32, bfloat16, float16",
                          param="dtype")
    return name


def check_cpu_precision(backend: str, dtype: str) -> None:
    """Refuse, in one line, a dtype a backend cannot run natively on this CPU: float16 (no CPU
    kernels run it), and bfloat16 where the CPU has no bfloat16 instructions
    (:func:`embedkit.provenance.native_bf16_flags`, read at run time) or on ONNX Runtime, whose
    CPU provider has no bfloat16 kernels on x86 (only ARM64's fast-math GEMM), so it would only
    convert back and forth. bfloat16 runs as the weights' dtype on torch and as the CPU
    plugin's inference precision on OpenVINO."""
    from embedkit import provenance

    gpu = ", or a GPU (device cuda)" if backend == "torch" else ""
    if dtype == "float16":
        where, other = (("the cpu", "bfloat16 or float32") if backend == "torch" else
                        (f"backend {backend}", "float32, or bfloat16 on openvino"))
        raise ConfigError(f"float16 on {where} is refused (no CPU kernels run it natively); "
                          f"use {other}{gpu}", param="dtype")
    if dtype == "bfloat16" and backend == "onnx":
        raise ConfigError("bfloat16 on backend onnx is refused: ONNX Runtime's CPU provider has "
                          "no bfloat16 kernels on x86; use the openvino backend (or torch) for "
                          "bfloat16, or float32", param="dtype")
    if dtype == "bfloat16" and not provenance.native_bf16_flags():
        raise ConfigError("bfloat16 on this cpu is refused: it has no native bfloat16 (neither "
                          f"avx512_bf16 nor amx_bf16 in /proc/cpuinfo); use float32{gpu}",
                          param="dtype")
