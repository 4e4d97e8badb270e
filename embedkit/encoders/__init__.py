"""Encoders: sentences in, float32 vectors out.

- :class:`SentenceEncoder`, the protocol every runner takes;
- :class:`TransformerEncoder`, any transformers model with the BERT-whitening poolings;
- :class:`CachedEncoder` and :class:`MeteredEncoder`, wrappers around any encoder;
- :class:`EncoderConfig`, the settings that build the standard stack, and :func:`Encoder`,
  that stack in one constructor;
- :class:`Pooling`, a pooling parsed once.

>>> from embedkit.encoders import parse_pooling
>>> parse_pooling("first-last-avg")
'first-last-avg'
"""

from typing import TYPE_CHECKING

from embedkit import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from embedkit.encoders.config import Encoder, EncoderConfig, as_encoder
    from embedkit.encoders.models import model_identity, resolve_model_path
    from embedkit.encoders.pooling import (
        POOLINGS,
        Pooling,
        masked_mean,
        parse_pooling,
        pool,
        register_pooling,
    )
    from embedkit.encoders.protocol import SentenceEncoder
    from embedkit.encoders.st_folder import declared_pooling, read_st_folder
    from embedkit.encoders.transformer import DTYPES, TransformerEncoder, forward_pooled
    from embedkit.encoders.wrappers import (
        CachedEncoder,
        EncodeStats,
        MeteredEncoder,
        encode_stats,
        settings_record,
    )

_LAZY = {
    "Encoder": "embedkit.encoders.config",
    "EncoderConfig": "embedkit.encoders.config",
    "as_encoder": "embedkit.encoders.config",
    "model_identity": "embedkit.encoders.models",
    "resolve_model_path": "embedkit.encoders.models",
    "POOLINGS": "embedkit.encoders.pooling",
    "Pooling": "embedkit.encoders.pooling",
    "masked_mean": "embedkit.encoders.pooling",
    "parse_pooling": "embedkit.encoders.pooling",
    "pool": "embedkit.encoders.pooling",
    "register_pooling": "embedkit.encoders.pooling",
    "SentenceEncoder": "embedkit.encoders.protocol",
    "declared_pooling": "embedkit.encoders.st_folder",
    "read_st_folder": "embedkit.encoders.st_folder",
    "DTYPES": "embedkit.encoders.transformer",
    "TransformerEncoder": "embedkit.encoders.transformer",
    "forward_pooled": "embedkit.encoders.transformer",
    "CachedEncoder": "embedkit.encoders.wrappers",
    "EncodeStats": "embedkit.encoders.wrappers",
    "MeteredEncoder": "embedkit.encoders.wrappers",
    "encode_stats": "embedkit.encoders.wrappers",
    "settings_record": "embedkit.encoders.wrappers",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = ["DTYPES", "POOLINGS", "CachedEncoder", "EncodeStats", "Encoder", "EncoderConfig",
           "MeteredEncoder", "Pooling", "SentenceEncoder", "TransformerEncoder", "as_encoder",
           "declared_pooling", "encode_stats", "forward_pooled",
           "masked_mean", "model_identity", "parse_pooling", "pool", "read_st_folder",
           "register_pooling", "resolve_model_path", "settings_record"]
