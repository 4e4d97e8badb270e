"""The command line's comma-list parsers."""

from __future__ import annotations

import pytest

from embedkit.cli.parsing import split_list, split_models, split_poolings
from embedkit.errors import ConfigError


@pytest.mark.parametrize("arg,expected", [
    (None, []),
    ("cls", ["cls"]),
    (["cls,mean", "last-avg"], ["cls", "last-avg"]),
    (["layers-avg:1,-1,cls"], ["layers-avg:1,-1", "cls"]),
    ("layers-avg:0,2,first-last-avg", ["layers-avg:0,2", "first-last-avg"]),
    ([" pooler , ,pooler-tanh"], ["pooler", "pooler-tanh"]),
])
def test_split_poolings(arg, expected):
    assert split_poolings(arg) == expected


def test_split_poolings_rejects_unknown():
    with pytest.raises(ConfigError, match="unknown pooling 'maxpool'"):
        split_poolings("cls,maxpool")


def test_split_list():
    assert split_list("a, b,,c ") == ["a", "b", "c"] and split_list("") == []


def test_split_models(tmp_path):
    """Repeated and comma-separated, each once; a comma splits only between model names."""
    assert split_models(None) == ["m3e-small"] and split_models([]) == ["m3e-small"]
    assert split_models(["m3e-small, moka-ai/m3e-base", "bert-base-chinese", "m3e-small"]) == [
        "m3e-small", "moka-ai/m3e-base", "bert-base-chinese"]
    odd = tmp_path / "models,v2"  # a local folder with a comma in its name stays whole
    odd.mkdir()
    assert split_models(str(odd)) == [str(odd)]
    other = tmp_path / "other"
    other.mkdir()
    assert split_models(f"{other},m3e-small") == [str(other), "m3e-small"]
    # a part that is neither an alias, a folder nor a hub id: the value is one (bad) name
    assert split_models(f"{tmp_path}/missing,m3e-small") == [f"{tmp_path}/missing,m3e-small"]
