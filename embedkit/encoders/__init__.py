"""Encoders: transformers models with the BERT-whitening poolings.

>>> from embedkit.encoders import parse_pooling
>>> parse_pooling("first-last-avg")
'first-last-avg'
"""

from embedkit.encoders.encoder import DTYPES, Encoder, EncodeStats
from embedkit.encoders.models import declared_pooling, model_identity, resolve_model_path
from embedkit.encoders.pooling import POOLINGS, masked_mean, parse_pooling, pool

__all__ = ["DTYPES", "POOLINGS", "EncodeStats", "Encoder", "declared_pooling", "masked_mean",
           "model_identity", "parse_pooling", "pool", "resolve_model_path"]
