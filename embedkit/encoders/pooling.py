"""The poolings of the BERT-whitening literature, each masked so padding never matters.

Hidden states follow transformers' convention: ``hidden_states[0]`` is the embedding output,
``hidden_states[i]`` the output of transformer layer i, ``hidden_states[-1]`` the last layer.

=================  ==========================================================================
``cls``            last layer, position 0 ([CLS])
``pooler``         the checkpoint's pooler dense layer on [CLS], *without* tanh (as the
                   BERT-whitening code takes it)
``pooler-tanh``    transformers' ``pooler_output`` (dense + tanh)
``last-avg``       masked mean of the last layer (alias ``mean``)
``first-last-avg`` mean of the masked means of ``hidden_states[1]`` (first transformer layer)
                   and the last layer
``layers-avg:I,J`` mean of the masked means of the listed ``hidden_states`` indices
=================  ==========================================================================

>>> parse_pooling("mean"), parse_pooling("layers-avg:1,-1")
('last-avg', 'layers-avg:1,-1')
"""

from __future__ import annotations

import torch

from embedkit.errors import ConfigError

POOLINGS = ("cls", "pooler", "pooler-tanh", "last-avg", "first-last-avg", "layers-avg:I,J,...")
_ALIASES = {"mean": "last-avg", "avg": "last-avg", "last_avg": "last-avg",
            "first_last_avg": "first-last-avg", "pooler_tanh": "pooler-tanh", "cls-token": "cls"}


def parse_pooling(name: str) -> str:
    """Canonical name of a pooling; ConfigError listing the valid ones otherwise."""
    n = name.strip().lower()
    n = _ALIASES.get(n, n)
    if n in ("cls", "pooler", "pooler-tanh", "last-avg", "first-last-avg"):
        return n
    if n.startswith("layers-avg:"):
        try:
            idx = [int(x) for x in n.split(":", 1)[1].split(",") if x.strip()]
        except ValueError:
            idx = []
        if idx:
            return "layers-avg:" + ",".join(map(str, idx))
    raise ConfigError(f"unknown pooling {name!r}; valid: {', '.join(POOLINGS)} "
                      "(e.g. layers-avg:1,-1), or 'mean' for last-avg")


def layers_needed(pooling: str) -> list[int] | None:
    """The hidden-state indices a pooling reads (None: only the last layer / pooler)."""
    if pooling == "first-last-avg":
        return [1, -1]
    if pooling.startswith("layers-avg:"):
        return [int(x) for x in pooling.split(":", 1)[1].split(",")]
    return None


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the positions where ``mask`` is 1, in float32.

    >>> h = torch.tensor([[[1.0], [3.0], [100.0]]]); m = torch.tensor([[1, 1, 0]])
    >>> masked_mean(h, m).tolist()
    [[2.0]]
    """
    m = mask.to(torch.float32).unsqueeze(-1)
    total = (hidden.to(torch.float32) * m).sum(dim=1)
    return total / m.sum(dim=1).clamp(min=1.0)


def pool(pooling: str, outputs, attention_mask: torch.Tensor, model) -> torch.Tensor:
    """Apply a canonical pooling to a transformers model output; returns float32 (batch, d)."""
    last = outputs.last_hidden_state
    if pooling == "cls":
        return last[:, 0].to(torch.float32)
    if pooling in ("pooler", "pooler-tanh"):
        dense = getattr(getattr(model, "pooler", None), "dense", None)
        if dense is None:
            raise ConfigError(f"pooling {pooling!r} needs a pooler layer, and this model has none")
        z = dense(last[:, 0])
        return (torch.tanh(z) if pooling == "pooler-tanh" else z).to(torch.float32)
    if pooling == "last-avg":
        return masked_mean(last, attention_mask)
    layers = layers_needed(pooling)
    if layers is None:
        raise ConfigError(f"unknown pooling {pooling!r}")
    hs = outputs.hidden_states
    n = len(hs)
    for i in layers:
        if not -n <= i < n:
            raise ConfigError(f"pooling {pooling!r}: layer index {i} is out of range; the model "
                              f"has hidden_states[0..{n - 1}] (0 = embeddings)")
    means = [masked_mean(hs[i], attention_mask) for i in layers]
    return torch.stack(means, dim=0).mean(dim=0)
