"""Training examples as batches: the optimizer-step plan and the loss of a micro-batch.

Sentences are tokenised once; every micro-batch goes through
:func:`embedkit.encoders.transformer.forward_pooled`, the forward pass evaluation uses, so a
trained model is evaluated exactly as it was trained.

>>> plan(n=5, batch=2, accum=1, epochs=1)     # the last micro-batch of 1 is dropped
[[(0, 0, 2)], [(0, 2, 4)]]
>>> plan(n=6, batch=2, accum=2, epochs=2)
[[(0, 0, 2), (0, 2, 4)], [(0, 4, 6)], [(1, 0, 2), (1, 2, 4)], [(1, 4, 6)]]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from embedkit.encoders.pooling import Pooling
from embedkit.encoders.transformer import forward_pooled, pad_batch, takes_token_types, tokenize
from embedkit.training.losses import cosent_loss, infonce_loss, simcse_loss

#: (epoch, start, end) into that epoch's data order
MicroBatch = tuple[int, int, int]


def plan(n: int, batch: int, accum: int, epochs: int) -> list[list[MicroBatch]]:
    """Optimizer steps, each a list of micro-batches (epoch, start, end) into that epoch's order.
    A last micro-batch of fewer than 2 examples is dropped (no in-batch negative)."""
    steps = []
    for e in range(epochs):
        micro = [(e, s, min(s + batch, n)) for s in range(0, n, batch) if min(s + batch, n) - s >= 2]
        steps += [micro[i:i + accum] for i in range(0, len(micro), accum)]
    return steps


def _texts_of(example: Any, method: str) -> list[str]:
    if isinstance(example, str):
        return [example]
    return [t for t in (example[:2] if method == "cosent" else example) if t is not None]


class Batches:
    """Tokenised examples and the loss of a micro-batch (a list of example indices).

    ``method`` is ``simcse-unsupervised`` (examples are sentences), ``simcse-supervised``
    ((anchor, positive, hard negative or None)) or ``cosent`` ((s1, s2, label)).
    """

    def __init__(self, method: str, examples: Sequence[Any], tokenizer: Any, *, max_length: int,
                 pooling: Pooling, device: torch.device, temperature: float,
                 cosent_scale: float) -> None:
        self.method, self.examples, self.pooling, self.device = (method, examples, pooling,
                                                                 device)
        self.temperature, self.cosent_scale = temperature, cosent_scale
        texts = list(dict.fromkeys(t for e in examples for t in _texts_of(e, method)))
        self.ids = dict(zip(texts, tokenize(tokenizer, texts, max_length), strict=True))
        self.pad_id = tokenizer.pad_token_id or 0
        self._token_types: bool | None = None

    def embed(self, model: Any, texts: list[str]) -> torch.Tensor:
        """The pooled vectors of ``texts`` (with gradients), float32 (n, d)."""
        if self._token_types is None:
            self._token_types = takes_token_types(model)
        input_ids, mask = pad_batch([self.ids[t] for t in texts], self.pad_id)
        pooled = forward_pooled(model, input_ids.to(self.device), mask.to(self.device),
                                [self.pooling], token_type_ids=self._token_types)
        return pooled[str(self.pooling)]

    def loss(self, model: Any, idx: Sequence[int]) -> torch.Tensor:
        ex = [self.examples[i] for i in idx]
        n = len(ex)
        if self.method == "simcse-unsupervised":
            z = self.embed(model, ex + ex)           # one pass, two dropout masks per sentence
            return simcse_loss(z[:n], z[n:], self.temperature)
        if self.method == "cosent":
            z = self.embed(model, [e[0] for e in ex] + [e[1] for e in ex])
            cos = torch.nn.functional.cosine_similarity(z[:n], z[n:], dim=-1)
            labels = torch.tensor([float(e[2]) for e in ex], device=cos.device)
            return cosent_loss(cos, labels, self.cosent_scale)
        negs = [e[2] for e in ex if e[2] is not None]
        z = self.embed(model, [e[0] for e in ex] + [e[1] for e in ex] + negs)
        return infonce_loss(z[:n], z[n:2 * n], z[2 * n:] if negs else None, self.temperature)
