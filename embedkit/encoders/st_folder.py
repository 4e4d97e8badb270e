"""sentence-transformers model folders, read and written here only.

Reading (:func:`read_st_folder`): ``modules.json`` is run as a whole pipeline -- the Transformer,
its Pooling (every mode sentence-transformers has, as a registered embedkit pooling, and
``include_prompt``), then the modules after the pooling (Dense with its weights, bias and
activation, Normalize, LayerNorm), applied in order by :meth:`STFolder.apply`, the same torch
code on every backend. ``config_sentence_transformers.json`` adds ``truncate_dim`` and
``similarity_fn_name``. A module embedkit cannot reproduce is an
:class:`~embedkit.errors.UnsupportedModuleError` naming it, never skipped.

Writing: Transformer + Pooling [+ Dense] [+ Normalize], built from sentence-transformers' own
modules so that ``SentenceTransformer(folder)`` encodes exactly as embedkit does.

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

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embedkit.aliases import StrPath
from embedkit.encoders.choices import SIMILARITIES
from embedkit.encoders.pooling import Pooling, by_st_mode, uniem_declared
from embedkit.encoders.prompts import st_config
from embedkit.errors import ConfigError, UnsupportedModuleError
from embedkit.io.atomic import atomic_dir

__all__ = ["STFolder", "SIMILARITIES", "declared_pooling", "read_st_folder",
           "read_static_folder", "save_st_folder", "STFolderSettings", "write_st_folder", "write_static_folder",
           "st_pooling_mode"]

logger = logging.getLogger(__name__)
_MODULES_FILE = "modules.json"
_SIMILARITY_ALIASES = {"cos_sim": "cosine", "dot_score": "dot", "dot_product": "dot"}

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


def _carried(st: tuple[Any, ...], base: STFolder | None) -> list[Any]:
    """The modules after the pooling of a folder being re-written, as sentence-transformers'
    own modules with their weights."""
    torch, Dense, Normalize = st[0], st[4], st[5]
    out: list[Any] = []
    for m in base.tail if base is not None else ():
        if m.kind == "Dense":
            out.append(Dense(int(m.weight.shape[1]), int(m.weight.shape[0]),
                             bias=m.bias is not None,
                             activation_function=getattr(torch.nn, m.activation)(),
                             init_weight=m.weight.clone(),
                             init_bias=None if m.bias is None else m.bias.clone()))
        elif m.kind == "Normalize":
            out.append(Normalize())
        else:
            out.append(_layer_norm(m))
    return out


def _layer_norm(m: _STModule) -> Any:
    try:
        from sentence_transformers.sentence_transformer.modules import LayerNorm
    except ImportError:  # pragma: no cover - sentence-transformers 3 to 5
        from sentence_transformers.models import LayerNorm  # type: ignore[no-redef]
    import torch

    ln = LayerNorm(int(m.weight.shape[0]))
    with torch.no_grad():
        ln.norm.weight.copy_(m.weight)
        if m.bias is not None:
            ln.norm.bias.copy_(m.bias)
    return ln


@dataclass(frozen=True)
class STFolderSettings:
    """What a written sentence-transformers folder holds besides the transformers model: its
    ``pooling`` and ``max_seq_length`` (and ``lowercase``); ``kernel`` (d x k) and ``bias`` (d)
    add a Dense module (the map ``(x + bias) @ kernel``); ``normalize`` a Normalize module;
    ``json_files`` maps file names to JSON objects written in the folder (e.g. embedkit's own
    metadata); ``card`` is the ``README.md`` written instead of sentence-transformers' generic
    one (:mod:`embedkit.encoders.model_card`)."""

    pooling: str
    max_seq_length: int
    lowercase: bool = False
    kernel: Any | None = None
    bias: Any | None = None
    normalize: bool = False
    json_files: Mapping[str, Any] | None = None
    card: str | None = None


def write_st_folder(folder: str | os.PathLike[str], model_path: str | os.PathLike[str],
                    settings: STFolderSettings) -> Path:
    """Write a sentence-transformers folder into ``folder`` (existing or not; not atomic: see
    :func:`save_st_folder`) for the transformers model in ``model_path``, as ``settings`` say.
    Returns the folder.
    """
    mode = st_pooling_mode(settings.pooling)
    kernel, bias = settings.kernel, settings.bias
    st = _import_st()
    _, SentenceTransformer, Transformer, STPooling, _, Normalize = st
    base = read_st_folder(model_path)  # a sentence-transformers folder: its modules carry over
    transformer = Transformer(str(base.transformer_dir if base else model_path),
                              max_seq_length=int(settings.max_seq_length),
                              do_lower_case=bool(settings.lowercase))
    width = (getattr(transformer, "get_embedding_dimension", None)
             or transformer.get_word_embedding_dimension)()
    modules = [transformer, STPooling(width, pooling_mode=mode, include_prompt=(
        base.include_prompt if base else True)), *_carried(st, base)]
    width = base.out_dim(width) if base else width
    if kernel is not None:
        d = int(np.asarray(kernel).shape[0])
        if d < width:  # a map fitted on the first d dimensions (truncate_dim): zero rows after
            kernel = np.vstack([np.asarray(kernel), np.zeros((width - d, np.shape(kernel)[1]))])
            bias = None if bias is None else np.concatenate([np.asarray(bias), np.zeros(width - d)])
        elif width != d:
            raise ConfigError(f"the model's dimension is {width} but the map expects d={d}")
        modules.append(_dense(st, kernel, bias))
    if settings.normalize:
        modules.append(Normalize())
    folder = Path(folder)
    SentenceTransformer(modules=modules, device="cpu").save(str(folder))
    for name, obj in (settings.json_files or {}).items():
        (folder / name).write_text(json.dumps(obj, ensure_ascii=False, indent=2) + "\n",
                                   encoding="utf-8")
    if settings.card is not None:
        (folder / "README.md").write_text(settings.card, encoding="utf-8")
    return folder


def save_st_folder(dest: StrPath, model: StrPath | Any,
                   settings: STFolderSettings, tokenizer: Any = None) -> Path:
    """Write a sentence-transformers folder at ``dest`` atomically (it replaces ``dest`` whole).

    ``model`` is a transformers model folder (a path), or an in-memory transformers model with
    its ``tokenizer`` (saved first to a temporary folder beside ``dest``); ``settings`` as
    :func:`write_st_folder` takes them. Returns ``dest``.
    """
    dest = Path(dest)
    st_pooling_mode(settings.pooling)  # fail before anything is written

    def write(folder: Path, model_path: StrPath) -> None:
        write_st_folder(folder, model_path, settings)

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


# -- reading ------------------------------------------------------------------------------------

_RUNS = ("Transformer", "Pooling", "Dense", "Normalize", "LayerNorm")
_TAIL = ("Dense", "Normalize", "LayerNorm")
#: torch.nn activations a Dense module may name (built with their defaults, as ST does)
_ACTIVATIONS = ("Identity", "Tanh", "ReLU", "GELU", "Sigmoid", "SiLU", "ELU", "LeakyReLU",
                "Softplus", "Mish", "Hardtanh", "Softsign", "Tanhshrink")
#: sentence-transformers' pooling_mode -> the config flag suffix embedkit's st_mode holds
_LEGACY = {mode: suffix for suffix, mode in _ST_MODES.items()}
#: ST modes whose embedkit pooling another part of embedkit registers (by name)
_BY_NAME = {"lasttoken": "last-token"}


@dataclass(frozen=True, eq=False)
class _STModule:
    """One module after the pooling: ``kind`` (Dense, Normalize, LayerNorm), its sub-folder and
    what it computes (torch tensors; ``activation`` is a ``torch.nn`` class name)."""

    kind: str
    path: str
    weight: Any = None
    bias: Any = None
    activation: str = "Identity"
    eps: float = 1e-5

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.kind, "path": self.path}
        if self.kind == "Dense":
            d.update(in_features=int(self.weight.shape[1]), out_features=int(self.weight.shape[0]),
                     bias=self.bias is not None, activation=self.activation)
        elif self.kind == "LayerNorm":
            d.update(dimension=int(self.weight.shape[0]), eps=self.eps)
        return d


@dataclass(frozen=True, eq=False)
class STFolder:
    """What a sentence-transformers folder computes, as embedkit runs it.

    ``transformer``: the Transformer module's sub-folder (``""``: the folder itself);
    ``st_mode``: the Pooling module's mode (``mean``, ``cls``, ...); ``tail``: the modules
    after the pooling, in order; ``digest``: sha256 of ``modules.json`` and the tail's files
    (what the model identity adds when there is a tail).
    """

    folder: Path
    transformer: str
    st_mode: str
    include_prompt: bool = True
    tail: tuple[_STModule, ...] = ()
    truncate_dim: int | None = None
    similarity: str | None = None
    digest: str = ""
    modules: list[dict[str, Any]] = field(default_factory=list)

    @property
    def transformer_dir(self) -> Path:
        return self.folder / self.transformer if self.transformer else self.folder

    def pooling(self) -> Pooling:
        """The embedkit pooling of the declared Pooling module (refused when none runs it)."""
        return _pooling_of(self.st_mode, self.folder)

    def out_dim(self, width: int) -> int:
        """The dimension the pipeline gives for pooled vectors of ``width``."""
        for m in self.tail:
            width = int(m.weight.shape[0]) if m.kind == "Dense" else width
        return width

    def check_width(self, width: int) -> None:
        """The first tail module must take the pooled width (else the folder is inconsistent)."""
        for m in self.tail:
            if m.kind == "Normalize":
                continue
            want = int(m.weight.shape[-1])
            if want != width:
                raise ConfigError(f"{self.folder}: module {m.path} takes {want} dimensions but "
                                  f"the model's pooling gives {width}; the folder is "
                                  "inconsistent", param="model")
            return

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The modules after the pooling on float32 ``(n, d)`` vectors, in torch float32 (as
        sentence-transformers computes them); a tail of Normalize modules only runs in numpy
        (torch's ``F.normalize``: each row over ``max(norm, 1e-12)``), importing no torch."""
        if not self.tail:
            return x
        if all(m.kind == "Normalize" for m in self.tail):
            return _normalize(np.ascontiguousarray(x, dtype=np.float32))
        import torch
        import torch.nn.functional as F

        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        with torch.inference_mode():
            for m in self.tail:
                if m.kind == "Dense":
                    t = getattr(torch.nn, m.activation)()(F.linear(t, m.weight, m.bias))
                elif m.kind == "Normalize":
                    t = F.normalize(t, p=2, dim=-1)
                else:
                    t = F.layer_norm(t, (t.shape[-1],), m.weight, m.bias, m.eps)
            return t.numpy()

    def describe(self) -> dict[str, Any]:
        """JSON-ready: the modules as embedkit runs them (for run records)."""
        return {"pooling_mode": self.st_mode, "include_prompt": self.include_prompt,
                "modules_after_pooling": [m.describe() for m in self.tail],
                "truncate_dim": self.truncate_dim, "similarity": self.similarity,
                "digest": self.digest}


def _normalize(x: np.ndarray) -> np.ndarray:
    """Rows over their L2 norm, at least 1e-12, in float32 (``torch.nn.functional.normalize``).

    >>> _normalize(np.array([[3.0, 4.0], [0.0, 0.0]], np.float32)).tolist()
    [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    norm = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float32))[:, None]
    return np.asarray(x / np.maximum(norm, np.float32(1e-12)), dtype=np.float32)


def _unsupported(folder: Path, what: str) -> UnsupportedModuleError:
    return UnsupportedModuleError(
        f"{folder}/{_MODULES_FILE}: {what}; embedkit runs Transformer, Pooling, then Dense, "
        "Normalize and LayerNorm modules: encode this model with sentence-transformers itself",
        param="model")


def _pooling_of(mode: str, folder: Path) -> Pooling:
    name = by_st_mode(_LEGACY.get(mode, "")) or _BY_NAME.get(mode)
    try:
        return Pooling(name or mode)
    except ConfigError:
        raise _unsupported(folder, f"its Pooling module's mode {mode!r} has no embedkit pooling "
                           f"in this version ({name or 'none'})") from None


def _kind(entry: Any, folder: Path, idx: int) -> str:
    t = entry.get("type", "") if isinstance(entry, dict) else ""
    last = t.rsplit(".", 1)[-1]
    if not (isinstance(t, str) and t.startswith("sentence_transformers.") and last in _RUNS):
        raise _unsupported(folder, f"module {idx} is {t or entry!r}, which embedkit cannot run")
    return last


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read it as JSON ({e}); the sentence-transformers "
                          "folder is damaged", param="model") from None


def _pooling_config(folder: Path, entry: dict[str, Any]) -> tuple[str, bool]:
    """The Pooling module's single mode and ``include_prompt`` (old flag configs included)."""
    cfg = _json(folder / str(entry.get("path", "")) / "config.json")
    mode = cfg.get("pooling_mode")
    if mode is None:  # sentence-transformers < 6: one pooling_mode_<suffix> flag per mode
        on = [m for suffix, m in _ST_MODES.items() if cfg.get(f"pooling_mode_{suffix}")]
        mode = on if on else "mean"
    if isinstance(mode, (list, tuple)):
        if len(mode) != 1:
            raise _unsupported(folder, f"its Pooling module concatenates several modes {mode}")
        mode = mode[0]
    if mode not in _LEGACY:
        raise _unsupported(folder, f"its Pooling module's mode {mode!r} is unknown")
    return str(mode), bool(cfg.get("include_prompt", True))


def _modules(folder: Path) -> list[tuple[str, dict[str, Any]]]:
    entries = _json(folder / _MODULES_FILE)
    if not isinstance(entries, list):
        raise ConfigError(f"{folder / _MODULES_FILE}: expected a list of modules",
                          param="model")
    kinds = [(_kind(e, folder, i), e) for i, e in enumerate(entries)]
    names = [k for k, _ in kinds]
    if names[:2] != ["Transformer", "Pooling"] or any(k not in _TAIL for k in names[2:]):
        raise _unsupported(folder, f"its modules are {' -> '.join(names) or 'none'} (expected "
                           "Transformer -> Pooling, then Dense / Normalize / LayerNorm)")
    return kinds


def _weights(where: Path) -> dict[str, Any]:
    import torch

    try:
        if (where / "model.safetensors").is_file():
            from safetensors.torch import load_file

            return dict(load_file(str(where / "model.safetensors")))
        if (where / "pytorch_model.bin").is_file():
            return dict(torch.load(where / "pytorch_model.bin", map_location="cpu",
                                   weights_only=True))
    except Exception as e:  # safetensors and torch raise their own types for a damaged file
        raise ConfigError(f"{where}: cannot read the module's weights ({str(e)[:200]}); "
                          "re-save the folder", param="model") from None
    raise ConfigError(f"{where}: no model.safetensors or pytorch_model.bin for the module",
                      param="model")


def _activation(name: Any, where: Path) -> str:
    text = str(name or "torch.nn.modules.activation.Tanh")  # sentence-transformers' default
    last = text.rsplit(".", 1)[-1]
    if not text.startswith("torch.nn.") or last not in _ACTIVATIONS:
        raise UnsupportedModuleError(
            f"{where}/config.json: Dense activation {text!r} is not one embedkit runs "
            f"({', '.join(_ACTIVATIONS)} of torch.nn); encode this model with "
            "sentence-transformers itself", param="model")
    return last


def _tail_module(folder: Path, kind: str, entry: dict[str, Any]) -> _STModule:
    path = str(entry.get("path", ""))
    where = folder / path
    if kind == "Normalize":
        return _STModule(kind, path)
    cfg = _json(where / "config.json")
    w = _weights(where)
    prefix = "linear" if kind == "Dense" else "norm"
    weight, bias = w.get(f"{prefix}.weight"), w.get(f"{prefix}.bias")
    if weight is None:
        raise ConfigError(f"{where}: the weights hold no {prefix}.weight", param="model")
    if kind == "Dense":
        if cfg.get("bias", True) and bias is None:
            raise ConfigError(f"{where}: bias is declared but absent", param="model")
        return _STModule(kind, path, weight.float(), bias.float() if bias is not None else None,
                        _activation(cfg.get("activation_function"), where))
    return _STModule(kind, path, weight.float(), bias.float() if bias is not None else None)


def _digest(folder: Path, tail: list[_STModule]) -> str:
    h = hashlib.sha256((folder / _MODULES_FILE).read_bytes())
    for m in tail:
        where = folder / m.path
        for f in sorted(p for p in where.iterdir() if p.is_file()) if m.path else []:
            h.update(f"{m.path}/{f.name}".encode() + b"\0" + f.read_bytes())
    return "sha256:" + h.hexdigest()


def _folder_settings(folder: Path) -> tuple[int | None, str | None]:
    """``truncate_dim`` and ``similarity_fn_name`` of ``config_sentence_transformers.json``."""
    cfg = st_config(folder)
    k, sim = cfg.get("truncate_dim"), cfg.get("similarity_fn_name")
    if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 1):
        raise ConfigError(f"{folder}/config_sentence_transformers.json: truncate_dim {k!r} is "
                          "not a positive integer", param="model")
    if sim is not None:
        sim = _SIMILARITY_ALIASES.get(str(sim), str(sim))
        if sim not in SIMILARITIES:
            raise UnsupportedModuleError(
                f"{folder}/config_sentence_transformers.json: similarity_fn_name {sim!r} is not "
                f"one embedkit scores with ({', '.join(SIMILARITIES)})", param="model")
    return k, sim


def read_st_folder(folder: StrPath | None) -> STFolder | None:
    """The sentence-transformers pipeline of a model folder, or None when it has no
    ``modules.json`` (a plain transformers folder, or a hub id).

    :class:`~embedkit.errors.UnsupportedModuleError` for a module, pooling mode or activation
    embedkit does not run; :class:`ConfigError` for a damaged folder.
    """
    if folder is None or not (Path(folder) / _MODULES_FILE).is_file():
        return None
    folder = Path(folder)
    kinds = _modules(folder)
    mode, include_prompt = _pooling_config(folder, kinds[1][1])
    tail = [_tail_module(folder, k, e) for k, e in kinds[2:]]
    truncate_dim, similarity = _folder_settings(folder)
    return STFolder(folder, str(kinds[0][1].get("path", "")), mode, include_prompt, tuple(tail),
                    truncate_dim, similarity, _digest(folder, tail),
                    [e for _, e in kinds])


def declared_pooling(folder: StrPath | None) -> str | None:
    """The name of the pooling a model folder declares (its sentence-transformers Pooling
    module, else m3e's ``uniem_embedding_strategy``), or None; a folder this cannot read
    declares none here (the encoder's :func:`read_st_folder` says what is wrong)."""
    if folder is None or not Path(folder).is_dir():
        return None
    folder = Path(folder)
    if (folder / _MODULES_FILE).is_file():
        try:
            kinds = _modules(folder)
            return str(_pooling_of(_pooling_config(folder, kinds[1][1])[0], folder))
        except ConfigError:
            return None
    return uniem_declared(folder)


# -- static (attention-free) folders: StaticEmbedding, then Dense / Normalize / LayerNorm -------

_STATIC = "StaticEmbedding"


def _static_entries(folder: Path) -> list[Any] | None:
    entries = _json(folder / _MODULES_FILE)
    first = entries[0].get("type", "") if isinstance(entries, list) and entries and isinstance(
        entries[0], dict) else ""
    return entries if str(first).rsplit(".", 1)[-1] == _STATIC else None


def read_static_folder(folder: StrPath | None) -> tuple[STFolder, Path] | None:
    """A sentence-transformers folder whose first module is ``StaticEmbedding`` (token vectors
    averaged, as model2vec models are): the pipeline (``transformer`` is the StaticEmbedding
    module's sub-folder, ``st_mode`` ``mean``, the modules after it as ``tail``) and the
    StaticEmbedding folder (``tokenizer.json`` + ``model.safetensors``); None for any other
    folder."""
    if folder is None or not (Path(folder) / _MODULES_FILE).is_file():
        return None
    folder = Path(folder)
    entries = _static_entries(folder)
    if entries is None:
        return None
    kinds = [_kind(e, folder, i) for i, e in enumerate(entries[1:], 1)]
    if any(k not in _TAIL for k in kinds):
        raise _unsupported(folder, f"its modules are StaticEmbedding -> {' -> '.join(kinds)} "
                           "(expected StaticEmbedding, then Dense / Normalize / LayerNorm)")
    tail = [_tail_module(folder, k, e) for k, e in zip(kinds, entries[1:], strict=True)]
    path = str(entries[0].get("path", ""))
    truncate_dim, similarity = _folder_settings(folder)
    return (STFolder(folder, path, "mean", True, tuple(tail), truncate_dim, similarity,
                     _digest(folder, tail), list(entries)), folder / path)


def write_static_folder(folder: StrPath, tokenizer: Any, weights: np.ndarray, *,
                        normalize: bool = True, json_files: Mapping[str, Any] | None = None,
                        card: str | None = None) -> Path:
    """Write a StaticEmbedding folder with sentence-transformers' own modules into ``folder``
    (not atomic: the caller writes into :func:`~embedkit.io.atomic.atomic_dir`'s temporary
    folder). ``tokenizer``: a ``tokenizers.Tokenizer``; ``weights``: one row per token id."""
    st = _import_st()
    try:
        from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    except ImportError:  # pragma: no cover - sentence-transformers 3 to 5
        from sentence_transformers.models import StaticEmbedding  # type: ignore[no-redef]
    torch, SentenceTransformer, Normalize = st[0], st[1], st[5]
    modules = [StaticEmbedding(tokenizer, embedding_weights=torch.from_numpy(
        np.ascontiguousarray(weights, dtype=np.float32)))]
    modules += [Normalize()] if normalize else []
    folder = Path(folder)
    SentenceTransformer(modules=modules, device="cpu").save(str(folder))
    for name, obj in (json_files or {}).items():
        (folder / name).write_text(json.dumps(obj, ensure_ascii=False, indent=2) + "\n",
                                   encoding="utf-8")
    if card is not None:
        (folder / "README.md").write_text(card, encoding="utf-8")
    return folder
