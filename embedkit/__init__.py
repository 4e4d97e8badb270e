"""embedkit: evaluate and post-process sentence embeddings.

>>> import embedkit
>>> embedkit.__version__
'0.1.0'

The public API is imported lazily so that ``import embedkit`` stays cheap (no torch import):

- :class:`embedkit.encoders.Encoder` turns sentences into vectors;
- :mod:`embedkit.data` describes and loads the STS tasks;
- :class:`embedkit.evaluation.STSEvaluator` scores an encoder (Spearman of cosine);
- :mod:`embedkit.postprocess` holds whitening, PCA and random projection;
- :mod:`embedkit.retrieval` builds FAISS indexes.
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "Encoder": "embedkit.encoders",
    "STSEvaluator": "embedkit.evaluation",
    "load_task": "embedkit.data",
    "get_task": "embedkit.data",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'embedkit' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
