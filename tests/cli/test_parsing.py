"""The command line's comma-list parsers."""

from __future__ import annotations

import pytest

from embedkit.cli.parsing import split_list, split_poolings
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
