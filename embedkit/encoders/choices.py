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
