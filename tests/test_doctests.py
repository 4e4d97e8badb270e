"""The docstring examples of the core modules run as written."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "embedkit", "embedkit.atomic", "embedkit.bench", "embedkit.cache", "embedkit.errors",
    "embedkit.provenance", "embedkit.report", "embedkit.data", "embedkit.data.spec",
    "embedkit.data.pairs",
    "embedkit.data.textfile", "embedkit.data.registry", "embedkit.data.loading",
    "embedkit.encoders", "embedkit.encoders.pooling", "embedkit.encoders.models",
    "embedkit.encoders.encoder", "embedkit.evaluation", "embedkit.evaluation.metrics",
    "embedkit.evaluation.protocols", "embedkit.evaluation.evaluator",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0
