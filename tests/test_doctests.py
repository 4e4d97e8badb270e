"""Every docstring example in the package runs as written: the modules are found by walking
the package, so a new module's doctests are collected without a list to keep up to date."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import embedkit

REPO = Path(__file__).resolve().parents[1]

#: modules whose import needs an optional extra that the test machine may lack
OPTIONAL = {"embedkit.integrations"}


def _modules() -> list[str]:
    names = ["embedkit"]
    for info in pkgutil.walk_packages(embedkit.__path__, prefix="embedkit."):
        if not info.name.endswith("__main__"):  # importing it runs the command line
            names.append(info.name)
    return sorted(names)


def test_walk_finds_the_layers():
    names = _modules()
    for layer in ("embedkit.io", "embedkit.data", "embedkit.encoders", "embedkit.postprocess",
                  "embedkit.evaluation", "embedkit.retrieval", "embedkit.training",
                  "embedkit.runs", "embedkit.cli"):
        assert layer in names


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name, monkeypatch):
    if any(name == o or name.startswith(o + ".") for o in OPTIONAL):
        pytest.importorskip(name)
    module = importlib.import_module(name)
    monkeypatch.chdir(REPO)  # examples name ../shared/data, as a user in the checkout would
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name):
        if test.examples:
            runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} doctest example(s) failed in {name}"
