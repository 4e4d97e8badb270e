"""The built-in tasks."""

from __future__ import annotations

import re

import pytest

from embedkit.data import DEFAULT_TASKS, builtin_tasks, get_task, parse_tasks, task_names
from embedkit.errors import ConfigError
from embedkit.evaluation.protocols import get_protocol


def test_builtin_tasks_in_paper_order():
    assert DEFAULT_TASKS == ("ATEC", "BQ", "LCQMC", "PAWSX", "STS-B")
    assert task_names() == ["ATEC", "BQ", "LCQMC", "PAWSX", "STS-B", "AFQMC"]


@pytest.mark.parametrize("name,canonical", [
    ("stsb", "STS-B"), ("STS-B", "STS-B"), ("sts_b", "STS-B"), ("pawsx", "PAWSX"),
    ("PAWS-X", "PAWSX"), ("atec", "ATEC"), ("Lcqmc", "LCQMC"), ("afqmc", "AFQMC"), ("bq", "BQ")])
def test_name_normalisation(name, canonical):
    assert get_task(name).name == canonical


def test_unknown_task():
    with pytest.raises(ConfigError, match="unknown task 'sts'; built-in tasks: ATEC, BQ, LCQMC"):
        get_task("sts")


@pytest.mark.parametrize("name", ["ATEC", "BQ", "LCQMC", "PAWSX", "STS-B", "AFQMC"])
def test_builtin_spec_fields(name):
    s = builtin_tasks()[name]
    assert s.max_length == (128 if name == "PAWSX" else 64)
    assert s.base == "data-dir" and s.format == "tsv" and s.label_type == "int"
    assert s.label_range == ((0, 5) if name == "STS-B" else (0, 1))
    assert s.is_binary == (name != "STS-B")
    assert s.hub is not None and s.hub.id.startswith("C-MTEB/")
    assert re.fullmatch(r"[0-9a-f]{40}", s.hub.revision)
    assert s.hub.fields["label"] == "score"
    assert set(s.hub.splits) == set(s.files)
    if name == "AFQMC":
        assert s.splits == ("train", "valid")
        assert s.default_splits == get_protocol("cmteb").splits(s) == ("valid",)
        assert s.files["valid"] == "AFQMC/dev.txt" and s.hub.splits["valid"] == "validation"
    else:
        assert "test" in s.splits and s.default_splits == ("test",)
        assert s.files["test"] == f"senteval_cn/{name}/{name}.test.data"


def test_hub_ids():
    ids = {n: s.hub.id for n, s in builtin_tasks().items()}
    assert ids == {"ATEC": "C-MTEB/ATEC", "BQ": "C-MTEB/BQ", "LCQMC": "C-MTEB/LCQMC",
                   "PAWSX": "C-MTEB/PAWSX", "STS-B": "C-MTEB/STSB", "AFQMC": "C-MTEB/AFQMC"}


def test_parse_tasks(spec_file):
    assert [s.name for s in parse_tasks(None)] == list(DEFAULT_TASKS)
    assert [s.name for s in parse_tasks("")] == list(DEFAULT_TASKS)
    assert [s.name for s in parse_tasks(f"stsb, {spec_file} ,")] == ["STS-B", "tiny-sts"]
    assert get_task(str(spec_file)).origin == str(spec_file)
