"""Reliability of the data layer (issue 9): empty pair files, strictly validated task specs,
the data-directory layouts, and fit-on files without sentences."""

from __future__ import annotations

import json

import pytest

from embedkit.data import TaskSpec, get_task, load_task, read_pair_file, resolve_file
from embedkit.data.registry import builtin_tasks
from embedkit.data.selection import collect_fit_sentences
from embedkit.errors import ConfigError, DataError

R = pytest.mark.reliability


# -- 9.11: a pair file with zero pairs is an error naming the file ------------------------------

def _spec_for(tmp_path, name, content: bytes, **extra):
    (tmp_path / name).write_bytes(content)
    return TaskSpec.from_dict({"name": "t", "files": {"test": name}, **extra},
                              origin="t.json", spec_dir=str(tmp_path))


@pytest.mark.parametrize("name,content,extra,skip,problem", [
    pytest.param("empty.tsv", b"", {}, False, "no sentence pairs (the file is empty)",
                 marks=R("9.11", "a zero-byte pair file is an error naming the file")),
    pytest.param("blank.jsonl", b"\n\n  \n", {"format": "jsonl"}, False,
                 "no sentence pairs (the file holds only blank lines)",
                 marks=R("9.11", "a JSON-lines pair file of blank lines is an error naming it")),
    pytest.param("header.csv", b"sentence1,sentence2,label\n", {"format": "csv", "header": True},
                 False, "no sentence pairs (the file holds only its header)",
                 marks=R("9.11", "a pair file holding only its header is an error naming it")),
    pytest.param("bad.tsv", b"a\tb\n", {}, True,
                 "no valid sentence pairs: all 1 rows were skipped as invalid",
                 marks=R("9.11", "skip_invalid skipping every row is an error, not zero pairs")),
])
def test_empty_pair_file_is_an_error(tmp_path, name, content, extra, skip, problem):
    spec = _spec_for(tmp_path, name, content, **extra)
    path = str(tmp_path / name)
    with pytest.raises(DataError) as e:
        read_pair_file(spec, "test", path, skip_invalid=skip)
    assert e.value.path == path and e.value.problem.startswith(problem)
    assert str(e.value).startswith(f"{path}: {problem}")
    with pytest.raises(DataError):  # the loading path says the same
        load_task(spec, skip_invalid=skip)


# -- 9.13: task specs validated by a schema, strict types, messages naming file and key ------

BASE = {"name": "t", "files": {"test": "pairs.tsv"}}


def _bad(key, value, message, case):
    return pytest.param({**BASE, key: value}, message, marks=R("9.13", case))


BAD_SPECS = [
    _bad("header", "no", "header: must be true or false, got \"no\"",
         "spec header: \"no\" is refused, not read as true"),
    _bad("default_splits", "test", "default_splits: must be a list of split names, got \"test\"",
         "spec default_splits: \"test\" is refused, not read as t,e,s,t"),
    _bad("label_range", [5, 0], "label_range: must be [low, high] with low < high, got [5, 0]",
         "spec label_range [5, 0] is refused"),
    _bad("label_range", [0, "1"], "label_range: must be [low, high] with low < high, got [0, \"1\"]",
         "spec label_range with a string bound is refused"),
    _bad("label_range", [0, True], "label_range: must be [low, high] with low < high, got [0, true]",
         "spec label_range with a boolean bound is refused"),
    _bad("files", ["a.tsv"], "files: must map split names to file paths (strings), got [\"a.tsv\"]",
         "spec files as a list is refused"),
    _bad("files", {"test": 3}, "files: must map split names to file paths (strings), got {\"test\": 3}",
         "spec files with a non-string path is refused"),
    _bad("fields", "label", "fields: must map sentence1, sentence2 and label to column names",
         "spec fields as a string is refused"),
    _bad("fields", {"label": 3}, "fields: must map sentence1, sentence2 and label to column names",
         "spec fields with a non-string column is refused"),
    _bad("fields", {"score": "x"}, "fields: must map sentence1, sentence2 and label to column names",
         "spec fields with an unknown role is refused"),
    _bad("columns", "sentence1,sentence2,label", "columns: must be a list of distinct column names",
         "spec columns as a string is refused"),
    _bad("columns", ["a", "a", "label"], "columns: must be a list of distinct column names",
         "spec columns with a duplicate name is refused"),
    _bad("encoding", 8, "encoding: must be the name of a text encoding",
         "spec encoding of the wrong type is refused"),
    _bad("encoding", "no-such-codec", "encoding: must be the name of a text encoding",
         "spec encoding Python does not know is refused before reading"),
    _bad("max_length", True, "max_length: must be an integer >= 3",
         "spec max_length true is refused, not read as 1"),
    _bad("default_splits", ["train"], "default_splits: 'train' is not among the splits (test)",
         "spec default_splits naming a split the spec lacks is refused"),
    _bad("colums", [], "unknown key(s) colums; valid keys: base, columns",
         "spec with an unknown key is refused"),
    pytest.param({"name": "t", "files": {"dev": "a", "valid": "b"}},
                 "files: dev and valid name the same split (valid)",
                 marks=R("9.13", "spec files naming one split twice through an alias is refused")),
]


@pytest.mark.parametrize("obj,message", BAD_SPECS)
def test_bad_spec_names_file_and_key(tmp_path, obj, message):
    p = tmp_path / "my.json"
    p.write_text(json.dumps(obj), encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        TaskSpec.from_file(p)
    text = str(e.value)
    assert text.startswith(f"{p}: {message}"), text
    assert "\n" not in text


@pytest.mark.reliability("9.13", "a spec key given twice is refused, not last-one-wins")
def test_duplicate_key_is_refused(tmp_path):
    p = tmp_path / "my.json"
    p.write_text('{"name": "t", "files": {"test": "a.tsv", "test": "b.tsv"}}', encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        TaskSpec.from_file(p)
    assert str(e.value) == f"{p}: key 'test' is given twice"


@pytest.mark.reliability("9.13", "valid specs (built-in, README example, defaults) still load "
                                 "with the same values")
def test_valid_specs_still_load(tmp_path):
    readme = {"name": "my-pairs", "format": "tsv", "header": True,
              "files": {"valid": "pairs.valid.tsv", "test": "pairs.test.tsv"},
              "fields": {"sentence1": "query", "sentence2": "candidate", "label": "score"},
              "label_range": [0, 1], "label_type": "float", "max_length": 64}
    s = TaskSpec.from_dict(readme, origin="readme")
    assert (s.header, s.label_range, s.default_splits, s.splits) == (
        True, (0, 1), ("test",), ("valid", "test"))
    assert s.fields == {"sentence1": "query", "sentence2": "candidate", "label": "score"}
    assert s.is_binary and isinstance(s.label_range[0], int)
    tasks = builtin_tasks()
    assert list(tasks) == ["ATEC", "BQ", "LCQMC", "PAWSX", "STS-B", "AFQMC"]
    assert tasks["STS-B"].label_range == (0, 5) and tasks["PAWSX"].max_length == 128
    assert tasks["AFQMC"].default_splits == ("valid",) and tasks["ATEC"].hub.splits == {
        "valid": "validation", "test": "test"}
    assert tasks["ATEC"].hub.fields["label"] == "score" and tasks["ATEC"].base == "data-dir"
    f = TaskSpec.from_dict({"name": "f", "files": {"test": "x"}, "label_range": [0.5, 4.5],
                            "columns": ("label", "sentence1", "sentence2")})
    assert f.label_range == (0.5, 4.5) and f.columns == ("label", "sentence1", "sentence2")


@pytest.mark.reliability("9.tb", "a task spec path that is a folder: one line naming it")
def test_spec_path_is_a_folder(tmp_path):
    d = tmp_path / "spec.json"
    d.mkdir()
    with pytest.raises(ConfigError) as e:
        get_task(str(d))
    assert str(e.value).startswith(f"{d}: cannot read the task spec file")


@pytest.mark.reliability("9.tb", "an unreadable task spec file: one line naming it")
def test_spec_file_unreadable(tmp_path, monkeypatch):
    p = tmp_path / "spec.json"
    p.write_text(json.dumps(BASE), encoding="utf-8")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("embedkit.io.textfile.open", refuse, raising=False)
    with pytest.raises(ConfigError) as e:
        get_task(str(p))
    assert str(e.value) == f"{p}: cannot read the task spec file (Permission denied)"


# -- 9.data-dir: the folder holding the task folders directly, whatever its name ---------------

def _task_folders(root):
    (root / "LCQMC").mkdir(parents=True)
    (root / "LCQMC" / "LCQMC.test.data").write_text("一个\t两个\t1\n三\t四\t0\n", encoding="utf-8")
    (root / "AFQMC").mkdir()
    (root / "AFQMC" / "dev.txt").write_text("a\tb\t0\nc\td\t1\ne\tf\t1\n", encoding="utf-8")
    return root


@pytest.mark.reliability("9.data-dir", "--data-dir a folder of task folders, any name "
                                       "(LCQMC and AFQMC inside it)")
def test_data_dir_holding_the_task_folders(tmp_path):
    d = _task_folders(tmp_path / "my-sts")
    assert load_task("LCQMC", data_dir=d)["test"].n_pairs == 2
    assert load_task("AFQMC", data_dir=d)["valid"].n_pairs == 3
    assert resolve_file(get_task("LCQMC"), "test", d) == d / "LCQMC" / "LCQMC.test.data"


@pytest.mark.reliability("9.data-dir", "--data-dir a folder of task folders, AFQMC beside it "
                                       "(the shared layout)")
def test_data_dir_task_folders_with_afqmc_beside(tmp_path):
    root = _task_folders(tmp_path / "data")
    (root / "AFQMC").rename(tmp_path / "AFQMC")
    assert load_task("LCQMC", data_dir=root)["test"].n_pairs == 2
    assert load_task("AFQMC", data_dir=root)["valid"].n_pairs == 3


@pytest.mark.reliability("9.data-dir", "a wrong --data-dir never picks up a sibling senteval_cn/")
def test_wrong_data_dir_does_not_use_a_sibling(tmp_path):
    (tmp_path / "senteval_cn" / "LCQMC").mkdir(parents=True)
    (tmp_path / "senteval_cn" / "LCQMC" / "LCQMC.test.data").write_text("a\tb\t1\n")
    wrong = tmp_path / "empty"
    wrong.mkdir()
    with pytest.raises(DataError, match="file not found"):
        load_task("LCQMC", data_dir=wrong)


# -- 9.msg: --fit-on a file without sentences names the file -----------------------------------

@pytest.mark.parametrize("relative", [
    pytest.param(True, marks=R("9.msg", "fit_on a blank file (bench/sweep form) names the file")),
    pytest.param(False, marks=R("9.msg", "fit_on a blank file (whiten form) names the file")),
])
def test_fit_on_blank_file_names_it(tmp_path, spec_file, relative):
    f = tmp_path / "blank.txt"
    f.write_text("\n   \n\n", encoding="utf-8")
    spec = TaskSpec.from_file(spec_file) if relative else None
    with pytest.raises(DataError) as e:
        collect_fit_sentences(str(f), spec)
    assert e.value.path == str(f) and e.value.param == "fit_on"
    assert str(e.value) == f"{f}: no sentences to fit on (the file holds only blank lines)"
