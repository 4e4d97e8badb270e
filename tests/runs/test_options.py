"""The runners' option classes hold one ``PostOptions`` and one ``DataOptions`` instead of
re-declaring their fields."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

import embedkit
from embedkit.data import DataOptions
from embedkit.postprocess.options import PostOptions
from embedkit.runs.diagnose import DiagnoseOptions
from embedkit.runs.index_eval import IndexEvalOptions, QualityOptions
from embedkit.runs.sweep import SweepOptions
from embedkit.runs.whiten import WhitenSettings

PACKAGE = Path(embedkit.__file__).parent


def _class_fields(name: str) -> list[str]:
    """The option classes (``*Options``, ``*Settings``, ``*Config``) of the package that declare
    a field (an annotated class attribute) ``name``; records of file formats are not options."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.name.endswith(("Options", "Settings",
                                                                       "Config")):
                found += [f"{path.relative_to(PACKAGE)}:{node.name}" for item in node.body
                          if isinstance(item, ast.AnnAssign)
                          and isinstance(item.target, ast.Name) and item.target.id == name]
    return found


@pytest.mark.parametrize("name", ["fit_unique", "fit_on"])
def test_post_fields_live_in_post_options(name):
    assert _class_fields(name) == ["postprocess/options.py:PostOptions"]


@pytest.mark.parametrize("cls", [DiagnoseOptions, SweepOptions, IndexEvalOptions,
                                 WhitenSettings])
def test_options_hold_post_options(cls):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert fields["post"].type in ("PostOptions", PostOptions)
    assert isinstance(cls().post, PostOptions) and cls().post == PostOptions()
    assert not {"posts", "fit_on", "fit_unique", "force"} & set(fields)
    assert "data_dir" not in fields  # where data comes from: DataOptions


@pytest.mark.parametrize("cls", [DiagnoseOptions, IndexEvalOptions])
def test_options_hold_data_options(cls):
    assert cls().data == DataOptions()


def test_quality_options_keep_their_own_fields():
    assert not {"posts", "fit_on", "fit_unique"} & {f.name for f in dataclasses.fields(
        QualityOptions)}
    assert WhitenSettings(post=PostOptions(fit_unique=True)).fit_unique is True
