"""What every runner needs from an encoder: a :class:`typing.Protocol`, in the way mteb defines
its ``EncoderProtocol``. The transformers model is one implementation
(:class:`~embedkit.encoders.transformer.TransformerEncoder`); caching and statistics are wrappers
around any implementation (:mod:`embedkit.encoders.wrappers`); other backends implement the same.

>>> import numpy as np
>>> class Constant:
...     name, identity, default_pooling, dim = "constant", "constant@1", "cls", 2
...     def model_max_length(self): return 512
...     def describe(self): return {"name": self.name, "identity": self.identity}
...     def encode(self, sentences, pooling=None, *, max_length=64):
...         return np.ones((len(sentences), 2), np.float32)
...     def encode_multi(self, sentences, poolings, *, max_length=64):
...         return {str(p): self.encode(sentences, p) for p in poolings}
>>> isinstance(Constant(), SentenceEncoder)
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class SentenceEncoder(Protocol):
    """Sentences in, float32 vectors out.

    ``identity`` changes whenever the vectors would change for the same pooling and max length
    (weights, dtype, casing, backend, quantisation): caches, saved maps and indexes key on it.
    """

    @property
    def name(self) -> str:
        """The model as the user named it."""
        ...

    @property
    def identity(self) -> str:
        """Changes whenever the vectors would change (see the class docstring)."""
        ...

    @property
    def default_pooling(self) -> Any:
        """The pooling used when none is named (a :class:`~embedkit.encoders.Pooling`)."""
        ...

    @property
    def dim(self) -> int:
        """The width of the model's output (hidden size)."""
        ...

    def model_max_length(self) -> int:
        """The longest input the model takes, in tokens."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-ready description for run records (name, path, identity, dtype, device ...)."""
        ...

    def encode(self, sentences: Sequence[str], pooling: str | None = None, *,
               max_length: int = 64) -> np.ndarray:
        """``(n, d)`` float32 vectors in input order (``pooling=None``: the default one)."""
        ...

    def encode_multi(self, sentences: Sequence[str], poolings: Sequence[str], *,
                     max_length: int = 64) -> dict[str, np.ndarray]:
        """One pass, several poolings: ``{canonical pooling name: (n, d) float32}``."""
        ...
