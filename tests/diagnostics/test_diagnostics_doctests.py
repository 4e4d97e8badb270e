"""The runnable examples in the diagnostics docstrings."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "embedkit.diagnostics",
    "embedkit.diagnostics.anisotropy",
    "embedkit.diagnostics.spectrum",
    "embedkit.diagnostics.hubness",
    "embedkit.diagnostics.sparsity",
    "embedkit.diagnostics.jl",
    "embedkit.diagnostics.hubness_reduction",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
