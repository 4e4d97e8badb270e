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

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from embedkit.encoders.cache import EmbeddingCache
from embedkit.encoders.protocol import SentenceEncoder
from embedkit.encoders.transformer import TransformerEncoder, canonical_dtype
from embedkit.encoders.wrappers import CachedEncoder, MeteredEncoder
from embedkit.errors import ConfigError


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

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", canonical_dtype(self.dtype))
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, not {self.batch_size!r}",
                              param="batch_size")

    def with_model(self, model: str) -> EncoderConfig:
        return replace(self, model=model)

    def make_cache(self) -> EmbeddingCache | None:
        return EmbeddingCache(self.cache_dir) if self.cache else None

    def build(self, cache: EmbeddingCache | None | bool = True) -> SentenceEncoder:
        """The standard stack; ``cache`` may pass an open cache to share (``True``: this
        config's own; ``False``/``None``: none)."""
        store = self.make_cache() if cache is True else (cache or None)
        model = TransformerEncoder(self.model, self.pooling, device=self.device,
                                   dtype=self.dtype, lowercase=self.lowercase,
                                   batch_size=self.batch_size, revision=self.revision)
        return CachedEncoder(MeteredEncoder(model, self.progress), store)

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


def encoder_settings(encoder: SentenceEncoder) -> dict[str, Any]:
    """What a run record states about how an encoder ran (device, dtype, casing, cache)."""
    d = encoder.describe()
    cache = getattr(encoder, "cache", None)
    root = getattr(cache, "root", None)
    return {"device": d.get("device"), "dtype": d.get("dtype", "float32"),
            "lowercase": d.get("lowercase", False),
            "batch_size": getattr(encoder, "batch_size", None),
            "cache": str(root) if isinstance(root, (str, Path)) else None}


class Encoder(CachedEncoder):
    """A transformers encoder with the BERT-whitening poolings, de-duplication, length-sorted
    batches, progress and an optional on-disk cache: the standard stack in one constructor.

    Args:
        model: hub id (``moka-ai/m3e-small``), local folder, or alias (``m3e-small``).
        pooling: default pooling; ``None`` takes the one the model folder declares, else ``cls``.
        device, dtype, lowercase, batch_size, revision: see :class:`TransformerEncoder`.
        cache: an :class:`EmbeddingCache`, or ``None`` for no cache.
        progress: show progress (``None``: for long runs).

    >>> enc = Encoder("m3e-small")                                   # doctest: +SKIP
    >>> enc.encode(["我喜欢北京", "我爱北京"], pooling="cls").shape     # doctest: +SKIP
    (2, 512)
    """

    def __init__(self, model: str, pooling: str | None = None, *, device: str | None = "cpu",
                 dtype: str = "float32", lowercase: bool = False,
                 cache: EmbeddingCache | None = None, batch_size: int = 64,
                 revision: str | None = None, progress: bool | None = None) -> None:
        inner = TransformerEncoder(model, pooling, device=device, dtype=dtype,
                                   lowercase=lowercase, batch_size=batch_size, revision=revision)
        super().__init__(MeteredEncoder(inner, progress), cache)
