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
=================  ==========================================================================

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
from typing import Any

import torch

from embedkit.errors import ConfigError

#: (last-layer output, attention mask, model, hidden states or None, layer indices) -> (batch, d)
PoolFn = Callable[[Any, torch.Tensor, Any, tuple[int, ...]], torch.Tensor]


@dataclass(frozen=True)
class PoolingKind:
    """A registered pooling: how to compute it and what the forward pass must return."""

    name: str
    fn: PoolFn
    hidden_states: bool = False   # needs ``output_hidden_states=True``
    pooler: bool = False          # needs the checkpoint's pooler weights
    takes_layers: bool = False    # written ``name:I,J,...``
    st_mode: str | None = None    # sentence-transformers' pooling mode, when it has one
    uniem: str | None = None      # m3e's ``uniem_embedding_strategy``, when it has one
    layers: tuple[int, ...] = ()  # the hidden states a fixed multi-layer pooling reads


_KINDS: dict[str, PoolingKind] = {}
_ALIASES = {"mean": "last-avg", "avg": "last-avg", "last_avg": "last-avg",
            "first_last_avg": "first-last-avg", "pooler_tanh": "pooler-tanh", "cls-token": "cls",
            "lasttoken": "last-token", "last_token": "last-token"}


def register_pooling(name: str, *, hidden_states: bool = False, pooler: bool = False,
                     takes_layers: bool = False, st_mode: str | None = None,
                     uniem: str | None = None,
                     layers: tuple[int, ...] = ()) -> Callable[[PoolFn], PoolFn]:
    """Register a pooling function under ``name`` (a decorator).

    The function receives the model output, the attention mask, the model and the layer
    indices (for ``name:I,J`` poolings) and returns float32 ``(batch, d)``.

    >>> @register_pooling("toy-first-token")
    ... def _first(outputs, mask, model, layers):
    ...     return outputs.last_hidden_state[:, 0].float()
    >>> Pooling("toy-first-token").needs_hidden_states
    False
    >>> unregister_pooling("toy-first-token")
    """
    def add(fn: PoolFn) -> PoolFn:
        _KINDS[name] = PoolingKind(name, fn, hidden_states, pooler, takes_layers, st_mode, uniem,
                                   layers)
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

    kind: PoolingKind
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

    def pool(self, outputs: Any, attention_mask: torch.Tensor, model: Any) -> torch.Tensor:
        """Apply to a transformers model output; float32 ``(batch, d)``."""
        return self.kind.fn(outputs, attention_mask, model, self.layers)

    def to_config(self) -> dict[str, str]:
        return {"pooling": str(self)}

    @classmethod
    def from_folder(cls, folder: str | Path | None) -> Pooling | None:
        """The pooling a model folder declares (sentence-transformers' pooling config or m3e's
        ``uniem_embedding_strategy``); None if it declares none."""
        name = _declared(Path(folder)) if folder is not None and Path(folder).is_dir() else None
        return cls(name) if name else None


def parse_pooling(name: str) -> Pooling:
    """Canonical :class:`Pooling`; ConfigError listing the valid ones otherwise.

    >>> parse_pooling("mean"), parse_pooling("layers-avg:1,-1")
    ('last-avg', 'layers-avg:1,-1')
    """
    return Pooling(name)


def layers_needed(pooling: str) -> list[int] | None:
    """The hidden-state indices a pooling reads (None: only the last layer / pooler)."""
    p = Pooling(pooling)
    return list(p.layers) if p.needs_hidden_states else None


def _st_declared(folder: Path) -> str | None:
    modules = folder / "modules.json"
    if not modules.is_file():
        return None
    by_mode = {k.st_mode: k.name for k in _KINDS.values() if k.st_mode}
    try:
        for m in json.loads(modules.read_text(encoding="utf-8")):
            if m.get("type", "").endswith("Pooling"):
                cfg = json.loads((folder / m["path"] / "config.json").read_text("utf-8"))
                # sentence-transformers >= 6 writes "pooling_mode": "cls"; older, flags
                mode = cfg.get("pooling_mode")
                mode6 = {"cls": "cls_token", "mean": "mean_tokens"}.get(mode, mode)
                if mode6 in by_mode:
                    return by_mode[mode6]
                for mode, name in by_mode.items():
                    if cfg.get(f"pooling_mode_{mode}"):
                        return name
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return None


def _declared(folder: Path) -> str | None:
    st = _st_declared(folder)
    if st is not None:
        return st
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        return None
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    by_uniem = {k.uniem: k.name for k in _KINDS.values() if k.uniem}
    strategy = cfg.get("uniem_embedding_strategy") if isinstance(cfg, dict) else None
    return by_uniem.get(strategy) if isinstance(strategy, str) else None


def declared_pooling(folder: str | Path | None) -> str | None:
    """The name of the pooling a model folder declares, or None."""
    p = Pooling.from_folder(folder)
    return str(p) if p is not None else None


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the positions where ``mask`` is 1, in float32.

    >>> h = torch.tensor([[[1.0], [3.0], [100.0]]]); m = torch.tensor([[1, 1, 0]])
    >>> masked_mean(h, m).tolist()
    [[2.0]]
    """
    m = mask.to(torch.float32).unsqueeze(-1)
    total = (hidden.to(torch.float32) * m).sum(dim=1)
    return total / m.sum(dim=1).clamp(min=1.0)


# -- the built-in poolings ----------------------------------------------------------------------

@register_pooling("cls", st_mode="cls_token", uniem="cls")
def _cls(outputs: Any, mask: torch.Tensor, model: Any, layers: tuple[int, ...]) -> torch.Tensor:
    return outputs.last_hidden_state[:, 0].to(torch.float32)


def _pooler_dense(outputs: Any, model: Any, name: str) -> torch.Tensor:
    dense = getattr(getattr(model, "pooler", None), "dense", None)
    if dense is None:
        raise ConfigError(f"pooling {name!r} needs a pooler layer, and this model has none",
                          param="pooling")
    return dense(outputs.last_hidden_state[:, 0])


@register_pooling("pooler", pooler=True)
def _pooler(outputs: Any, mask: torch.Tensor, model: Any, layers: tuple[int, ...]) -> torch.Tensor:
    return _pooler_dense(outputs, model, "pooler").to(torch.float32)


@register_pooling("pooler-tanh", pooler=True)
def _pooler_tanh(outputs: Any, mask: torch.Tensor, model: Any,
                 layers: tuple[int, ...]) -> torch.Tensor:
    return torch.tanh(_pooler_dense(outputs, model, "pooler-tanh")).to(torch.float32)


@register_pooling("last-avg", st_mode="mean_tokens", uniem="last_mean")
def _last_avg(outputs: Any, mask: torch.Tensor, model: Any,
              layers: tuple[int, ...]) -> torch.Tensor:
    return masked_mean(outputs.last_hidden_state, mask)


def _layers_mean(outputs: Any, mask: torch.Tensor, layers: tuple[int, ...],
                 name: str) -> torch.Tensor:
    hs = outputs.hidden_states
    n = len(hs)
    for i in layers:
        if not -n <= i < n:
            raise ConfigError(f"pooling {name!r}: layer index {i} is out of range; the model "
                              f"has hidden_states[0..{n - 1}] (0 = embeddings)", param="pooling")
    return torch.stack([masked_mean(hs[i], mask) for i in layers], dim=0).mean(dim=0)


@register_pooling("first-last-avg", hidden_states=True, uniem="first_last_mean", layers=(1, -1))
def _first_last_avg(outputs: Any, mask: torch.Tensor, model: Any,
                    layers: tuple[int, ...]) -> torch.Tensor:
    return _layers_mean(outputs, mask, layers, "first-last-avg")


@register_pooling("layers-avg", hidden_states=True, takes_layers=True)
def _layers_avg(outputs: Any, mask: torch.Tensor, model: Any,
                layers: tuple[int, ...]) -> torch.Tensor:
    return _layers_mean(outputs, mask, layers, "layers-avg:" + ",".join(map(str, layers)))


@register_pooling("last-token", st_mode="lasttoken")
def _last_token(outputs: Any, mask: torch.Tensor, model: Any,
                layers: tuple[int, ...]) -> torch.Tensor:
    """The last position where ``mask`` is 1 (left or right padding alike).

    >>> h = torch.arange(6.0).view(2, 3, 1); m = torch.tensor([[1, 1, 0], [0, 1, 1]])
    >>> _last_token(type("O", (), {"last_hidden_state": h}), m, None, ()).tolist()
    [[1.0], [5.0]]
    """
    hidden = outputs.last_hidden_state
    positions = torch.arange(1, mask.shape[1] + 1, device=mask.device)
    last = (mask.to(positions.dtype) * positions).argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last].to(torch.float32)


def pool(pooling: str, outputs: Any, attention_mask: torch.Tensor, model: Any) -> torch.Tensor:
    """Apply a pooling to a transformers model output; returns float32 (batch, d)."""
    return Pooling(pooling).pool(outputs, attention_mask, model)


#: the built-in poolings, as the README lists them
POOLINGS = ("cls", "pooler", "pooler-tanh", "last-avg", "first-last-avg", "layers-avg:I,J,...",
            "last-token")
