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
``last-token``     last layer at each sentence's last non-padding position (decoder embedders:
                   Qwen3-Embedding, gte-Qwen2, e5-mistral), whichever side the batch is padded
``max``            masked maximum of the last layer, per dimension
``mean-sqrt-len``  masked sum of the last layer divided by the square root of the token count
``weighted-mean``  the last layer's masked mean weighted by position (1, 2, ..., as
                   sentence-transformers' ``weightedmean``)
=================  ==========================================================================

The last three and ``cls`` / ``last-avg`` are sentence-transformers' pooling modes (each
registered with its ``st_mode``), so a sentence-transformers folder's declared Pooling module
runs as embedkit's pooling (:mod:`embedkit.encoders.st_folder`). A pooling registered
``masked=True`` pools only the positions its mask keeps, so the prompt's tokens can be left out
of it (sentence-transformers' ``include_prompt=False``).

A :class:`Pooling` is a small value: a ``str`` holding the canonical name (so it serialises as
itself and works as a dict key), parsed once, with what the forward pass must provide.

>>> p = Pooling("mean")
>>> p, p.needs_hidden_states, Pooling("layers-avg:1, -1").layers
('last-avg', False, (1, -1))

A new pooling is one function registered in one file (see :func:`register_pooling`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedkit.errors import ConfigError

if TYPE_CHECKING:  # torch is imported by the functions that pool (an exported graph pools itself)
    import torch

#: (last-layer output, attention mask, model, layer indices) -> (batch, d)
_PoolFn = Callable[[Any, "torch.Tensor", Any, tuple[int, ...]], "torch.Tensor"]


@dataclass(frozen=True)
class _PoolingKind:
    """A registered pooling: how to compute it and what the forward pass must return."""

    name: str
    fn: _PoolFn
    hidden_states: bool = False   # needs ``output_hidden_states=True``
    pooler: bool = False          # needs the checkpoint's pooler weights
    takes_layers: bool = False    # written ``name:I,J,...``
    st_mode: str | None = None    # sentence-transformers' pooling mode, when it has one
    uniem: str | None = None      # m3e's ``uniem_embedding_strategy``, when it has one
    layers: tuple[int, ...] = ()  # the hidden states a fixed multi-layer pooling reads
    masked: bool = False          # pools only the masked-in positions (prompt exclusion works)


_KINDS: dict[str, _PoolingKind] = {}
_ALIASES = {"mean": "last-avg", "avg": "last-avg", "last_avg": "last-avg",
            "first_last_avg": "first-last-avg", "pooler_tanh": "pooler-tanh", "cls-token": "cls",
            "lasttoken": "last-token", "last_token": "last-token",
            "max_tokens": "max", "mean_sqrt_len_tokens": "mean-sqrt-len",
            "mean_sqrt_len": "mean-sqrt-len", "weightedmean": "weighted-mean",
            "weighted_mean": "weighted-mean"}


def register_pooling(name: str, *, hidden_states: bool = False, pooler: bool = False,
                     takes_layers: bool = False, st_mode: str | None = None,
                     uniem: str | None = None, layers: tuple[int, ...] = (),
                     masked: bool = False) -> Callable[[_PoolFn], _PoolFn]:
    """Register a pooling function under ``name`` (a decorator).

    The function receives the model output, the attention mask, the model and the layer
    indices (for ``name:I,J`` poolings) and returns float32 ``(batch, d)``. ``masked``: it reads
    only the positions where the mask is 1 (then a prompt can be masked out of it).

    >>> @register_pooling("toy-first-token")
    ... def _first(outputs, mask, model, layers):
    ...     return outputs.last_hidden_state[:, 0].float()
    >>> Pooling("toy-first-token").needs_hidden_states
    False
    >>> unregister_pooling("toy-first-token")
    """
    def add(fn: _PoolFn) -> _PoolFn:
        _KINDS[name] = _PoolingKind(name, fn, hidden_states, pooler, takes_layers, st_mode, uniem,
                                   layers, masked)
        return fn
    return add


def unregister_pooling(name: str) -> None:
    """Remove a registered pooling (for tests that add a toy one)."""
    _KINDS.pop(name, None)


def _valid() -> str:
    names = [f"{k.name}:I,J,..." if k.takes_layers else k.name for k in _KINDS.values()]
    return ", ".join(names)


class Pooling(str):
    """A pooling, by canonical name; parsing (aliases, spaces, case) happens once here.

    >>> Pooling("LAST_AVG") == "last-avg", str(Pooling("first-last-avg"))
    (True, 'first-last-avg')
    """

    kind: _PoolingKind
    layers: tuple[int, ...]

    def __new__(cls, name: str) -> Pooling:
        if isinstance(name, Pooling):
            return name
        if not isinstance(name, str):
            raise ConfigError(f"pooling must be a string, not {type(name).__name__}",
                              param="pooling")
        n = "".join(name.split()).lower()
        n = _ALIASES.get(n, n)
        base, _, arg = n.partition(":")
        kind = _KINDS.get(base)
        layers: tuple[int, ...] = ()
        if kind is not None and kind.takes_layers:
            try:
                layers = tuple(int(x) for x in arg.split(",") if x)
            except ValueError:
                layers = ()
            if not layers:
                kind = None
        elif arg:
            kind = None
        if kind is None:
            raise ConfigError(f"unknown pooling {name!r}; valid: {_valid()} "
                              "(e.g. layers-avg:1,-1), or 'mean' for last-avg", param="pooling")
        canonical = base + (":" + ",".join(map(str, layers)) if layers else "")
        obj = super().__new__(cls, canonical)
        obj.kind, obj.layers = kind, layers or kind.layers
        return obj

    @property
    def needs_hidden_states(self) -> bool:
        return self.kind.hidden_states

    @property
    def needs_pooler(self) -> bool:
        return self.kind.pooler

    @property
    def st_mode(self) -> str | None:
        """sentence-transformers' pooling mode for this pooling (None: it has none)."""
        return self.kind.st_mode

    @property
    def masked(self) -> bool:
        """Whether it pools only the positions its mask keeps (a prompt can be masked out)."""
        return self.kind.masked

    def pool(self, outputs: Any, attention_mask: torch.Tensor, model: Any) -> torch.Tensor:
        """Apply to a transformers model output; float32 ``(batch, d)``."""
        return self.kind.fn(outputs, attention_mask, model, self.layers)

    def to_config(self) -> dict[str, str]:
        return {"pooling": str(self)}


def by_st_mode(mode: str) -> str | None:
    """The registered pooling whose ``st_mode`` is ``mode`` (sentence-transformers' flag suffix,
    e.g. ``mean_tokens``), or None.

    >>> by_st_mode("mean_tokens"), by_st_mode("no_such_mode")
    ('last-avg', None)
    """
    found = [k.name for k in _KINDS.values() if k.st_mode == mode]
    return found[0] if found else None


def uniem_declared(folder: str | Path | None) -> str | None:
    """The pooling m3e's ``uniem_embedding_strategy`` (in ``config.json``) names, or None."""
    cfg_path = Path(folder) / "config.json" if folder is not None else None
    if cfg_path is None or not cfg_path.is_file():
        return None
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    by_uniem = {k.uniem: k.name for k in _KINDS.values() if k.uniem}
    strategy = cfg.get("uniem_embedding_strategy") if isinstance(cfg, dict) else None
    return by_uniem.get(strategy) if isinstance(strategy, str) else None


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the positions where ``mask`` is 1, in float32.

    >>> import torch
    >>> h = torch.tensor([[[1.0], [3.0], [100.0]]]); m = torch.tensor([[1, 1, 0]])
    >>> masked_mean(h, m).tolist()
    [[2.0]]
    """
    import torch

    m = mask.to(torch.float32).unsqueeze(-1)
    total = (hidden.to(torch.float32) * m).sum(dim=1)
    return total / m.sum(dim=1).clamp(min=1.0)


# -- the built-in poolings ----------------------------------------------------------------------

@register_pooling("cls", st_mode="cls_token", uniem="cls")
def _cls(outputs: Any, mask: torch.Tensor, model: Any, layers: tuple[int, ...]) -> torch.Tensor:
    import torch

    out: torch.Tensor = outputs.last_hidden_state[:, 0].to(torch.float32)
    return out


def _pooler_dense(outputs: Any, model: Any, name: str) -> torch.Tensor:
    dense = getattr(getattr(model, "pooler", None), "dense", None)
    if dense is None:
        raise ConfigError(f"pooling {name!r} needs a pooler layer, and this model has none",
                          param="pooling")
    out: torch.Tensor = dense(outputs.last_hidden_state[:, 0])
    return out


@register_pooling("pooler", pooler=True)
def _pooler(outputs: Any, mask: torch.Tensor, model: Any, layers: tuple[int, ...]) -> torch.Tensor:
    import torch

    return _pooler_dense(outputs, model, "pooler").to(torch.float32)


@register_pooling("pooler-tanh", pooler=True)
def _pooler_tanh(outputs: Any, mask: torch.Tensor, model: Any,
                 layers: tuple[int, ...]) -> torch.Tensor:
    import torch

    return torch.tanh(_pooler_dense(outputs, model, "pooler-tanh")).to(torch.float32)


@register_pooling("last-avg", st_mode="mean_tokens", uniem="last_mean", masked=True)
def _last_avg(outputs: Any, mask: torch.Tensor, model: Any,
              layers: tuple[int, ...]) -> torch.Tensor:
    return masked_mean(outputs.last_hidden_state, mask)


def _layers_mean(outputs: Any, mask: torch.Tensor, layers: tuple[int, ...],
                 name: str) -> torch.Tensor:
    import torch

    hs = outputs.hidden_states
    n = len(hs)
    for i in layers:
        if not -n <= i < n:
            raise ConfigError(f"pooling {name!r}: layer index {i} is out of range; the model "
                              f"has hidden_states[0..{n - 1}] (0 = embeddings)", param="pooling")
    return torch.stack([masked_mean(hs[i], mask) for i in layers], dim=0).mean(dim=0)


@register_pooling("first-last-avg", hidden_states=True, uniem="first_last_mean", layers=(1, -1),
                  masked=True)
def _first_last_avg(outputs: Any, mask: torch.Tensor, model: Any,
                    layers: tuple[int, ...]) -> torch.Tensor:
    return _layers_mean(outputs, mask, layers, "first-last-avg")


@register_pooling("layers-avg", hidden_states=True, takes_layers=True, masked=True)
def _layers_avg(outputs: Any, mask: torch.Tensor, model: Any,
                layers: tuple[int, ...]) -> torch.Tensor:
    return _layers_mean(outputs, mask, layers, "layers-avg:" + ",".join(map(str, layers)))


@register_pooling("last-token", st_mode="lasttoken")
def _last_token(outputs: Any, mask: torch.Tensor, model: Any,
                layers: tuple[int, ...]) -> torch.Tensor:
    """The last position where ``mask`` is 1 (left or right padding alike).

    >>> import torch
    >>> h = torch.arange(6.0).view(2, 3, 1); m = torch.tensor([[1, 1, 0], [0, 1, 1]])
    >>> _last_token(type("O", (), {"last_hidden_state": h}), m, None, ()).tolist()
    [[1.0], [5.0]]
    """
    import torch

    hidden = outputs.last_hidden_state
    positions = torch.arange(1, mask.shape[1] + 1, device=mask.device)
    last = (mask.to(positions.dtype) * positions).argmax(dim=1)
    out: torch.Tensor = hidden[torch.arange(hidden.shape[0], device=hidden.device), last].to(torch.float32)
    return out


@register_pooling("max", st_mode="max_tokens", masked=True)
def _max(outputs: Any, mask: torch.Tensor, model: Any, layers: tuple[int, ...]) -> torch.Tensor:
    import torch

    # as sentence-transformers: masked-out positions are -inf, so they never win
    hidden = outputs.last_hidden_state.to(torch.float32)
    out: torch.Tensor = hidden.masked_fill(mask.unsqueeze(-1) == 0, float("-inf")).max(dim=1).values
    return out


@register_pooling("mean-sqrt-len", st_mode="mean_sqrt_len_tokens", masked=True)
def _mean_sqrt_len(outputs: Any, mask: torch.Tensor, model: Any,
                   layers: tuple[int, ...]) -> torch.Tensor:
    import torch

    m = mask.to(torch.float32).unsqueeze(-1)
    total = (outputs.last_hidden_state.to(torch.float32) * m).sum(dim=1)
    out: torch.Tensor = total / torch.sqrt(m.sum(dim=1).clamp(min=1e-9))
    return out


@register_pooling("weighted-mean", st_mode="weightedmean_tokens")
def _weighted_mean(outputs: Any, mask: torch.Tensor, model: Any,
                   layers: tuple[int, ...]) -> torch.Tensor:
    """Position weights 1, 2, ... counted from the first real token (left padding skipped), as
    sentence-transformers. Not ``masked``: sentence-transformers keeps a masked-out prompt's
    positions in the weights of the tokens after it, which a mask alone cannot say."""
    import torch

    m = mask.to(torch.float32)
    first = (mask != 0).to(torch.int64).argmax(dim=1, keepdim=True)
    steps = torch.arange(1, m.shape[1] + 1, dtype=torch.float32, device=m.device).unsqueeze(0)
    w = (m * (steps - first.to(torch.float32))).unsqueeze(-1)
    total = (outputs.last_hidden_state.to(torch.float32) * w).sum(dim=1)
    out: torch.Tensor = total / w.sum(dim=1).clamp(min=1e-9)
    return out


def pool(pooling: str, outputs: Any, attention_mask: torch.Tensor, model: Any) -> torch.Tensor:
    """Apply a pooling to a transformers model output; returns float32 (batch, d)."""
    return Pooling(pooling).pool(outputs, attention_mask, model)


#: the built-in poolings, as the README lists them
POOLINGS = ("cls", "pooler", "pooler-tanh", "last-avg", "first-last-avg", "layers-avg:I,J,...",
            "last-token", "max", "mean-sqrt-len", "weighted-mean")
