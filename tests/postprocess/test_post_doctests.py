"""The runnable examples in the postprocess docstrings."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize(
    "name",
    [
        "embedkit.postprocess",
        "embedkit.postprocess.whitening",
        "embedkit.postprocess.projection",
        "embedkit.postprocess.chain",
        "embedkit.postprocess.export",
        "embedkit.postprocess.fitting",
        "embedkit.postprocess.sweep",
    ],
)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
