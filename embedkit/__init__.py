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

import importlib
import sys
from collections.abc import Callable
from typing import Any

__version__ = "0.1.0"


def lazy_exports(package: str, exports: dict[str, str]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for a package whose public names load on first use
    (PEP 562), so that importing one light module of it (or parsing the command line) does not
    import torch, FAISS or scikit-learn. ``exports``: each public name -> the module defining it.

    >>> getattr_, dir_ = lazy_exports("embedkit", {"get_task": "embedkit.data.registry"})
    >>> getattr_("get_task").__name__, "get_task" in dir_()
    ('get_task', True)
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__


_LAZY = {
    "Encoder": "embedkit.encoders",
    "STSEvaluator": "embedkit.evaluation",
    "load_task": "embedkit.data",
    "get_task": "embedkit.data",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = ["__version__", *_LAZY]
