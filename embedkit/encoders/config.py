"""The settings that build an encoder, as one typed value, and the README's :func:`Encoder`.

Runners take ``SentenceEncoder | EncoderConfig``: a ready encoder (any implementation, wrapped
or not), or the settings to build the standard stack from
(:class:`~embedkit.encoders.wrappers.CachedEncoder` over
:class:`~embedkit.encoders.wrappers.MeteredEncoder` over
:class:`~embedkit.encoders.transformer.TransformerEncoder`). Each field carries the one help
text the command line's model options show (they are made from the fields), and this module
imports nothing heavy, so that a command line can be parsed without loading a backend.

>>> cfg = EncoderConfig("m3e-small", dtype="bf16", cache=False)
>>> cfg.dtype, cfg.record()["cache"]
('bfloat16', None)
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from embedkit.encoders.choices import (
    BACKENDS,
    DTYPE_NAMES,
    QUANTIZE,
    canonical_dtype,
    check_cpu_precision,
)
from embedkit.encoders.models import resolve_model_path
from embedkit.encoders.prompts import instruction_prompt, instruction_template
from embedkit.errors import ConfigError, check_int

if TYPE_CHECKING:  # the backends are imported where an encoder is built
    from embedkit.encoders.cache import EmbeddingCache
    from embedkit.encoders.protocol import SentenceEncoder
    from embedkit.encoders.wrappers import CachedEncoder

_INT8_ON_TORCH = ("int8 runs on the onnx or openvino backend, not on torch: choose one of "
                 "those backends, or no quantisation")
#: padded tokens per batch: None is each backend's default (by sentence count on the cpu's
#: torch, a budget on a GPU and on the exported backends), 0 always by sentence count
_DEFAULT_TOKEN_BUDGET: int | None = None


def setting(default: Any, help: str, *, flag: bool = True, metavar: str | None = None,
            choices: tuple[str, ...] | None = None) -> Any:
    """An :class:`EncoderConfig` field with the one help text the command line shows for it
    (``flag``: the model options include it; the CLI names the flag and its parser)."""
    return field(default=default, metadata={"help": help, "flag": flag, "metavar": metavar,
                                            "choices": choices})


def build_model(config: EncoderConfig) -> SentenceEncoder:
    """The bare encoder of a config's backend: :class:`TransformerEncoder` for torch, else an
    :class:`~embedkit.encoders.runtime.ExportedEncoder` (exported once into the cache folder)."""
    from embedkit.encoders.static import is_static_folder, static_encoder

    if is_static_folder(config.model):  # a distilled (StaticEmbedding) folder: no backend
        return static_encoder(config)
    if config.backend == "torch":
        from embedkit.encoders.transformer import TransformerEncoder

        return TransformerEncoder(config)
    if config.device not in (None, "cpu"):
        raise ConfigError(f"backend {config.backend} runs on the cpu; another device needs the "
                          "torch backend", param="backend")
    from embedkit.encoders.runtime import ExportedEncoder  # imports the runtime only when used

    return ExportedEncoder(config)


@dataclass(frozen=True)
class EncoderConfig:
    """How to build an encoder: the model and every setting that changes its vectors besides
    pooling and max length (those are per call), plus how it runs (device, batch size, cache,
    progress)."""

    model: str = setting("m3e-small", "hub id, local folder or alias", flag=False)
    revision: str | None = setting(
        None, "hub revision (branch, tag or commit) of a hub model; recorded (default: the "
        "hub's main)", metavar="REV")
    device: str | None = setting(
        "cpu", "cpu, cuda, cuda:N; cuda cuts batches by a budget of padded tokens (default: "
        "cpu)")
    dtype: str = setting(
        "float32", "precision the model runs in, recorded and part of the cache namespace: the "
        "weights' dtype on torch, OpenVINO's inference precision on openvino; bfloat16 on a cpu "
        "only with native bfloat16 (avx512_bf16, amx_bf16) and not on onnx, float16 only on "
        "cuda (default: float32)", choices=DTYPE_NAMES)
    lowercase: bool = setting(False, "lower-case text before tokenising (the published Keras "
                                     "code does)")
    batch_size: int = setting(64, "sentences per forward pass (default: 64)", metavar="N")
    cache: bool = setting(True, "keep vectors in the embedding cache", flag=False)
    cache_dir: str | None = setting(None, "the embedding cache's folder (None: the default)",
                                    flag=False)
    progress: bool | None = setting(None, "show progress (None: for long runs)", flag=False)
    #: the default pooling (None: the model folder's own, else cls)
    pooling: str | None = setting(None, "default pooling", flag=False)
    backend: str = setting(
        "torch", "inference engine: torch, onnx (ONNX Runtime) or openvino; the exported graph "
        "is cached (default: torch)", choices=BACKENDS)
    quantize: str = setting(
        "none", "int8: dynamic int8 (onnx) or int8 weights (openvino); int8-static: weights "
        "and activations in int8, calibrated on the calibration sentences, refused when it "
        "strays from float32 on held-out ones; faster, approximate, recorded (default: none)",
        choices=QUANTIZE)
    calibration: str | None = setting(
        None, "the sentences int8-static is calibrated on: TASK, TASK:SPLIT or a file with one "
        "sentence a line; part of the identity (default: a seeded sample of 300 sentences "
        "from the built-in tasks' train, else valid, splits)", metavar="TASK[:SPLIT]|FILE")
    threads: int | None = setting(
        None, "intra-op threads for every backend (default: the cores available)", metavar="N")
    prompt: str | None = setting(
        None, 'text put before every sentence, e.g. "query: " (default: the prompt the model '
        "folder declares, else none)", metavar="TEXT")
    token_budget: int | None = setting(
        _DEFAULT_TOKEN_BUDGET, "padded tokens per batch (sentences x the longest one's "
        "tokens), so short sentences go in large batches; 0: batches of batch-size "
        "sentences (default: 4096 on onnx and openvino, 16384 on cuda, 0 on torch's cpu)",
        metavar="N")
    instruction: str | None = setting(
        None, "task for instruction-following embedders (Qwen3-Embedding, gte-Qwen2), put "
        'before the text as "Instruct: TEXT\\nQuery: " (or the template the folder\'s query '
        "prompt shows); retrieval: queries only. Recorded and part of the cache namespace "
        "(default: each task's own instruction for models that declare a template, else "
        'none; "" for none)', metavar="TEXT")
    truncate_dim: int | None = setting(
        None, "keep the first K dimensions of every vector (Matryoshka models), after the "
        "model folder's modules; recorded in the model identity (default: the folder's "
        "truncate_dim, else all)", metavar="K")

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", canonical_dtype(self.dtype))
        if self.backend == "torch":
            from embedkit.encoders.transformer import check_precision

            check_precision(self.device, self.dtype)
        else:
            check_cpu_precision(self.backend, self.dtype)
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
            raise ConfigError(_INT8_ON_TORCH, param="quantize")
        if self.calibration is not None and self.quantize != "int8-static":
            raise ConfigError("a calibration set is only used by quantize int8-static (static "
                              "int8 calibrates on it); choose int8-static or drop the "
                              "calibration", param="calibration")
        check_int(self.batch_size, "batch_size")
        for name, least in (("threads", 1), ("truncate_dim", 1), ("token_budget", 0)):
            if getattr(self, name) is not None:
                check_int(getattr(self, name), name, least)
        if self.revision:  # a local folder refuses one: said before anything is loaded
            resolve_model_path(self.model, strict=False, revision=self.revision)

    def with_model(self, model: str) -> EncoderConfig:
        return replace(self, model=model)

    def make_cache(self) -> EmbeddingCache | None:
        from embedkit.encoders.cache import EmbeddingCache

        return EmbeddingCache(self.cache_dir) if self.cache else None

    def build(self, cache: EmbeddingCache | None | bool = True) -> CachedEncoder:
        """The standard stack; ``cache`` may pass an open cache to share (``True``: this
        config's own; ``False``/``None``: none)."""
        from embedkit.encoders.wrappers import CachedEncoder, MeteredEncoder

        store = self.make_cache() if cache is True else (cache or None)
        return CachedEncoder(MeteredEncoder(self.build_model(), self.progress), store)

    def build_model(self) -> SentenceEncoder:
        """The bare model on its backend (no cache, no progress)."""
        return build_model(self)

    def record(self) -> dict[str, Any]:
        """The settings as given, JSON-ready (the cache as its folder, or None); what an encoder
        ran with (defaults resolved, versions) is :func:`~embedkit.encoders.wrappers.settings_record`."""
        from embedkit.encoders.cache import EmbeddingCache

        d = asdict(self)
        d["cache"] = str(EmbeddingCache(self.cache_dir).root) if self.cache else None
        d.pop("cache_dir")
        return d


def as_encoder(encoder: SentenceEncoder | EncoderConfig | str) -> SentenceEncoder:
    """An encoder from an encoder (returned as is), a config, or a model name."""
    from embedkit.encoders.protocol import SentenceEncoder

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
    ...     def __init__(self) -> None: pass
    >>> b = Base(); with_prompt(b, "query: ").prompt, b.prompt
    ('query: ', '')
    """
    from embedkit.encoders.base import TokenizedEncoder

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


def Encoder(model: str, pooling: str | None = None, *,  # noqa: N802 - the README's name
            cache: EmbeddingCache | None = None, **settings: Any) -> CachedEncoder:
    """The standard stack in one call: ``EncoderConfig(model, pooling=pooling, **settings)``
    built over ``cache`` (an open :class:`EmbeddingCache`, or ``None`` for none; exports are
    kept in its folder). ``settings``: any :class:`EncoderConfig` field.

    >>> enc = Encoder("m3e-small")                                   # doctest: +SKIP
    >>> enc.encode(["我喜欢北京", "我爱北京"], pooling="cls").shape     # doctest: +SKIP
    (2, 512)
    """
    folder = str(cache.root) if cache is not None else settings.pop("cache_dir", None)
    config = EncoderConfig(model, pooling=pooling, cache=cache is not None, cache_dir=folder,
                           **settings)
    return config.build(cache)
