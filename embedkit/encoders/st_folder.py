"""The one writer of sentence-transformers model folders: Transformer + Pooling [+ Dense]
[+ Normalize], built from sentence-transformers' own modules so that
``SentenceTransformer(folder)`` encodes exactly as embedkit does.

A linear post-processing map ``y = (x + bias) @ kernel`` becomes a ``Dense`` module with
``W = kernel.T`` and ``b = bias @ kernel`` (identity activation). Only poolings that
sentence-transformers has (``cls``, ``last-avg``/mean) can be written.

>>> st_pooling_mode("mean")
'mean'
>>> st_pooling_mode("first-last-avg")
Traceback (most recent call last):
...
embedkit.errors.ConfigError: pooling 'first-last-avg' cannot be written as a sentence-transformers Pooling module (only cls and last-avg/mean can); save it in the safetensors, npz or faiss format, which work with every pooling
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from embedkit.encoders.pooling import Pooling
from embedkit.errors import ConfigError
from embedkit.io.atomic import atomic_dir

__all__ = ["save_st_folder", "write_st_folder", "st_pooling_mode"]

# embedkit's Pooling.st_mode (the config flag's suffix) -> sentence-transformers' pooling_mode
_ST_MODES = {"cls_token": "cls", "mean_tokens": "mean", "max_tokens": "max",
             "mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
             "weightedmean_tokens": "weightedmean", "lasttoken": "lasttoken"}


def st_pooling_mode(pooling: str) -> str:
    """sentence-transformers' ``pooling_mode`` for an embedkit pooling, or :class:`ConfigError`."""
    p = Pooling(pooling)
    mode = _ST_MODES.get(p.st_mode or "")
    if mode is None:
        raise ConfigError(
            f"pooling {str(p)!r} cannot be written as a sentence-transformers Pooling module "
            "(only cls and last-avg/mean can); save it in the safetensors, npz or faiss format, "
            "which work with every pooling", param="pooling")
    return mode


def _import_st() -> tuple[Any, ...]:
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ConfigError("writing a sentence-transformers folder needs the "
                          "sentence-transformers package: pip install 'embedkit[st]'") from exc
    try:  # sentence-transformers >= 6 (the old path still works there, with a warning)
        from sentence_transformers.sentence_transformer.modules import (
            Dense,
            Normalize,
            Transformer,
        )
        from sentence_transformers.sentence_transformer.modules import Pooling as STPooling
    except ImportError:  # pragma: no cover - sentence-transformers 3 to 5
        from sentence_transformers.models import (  # type: ignore[no-redef]
            Dense,
            Normalize,
            Transformer,
        )
        from sentence_transformers.models import Pooling as STPooling  # type: ignore[no-redef]
    return torch, SentenceTransformer, Transformer, STPooling, Dense, Normalize


def _dense(st: tuple[Any, ...], kernel: Any, bias: Any | None) -> Any:
    torch, Dense = st[0], st[4]
    kernel = np.asarray(kernel, dtype=np.float64)
    d, k = kernel.shape
    b = np.zeros(d) if bias is None else np.asarray(bias, dtype=np.float64)
    return Dense(d, k, bias=True, activation_function=torch.nn.Identity(),
                 init_weight=torch.tensor(kernel.T, dtype=torch.float32),
                 init_bias=torch.tensor(b @ kernel, dtype=torch.float32))


def write_st_folder(folder: str | os.PathLike, model_path: str | os.PathLike, *, pooling: str,
                    max_seq_length: int, lowercase: bool = False, kernel: Any | None = None,
                    bias: Any | None = None, normalize: bool = False,
                    json_files: Mapping[str, Any] | None = None,
                    card: str | None = None) -> Path:
    """Write a sentence-transformers folder into ``folder`` (existing or not; not atomic: see
    :func:`save_st_folder`) for the transformers model in ``model_path``.

    ``kernel`` (d x k) and ``bias`` (d) add a Dense module (the map ``(x + bias) @ kernel``);
    ``normalize`` a Normalize module; ``json_files`` maps file names to JSON objects written in
    the folder (e.g. embedkit's own metadata); ``card`` is the ``README.md`` written instead
    of sentence-transformers' generic one (:mod:`embedkit.io.model_card`). Returns the folder.
    """
    mode = st_pooling_mode(pooling)
    st = _import_st()
    _, SentenceTransformer, Transformer, STPooling, _, Normalize = st
    transformer = Transformer(str(model_path), max_seq_length=int(max_seq_length),
                              do_lower_case=bool(lowercase))
    width = (getattr(transformer, "get_embedding_dimension", None)
             or transformer.get_word_embedding_dimension)()
    modules = [transformer, STPooling(width, pooling_mode=mode)]
    if kernel is not None:
        d = int(np.asarray(kernel).shape[0])
        if width != d:
            raise ConfigError(f"the model's dimension is {width} but the map expects d={d}")
        modules.append(_dense(st, kernel, bias))
    if normalize:
        modules.append(Normalize())
    folder = Path(folder)
    SentenceTransformer(modules=modules, device="cpu").save(str(folder))
    for name, obj in (json_files or {}).items():
        (folder / name).write_text(json.dumps(obj, ensure_ascii=False, indent=2) + "\n",
                                   encoding="utf-8")
    if card is not None:
        (folder / "README.md").write_text(card, encoding="utf-8")
    return folder


def save_st_folder(dest: str | os.PathLike, model: str | os.PathLike | Any, tokenizer: Any = None,
                   *, pooling: str, max_seq_length: int, lowercase: bool = False,
                   kernel: Any | None = None, bias: Any | None = None, normalize: bool = False,
                   json_files: Mapping[str, Any] | None = None, card: str | None = None) -> Path:
    """Write a sentence-transformers folder at ``dest`` atomically (it replaces ``dest`` whole).

    ``model`` is a transformers model folder (a path), or an in-memory transformers model with
    its ``tokenizer`` (saved first to a temporary folder beside ``dest``). The other arguments
    are those of :func:`write_st_folder`. Returns ``dest``.
    """
    dest = Path(dest)
    st_pooling_mode(pooling)  # fail before anything is written

    def write(folder: Path, model_path: str | os.PathLike) -> None:
        write_st_folder(folder, model_path, pooling=pooling, max_seq_length=max_seq_length,
                        lowercase=lowercase, kernel=kernel, bias=bias, normalize=normalize,
                        json_files=json_files, card=card)

    with atomic_dir(dest) as tmp:
        if isinstance(model, (str, os.PathLike)):
            write(tmp, model)
        else:
            if tokenizer is None:
                raise ConfigError("save_st_folder: an in-memory model needs its tokenizer",
                                  param="tokenizer")
            dest.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=f".{dest.name}.", dir=dest.parent) as src:
                model.save_pretrained(src, safe_serialization=True)
                tokenizer.save_pretrained(src)
                write(tmp, src)
    return dest
