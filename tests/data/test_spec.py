"""Task specs: defaults, validation, and errors that name the spec file."""

from __future__ import annotations

import json

import pytest

from embedkit.data import TaskSpec, canonical_split
from embedkit.errors import ConfigError
from embedkit.evaluation.protocols import get_protocol


def write_spec(tmp_path, obj, name="my-task.json"):
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return p


def test_defaults():
    s = TaskSpec.from_dict({"name": "x", "files": {"test": "x.tsv"}})
    assert (s.format, s.header, s.base, s.max_length, s.label_type) == ("tsv", False, "spec", 64,
                                                                        "float")
    assert s.columns == ("sentence1", "sentence2", "label")
    assert s.fields == {"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"}
    assert s.default_splits == get_protocol("cmteb").splits(s) == ("test",) and s.splits == ("test",)
    assert s.label_range is None and not s.is_binary and s.hub is None


def test_split_aliases_and_default_split():
    s = TaskSpec.from_dict({"name": "x", "files": {"train": "a", "dev": "b"},
                            "label_range": [0, 1]})
    assert s.splits == ("train", "valid") and s.default_splits == ("valid",) and s.is_binary
    assert [canonical_split(x) for x in ("dev", "Validation", "val", " TEST ")] == [
        "valid", "valid", "valid", "test"]


def test_published_checksums_by_canonical_split():
    s = TaskSpec.from_dict({"name": "x", "files": {"dev": "a"}, "sha256": {"dev": "AB" * 32}})
    assert s.sha256 == {"valid": "ab" * 32}
    assert TaskSpec.from_dict({"name": "x", "files": {"test": "a"}}).sha256 == {}


def test_from_file_resolves_relative_to_the_spec(tmp_path):
    p = write_spec(tmp_path, {"name": "mine", "files": {"test": "pairs.tsv"}})
    s = TaskSpec.from_file(p)
    assert s.origin == str(p) and s.spec_dir == str(tmp_path.resolve())


@pytest.mark.parametrize("obj,message", [
    ({"name": "x", "files": {"test": "a"}, "lable_range": [0, 1]},
     "unknown key(s) lable_range; valid keys: base, columns"),
    ({"name": "x", "files": {"test": "a"}, "cmteb_splits": ["test"]},
     "unknown key(s) cmteb_splits"),  # C-MTEB's splits are the cmteb protocol's, not a task's
    ({"files": {"test": "a"}}, "name: required (a non-empty string)"),
    ({"name": 3, "files": {"test": "a"}}, "name: must be a non-empty string, got 3"),
    ({"name": "x", "files": {"test": "a"}, "format": "xlsx"},
     "format: must be one of tsv, csv, jsonl, got \"xlsx\""),
    ({"name": "x"}, "give 'files' (split -> path) or a 'hub' source"),
    ({"name": "x", "hub": {"revision": "r"}}, "hub: must be an object with at least an 'id'"),
    ({"name": "x", "files": {"test": "a"}, "fields": {"label": "score"}},
     "fields: ['score'] are not among the columns ['sentence1', 'sentence2', 'label']"),
    ({"name": "x", "files": {"test": "a"}, "label_range": [0]}, "label_range: must be [low, high] with low < high, got [0]"),
    ({"name": "x", "files": {"test": "a"}, "label_type": "str"}, "label_type: must be 'int' or 'float', got \"str\""),
    ({"name": "x", "files": {"test": "a"}, "base": "cwd"}, "base: must be 'spec' or 'data-dir', got \"cwd\""),
    ({"name": "x", "files": {"test": "a"}, "max_length": 2}, "max_length: must be an integer >= 3 (it counts [CLS] and [SEP]), got 2"),
    ([1, 2], "a task spec must be a JSON object"),
    ({"name": "x", "files": {"test": "a"}, "sha256": {"test": "abc"}},
     "sha256: must map split names to the sha256 (64 hex digits) of the published files"),
    ({"name": "x", "files": {"test": "a"}, "sha256": {"train": "a" * 64}},
     "sha256: 'train' is not among the splits (test)"),
])
def test_spec_errors_name_the_file(tmp_path, obj, message):
    p = write_spec(tmp_path, obj)
    with pytest.raises(ConfigError) as e:
        TaskSpec.from_file(p)
    assert str(e.value).startswith(f"{p}: {message}")


def test_invalid_json_and_missing_spec(tmp_path):
    p = write_spec(tmp_path, '{\n  "name": "x",\n  "files": \n}')
    with pytest.raises(ConfigError, match=rf"^{p}:4: not a valid JSON task spec"):
        TaskSpec.from_file(p)
    with pytest.raises(ConfigError, match=r"absent\.json: task spec file not found$"):
        TaskSpec.from_file(tmp_path / "absent.json")


def test_header_true_skips_the_columns_check():
    s = TaskSpec.from_dict({"name": "x", "files": {"test": "a"}, "header": True,
                            "fields": {"sentence1": "q", "sentence2": "d", "label": "y"}})
    assert s.fields["sentence1"] == "q"


def test_hub_only_spec():
    s = TaskSpec.from_dict({"name": "h", "hub": {"id": "org/ds", "splits": {"validation": "dev"},
                                                 "fields": {"label": "score"}}})
    assert s.splits == ("valid",) and s.default_splits == ("valid",)
    assert s.hub.fields == {"sentence1": "sentence1", "sentence2": "sentence2", "label": "score"}
    assert s.hub.revision is None


def test_instruction_field():
    spec = TaskSpec.from_dict({"name": "x", "files": {"test": "x.tsv"},
                               "instruction": " Retrieve semantically similar text. "})
    assert spec.instruction == "Retrieve semantically similar text."
    assert TaskSpec.from_dict({"name": "x", "files": {"test": "x.tsv"}}).instruction is None
    for bad in ("two\nlines", "", 3):
        with pytest.raises(ConfigError, match="instruction"):
            TaskSpec.from_dict({"name": "x", "files": {"test": "x.tsv"}, "instruction": bad})


def test_builtin_tasks_carry_their_instruction():
    from embedkit.data.registry import get_task

    assert get_task("STS-B").instruction == "Retrieve semantically similar text."
