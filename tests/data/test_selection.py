"""Fit-on sentence selection (``collect_fit_sentences``) and the ``TASK[:SPLIT]`` parser."""

from __future__ import annotations

import pytest

from embedkit.data import load_task
from embedkit.data.selection import collect_fit_sentences, pair_sentences, parse_task_split
from embedkit.errors import ConfigError
from embedkit.provenance import sha256_text


def occurrences(spec_file, splits=("valid", "test")):
    data = load_task(str(spec_file), list(splits))
    return pair_sentences([data[s] for s in splits])


def test_fit_on_variants(wt_spec_file, wt_sentence_file):
    every = occurrences(wt_spec_file)
    fs = collect_fit_sentences(str(wt_spec_file))
    assert (fs.sentences, fs.description, fs.max_length) == (every, "task:wt-sts:valid+test", 64)
    fs = collect_fit_sentences(f"{wt_spec_file}:dev")  # split aliases work
    assert fs.sentences == occurrences(wt_spec_file, ["valid"])
    assert fs.description == "task:wt-sts:valid"
    lines = [s for s in wt_sentence_file.read_text(encoding="utf-8").splitlines() if s.strip()]
    fs = collect_fit_sentences(str(wt_sentence_file))
    assert fs.sentences == lines and fs.description == f"file:{wt_sentence_file}"
    fs = collect_fit_sentences(f"{wt_spec_file}:test,{wt_sentence_file}", unique=True)
    both = occurrences(wt_spec_file, ["test"]) + lines
    assert fs.sentences == list(dict.fromkeys(both))
    assert fs.description == f"task:wt-sts:test,file:{wt_sentence_file}"
    assert [p["n_sentences"] for p in fs.parts] == [40, len(lines)]
    assert fs.record()["sha256"] == sha256_text("\n".join(fs.sentences))
    for bad, match in [("no-such-task", "not a task name"),
                       (f"{wt_spec_file}:train", "has no train split"),
                       (str(wt_spec_file.parent), "is a folder")]:
        with pytest.raises(ConfigError, match=match):
            collect_fit_sentences(bad)


def test_errors_name_fit_on(wt_spec_file):
    for bad in ("no-such-task", f"{wt_spec_file}:train", ""):
        with pytest.raises(ConfigError) as e:
            collect_fit_sentences(bad)
        assert e.value.param == "fit_on" and "--" not in str(e.value)


def test_parse_task_split(wt_spec_file):
    spec, split = parse_task_split("ATEC:dev")
    assert (spec.name, split) == ("ATEC", "valid")
    assert parse_task_split("stsb")[0].name == "STS-B" and parse_task_split("stsb")[1] is None
    spec, split = parse_task_split(f"{wt_spec_file}:test")
    assert (spec.name, split) == ("wt-sts", "test")
    assert parse_task_split(str(wt_spec_file)) == (spec, None)
    with pytest.raises(ConfigError, match="has no train split") as e:
        parse_task_split(f"{wt_spec_file}:train", param="tasks")
    assert e.value.param == "tasks"
    with pytest.raises(ConfigError, match="unknown task"):
        parse_task_split("nope:test")
