"""The settings that build an encoder, as one typed value, and the README's :class:`Encoder`.

Runners take ``SentenceEncoder | EncoderConfig``: a ready encoder (any implementation, wrapped
or not), or the settings to build the standard stack from
(:class:`~embedkit.encoders.wrappers.CachedEncoder` over
:class:`~embedkit.encoders.wrappers.MeteredEncoder` over
:class:`~embedkit.encoders.transformer.TransformerEncoder`).

>>> cfg = EncoderConfig("m3e-small", dtype="bf16", cache=False)
>>> cfg.dtype, cfg.settings()["cache"]
('bfloat16', None)
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from embedkit.encoders.base import TokenizedEncoder
from embedkit.encoders.cache import EmbeddingCache
from embedkit.encoders.choices import BACKENDS, QUANTIZE
from embedkit.encoders.models import resolve_model_path
from embedkit.encoders.prompts import instruction_prompt, instruction_template
from embedkit.encoders.protocol import SentenceEncoder
from embedkit.encoders.transformer import TransformerEncoder, canonical_dtype, check_precision
from embedkit.encoders.wrappers import CachedEncoder, MeteredEncoder
from embedkit.errors import ConfigError

INT8_ON_TORCH = ("int8 runs on the onnx or openvino backend, not on torch: choose one of "
                 "those backends, or no quantisation")
#: padded tokens per batch; None cuts batches by ``batch_size`` sentences (see batching.py)
DEFAULT_TOKEN_BUDGET: int | None = None


def build_model(model: str, pooling: str | None = None, *, backend: str = "torch",
                quantize: str = "none", device: str | None = "cpu", dtype: str = "float32",
                lowercase: bool = False, batch_size: int = 64, revision: str | None = None,
                prompt: str | None = None, threads: int | None = None,
                token_budget: int | None = None,
                export_root: str | Path | None = None,
                instruction: str | None = None,
                truncate_dim: int | None = None) -> SentenceEncoder:
    """The bare encoder of a backend: :class:`TransformerEncoder` for torch, else an
    :class:`~embedkit.encoders.runtime.ExportedEncoder` (exported once into ``export_root``).
    ``instruction``: a task description made into the prompt (:func:`instruction_prompt`);
    ``""`` or a given ``prompt``: none, not even a task's own (:func:`for_task`)."""
    if instruction:
        if prompt is not None:
            raise ConfigError("give an instruction or a prompt, not both (the instruction "
                              "makes the prompt)", param="instruction")
        prompt = instruction_prompt(instruction, resolve_model_path(model))
    enc = _build_model(model, pooling, backend=backend, quantize=quantize, device=device,
                       dtype=dtype, lowercase=lowercase, batch_size=batch_size,
                       revision=revision, prompt=prompt, threads=threads,
                       token_budget=token_budget, export_root=export_root,
                       truncate_dim=truncate_dim)
    if isinstance(enc, TokenizedEncoder):
        enc.instruction = instruction.strip() if instruction else (
            "" if prompt is not None or instruction is not None else None)
    return enc


def _build_model(model: str, pooling: str | None, *, backend: str, quantize: str,
                 device: str | None, dtype: str, lowercase: bool, batch_size: int,
                 revision: str | None, prompt: str | None, threads: int | None,
                 token_budget: int | None, export_root: str | Path | None,
                 truncate_dim: int | None) -> SentenceEncoder:
    from embedkit.encoders.static import is_static_folder, static_encoder

    if is_static_folder(model):  # a distilled (StaticEmbedding) folder: no backend to choose
        return static_encoder(model, pooling, backend=backend, quantize=quantize, device=device,
                              dtype=dtype, lowercase=lowercase, batch_size=batch_size,
                              revision=revision, prompt=prompt, truncate_dim=truncate_dim)
    if backend == "torch":
        if quantize != "none":
            raise ConfigError(INT8_ON_TORCH, param="quantize")
        return TransformerEncoder(model, pooling, device=device, dtype=dtype,
                                  lowercase=lowercase, batch_size=batch_size, revision=revision,
                                  prompt=prompt, threads=threads, token_budget=token_budget,
                                  truncate_dim=truncate_dim)
    if device not in (None, "cpu") or canonical_dtype(dtype) != "float32":
        raise ConfigError(f"backend {backend} runs on the cpu in float32 (or int8 when "
                          "quantised); another device or dtype needs the torch backend",
                          param="backend")
    from embedkit.encoders.runtime import ExportedEncoder  # imports the runtime only when used

    return ExportedEncoder(model, pooling, backend=backend, quantize=quantize,
                           lowercase=lowercase, batch_size=batch_size, revision=revision,
                           prompt=prompt, threads=threads, token_budget=token_budget,
                           export_root=export_root, truncate_dim=truncate_dim)


@dataclass(frozen=True)
class EncoderConfig:
    """How to build an encoder: the model and every setting that changes its vectors besides
    pooling and max length (those are per call), plus how it runs (device, batch size, cache,
    progress)."""

    model: str = "m3e-small"
    revision: str | None = None
    device: str | None = "cpu"
    dtype: str = "float32"
    lowercase: bool = False
    batch_size: int = 64
    cache: bool = True
    cache_dir: str | None = None
    progress: bool | None = None
    pooling: str | None = None  # the default pooling (None: the model folder's own, else cls)
    backend: str = "torch"      # torch, onnx (ONNX Runtime) or openvino
    quantize: str = "none"      # none or int8
    threads: int | None = None  # intra-op threads (None: the cores available)
    prompt: str | None = None   # before every sentence (None: the folder's declared default)
    token_budget: int | None = DEFAULT_TOKEN_BUDGET  # padded tokens per batch (None: by count)
    #: a task description made into the prompt (None: each task's own, for models whose folder
    #: declares an instruction template; "": none)
    instruction: str | None = None
    truncate_dim: int | None = None  # the first K dimensions (None: the folder's, else all)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", canonical_dtype(self.dtype))
        if self.backend == "torch":
            check_precision(self.device, self.dtype)
        if self.instruction and self.prompt is not None:
            raise ConfigError("give an instruction or a prompt, not both (the instruction "
                              "makes the prompt)", param="instruction")
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown backend {self.backend!r}; valid: {', '.join(BACKENDS)}",
                              param="backend")
        if self.quantize not in QUANTIZE:
            raise ConfigError(f"unknown quantisation {self.quantize!r}; valid: "
                              f"{', '.join(QUANTIZE)}", param="quantize")
        if self.quantize != "none" and self.backend == "torch":
            raise ConfigError(INT8_ON_TORCH, param="quantize")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ConfigError(f"threads must be a positive integer, not {self.threads!r}",
                              param="threads")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, not {self.batch_size!r}",
                              param="batch_size")
        if self.truncate_dim is not None and (not isinstance(self.truncate_dim, int)
                                              or self.truncate_dim < 1):
            raise ConfigError(f"truncate_dim must be a positive integer, not "
                              f"{self.truncate_dim!r}", param="truncate_dim")
        if self.revision:  # a local folder refuses one: said before anything is loaded
            resolve_model_path(self.model, strict=False, revision=self.revision)

    def with_model(self, model: str) -> EncoderConfig:
        return replace(self, model=model)

    def make_cache(self) -> EmbeddingCache | None:
        return EmbeddingCache(self.cache_dir) if self.cache else None

    def build(self, cache: EmbeddingCache | None | bool = True) -> SentenceEncoder:
        """The standard stack; ``cache`` may pass an open cache to share (``True``: this
        config's own; ``False``/``None``: none)."""
        store = self.make_cache() if cache is True else (cache or None)
        return CachedEncoder(MeteredEncoder(self.build_model(), self.progress), store)

    def build_model(self) -> SentenceEncoder:
        """The bare model on its backend (no cache, no progress)."""
        return build_model(self.model, self.pooling, backend=self.backend,
                           quantize=self.quantize, device=self.device, dtype=self.dtype,
                           lowercase=self.lowercase, batch_size=self.batch_size,
                           revision=self.revision, prompt=self.prompt, threads=self.threads,
                           token_budget=self.token_budget,
                           export_root=EmbeddingCache(self.cache_dir).root,
                           instruction=self.instruction, truncate_dim=self.truncate_dim)

    def settings(self) -> dict[str, Any]:
        """JSON-ready settings for a run record (the cache as its folder, or None)."""
        d = asdict(self)
        d["cache"] = str(EmbeddingCache(self.cache_dir).root) if self.cache else None
        d.pop("cache_dir")
        return d


def as_encoder(encoder: SentenceEncoder | EncoderConfig | str) -> SentenceEncoder:
    """An encoder from an encoder (returned as is), a config, or a model name."""
    if isinstance(encoder, EncoderConfig):
        return encoder.build()
    if isinstance(encoder, str):
        return EncoderConfig(encoder).build()
    if isinstance(encoder, SentenceEncoder):
        return encoder
    raise ConfigError(f"expected an encoder, an EncoderConfig or a model name, not "
                      f"{type(encoder).__name__}", param="encoder")


def with_prompt(encoder: SentenceEncoder, prompt: str,
                instruction: str | None = None) -> SentenceEncoder:
    """The same encoder stack (same model, cache and counters) with another prompt: how a
    retrieval run encodes queries and passages with their own prompts. The identity, hence the
    cache namespace, follows the prompt.

    >>> from embedkit.encoders.base import TokenizedEncoder
    >>> class Base(TokenizedEncoder):
    ...     prompt = ""
    >>> b = Base(); with_prompt(b, "query: ").prompt, b.prompt
    ('query: ', '')
    """
    if prompt == getattr(encoder, "prompt", None):
        return encoder
    inner = getattr(encoder, "inner", None)
    if inner is not None:
        new = copy.copy(encoder)
        new.inner = with_prompt(inner, prompt, instruction)  # type: ignore[attr-defined]
        return new
    if isinstance(encoder, TokenizedEncoder):
        base = copy.copy(encoder)
        base.prompt = prompt
        base.instruction = instruction
        return base
    raise ConfigError(f"{type(encoder).__name__} takes no prompt; build it with the prompt it "
                      "needs", param="prompt")


def for_task(encoder: SentenceEncoder, instruction: str | None) -> SentenceEncoder:
    """The encoder for a task whose spec gives ``instruction``: the same stack with the
    instruction's prompt when the encoder was given neither an instruction nor a prompt and its
    model folder declares an instruction template (Qwen3-Embedding, gte-Qwen2); else
    ``encoder`` itself. Both sentences of a pair get it (STS is symmetric)."""
    if not instruction or getattr(encoder, "instruction", "") is not None:
        return encoder
    path = getattr(encoder, "path", None)
    if not isinstance(path, str) or instruction_template(path) is None:
        return encoder
    return with_prompt(encoder, instruction_prompt(instruction, path), instruction.strip())


def encoder_settings(encoder: SentenceEncoder) -> dict[str, Any]:
    """What a run record states about how an encoder ran (device, dtype, casing, cache)."""
    d = encoder.describe()
    cache = getattr(encoder, "cache", None)
    root = getattr(cache, "root", None)
    return {"device": d.get("device"), "dtype": d.get("dtype", "float32"),
            "backend": d.get("backend", "torch"), "quantize": d.get("quantize", "none"),
            "threads": d.get("threads"), "prompt": d.get("prompt", ""),
            "instruction": d.get("instruction"),
            "revision": d.get("revision"), "lowercase": d.get("lowercase", False),
            "batch_size": getattr(encoder, "batch_size", None),
            "token_budget": d.get("token_budget"), "versions": d.get("versions", {}),
            "truncate_dim": d.get("truncate_dim"), "similarity": d.get("similarity", "cosine"),
            "cache": str(root) if isinstance(root, (str, Path)) else None}


class Encoder(CachedEncoder):
    """A transformers encoder with the BERT-whitening poolings, de-duplication, length-sorted
    batches, progress and an optional on-disk cache: the standard stack in one constructor.

    Args:
        model: hub id (``moka-ai/m3e-small``), local folder, or alias (``m3e-small``).
        pooling: default pooling; ``None`` takes the one the model folder declares, else ``cls``.
        device, dtype, lowercase, batch_size, revision: see :class:`TransformerEncoder`.
        backend: ``torch``, ``onnx`` (ONNX Runtime) or ``openvino``; quantize: ``none`` or
            ``int8`` (onnx/openvino); threads: intra-op threads; prompt: text before each
            sentence (``None``: the folder's declared default); instruction: a task
            description made into the prompt (decoder embedders); truncate_dim: keep the first
            K dimensions (``None``: the folder's ``truncate_dim``, else all).
        cache: an :class:`EmbeddingCache`, or ``None`` for no cache.
        progress: show progress (``None``: for long runs).

    >>> enc = Encoder("m3e-small")                                   # doctest: +SKIP
    >>> enc.encode(["我喜欢北京", "我爱北京"], pooling="cls").shape     # doctest: +SKIP
    (2, 512)
    """

    def __init__(self, model: str, pooling: str | None = None, *, device: str | None = "cpu",
                 dtype: str = "float32", lowercase: bool = False,
                 cache: EmbeddingCache | None = None, batch_size: int = 64,
                 revision: str | None = None, progress: bool | None = None,
                 backend: str = "torch", quantize: str = "none", threads: int | None = None,
                 prompt: str | None = None, instruction: str | None = None,
                 truncate_dim: int | None = None) -> None:
        inner = build_model(model, pooling, backend=backend, quantize=quantize, device=device,
                            dtype=dtype, lowercase=lowercase, batch_size=batch_size,
                            revision=revision, prompt=prompt, threads=threads,
                            token_budget=DEFAULT_TOKEN_BUDGET,
                            export_root=cache.root if cache is not None else None,
                            instruction=instruction, truncate_dim=truncate_dim)
        super().__init__(MeteredEncoder(inner, progress), cache)
