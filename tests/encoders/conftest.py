"""Fixtures of the cache tests of this folder."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def unique(sentences) -> list[str]:
    """40 distinct real sentences."""
    return list(dict.fromkeys(sentences))[:40]


@pytest.fixture
def reference(tiny_encoder, unique) -> np.ndarray:
    """What the texts encode to without any cache."""
    return tiny_encoder.encode(unique, pooling="cls")
