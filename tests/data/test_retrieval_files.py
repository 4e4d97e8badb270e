"""Retrieval tasks read from files (BEIR layout): the spec kind, validation, listing."""

from __future__ import annotations

import json

import pytest

from embedkit.data import get_task, load_split
from embedkit.data.listing import list_datasets
from embedkit.data.retrieval import load_retrieval_split
from embedkit.data.spec import TaskSpec
from embedkit.errors import ConfigError, DataError


def test_reads_the_task(beir_spec_file):
    spec = get_task(str(beir_spec_file))
    assert spec.is_retrieval and spec.splits == ("test",)
    r = load_retrieval_split(spec, "test")
    assert r.corpus_ids[-1] == "dup" and r.corpus_texts[-1] == r.corpus_texts[0]
    assert set(r.query_ids) == set(r.qrels)
    assert sum(1 for d in r.qrels.values() for s in d.values() if s == 0) == 1
    assert len(r.sha256) == 64


def test_listed_by_datasets(beir_spec_file):
    spec = get_task(str(beir_spec_file))
    row = list_datasets([spec])[0]
    r = load_retrieval_split(spec, "test")
    assert row["kind"] == "retrieval" and row["rows"] == r.n_judgements
    assert row["unique_sentences"] == len(r.corpus_ids) and row["queries"] == len(r.query_ids)
    assert row["labels"]["0"] == 1


def test_pair_loading_refuses_it(beir_spec_file):
    with pytest.raises(ConfigError, match="is a retrieval task"):
        load_split(get_task(str(beir_spec_file)), "test")


@pytest.mark.parametrize("change, message", [
    ({"corpus": None}, "corpus: required for a retrieval task"),
    ({"files": {}}, "files: a retrieval task maps each split"),
    ({"kind": "pairs"}, "'corpus' and 'queries' belong to a retrieval task"),
    ({"kind": "passages"}, "kind: must be 'pairs' or 'retrieval'"),
])
def test_spec_errors(change, message):
    d = {"name": "r", "kind": "retrieval", "corpus": "c.jsonl", "queries": "q.jsonl",
         "files": {"test": "qrels/test.tsv"}}
    d.update(change)
    d = {k: v for k, v in d.items() if v is not None}
    with pytest.raises(ConfigError, match=message):
        TaskSpec.from_dict(d, origin="my.json")


def _copy(beir_spec_file, tmp_path, name, edit):
    src = beir_spec_file.parent
    for f in ("corpus.jsonl", "queries.jsonl"):
        (tmp_path / f).write_text((src / f).read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_text(
        (src / "qrels" / "test.tsv").read_text(encoding="utf-8"), encoding="utf-8")
    path = tmp_path / name
    path.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")
    spec = json.loads(beir_spec_file.read_text(encoding="utf-8"))
    return TaskSpec.from_dict(spec, origin="t.json", spec_dir=str(tmp_path))


@pytest.mark.parametrize("name, edit, where, message", [
    ("corpus.jsonl", lambda t: t + '{"_id": "d0", "text": "x"}\n', 42, "_id 'd0' repeats line 1"),
    ("corpus.jsonl", lambda t: t + "{oops\n", 42, "not valid JSON"),
    ("queries.jsonl", lambda t: t + '{"text": "x"}\n', None, "'_id' is missing"),
    ("qrels/test.tsv", lambda t: t + "q0\tnope\t1\n", None, "corpus-id 'nope' is not in"),
    ("qrels/test.tsv", lambda t: t + "q0\td3\thigh\n", None, "score 'high' is not an integer"),
    ("qrels/test.tsv", lambda t: t + "q0\td3\n", None, "expected 3 tab-separated fields"),
])
def test_file_line_errors(beir_spec_file, tmp_path, name, edit, where, message):
    spec = _copy(beir_spec_file, tmp_path, name, edit)
    n = len((tmp_path / name).read_text(encoding="utf-8").splitlines())
    with pytest.raises(DataError, match=message) as e:
        load_retrieval_split(spec, "test")
    assert e.value.path.endswith(name.split("/")[-1]) and e.value.line == (where or n)


def test_pairs_written_as_retrieval_read_back(tmp_path):
    import numpy as np

    from embedkit.data.pairs import PairSplit
    from embedkit.data.retrieval import write_pairs_as_retrieval

    split = PairSplit("P", "test", "p.tsv", "0" * 64, ["猫", "猫", "狗", "鱼"],
                      ["小猫", "小狗", "小狗", "小猫"], np.array([1.0, 0.0, 1.0, 0.0]))
    spec = get_task(str(write_pairs_as_retrieval(split, tmp_path)))
    r = load_retrieval_split(spec, "test")
    assert (spec.name, r.corpus_texts, r.query_texts) == ("P-retrieval", ["小猫", "小狗"],
                                                        ["猫", "狗"])
    assert r.qrels == {"q0": {"d0": 1}, "q1": {"d1": 1}}
    with pytest.raises(ConfigError, match="no pair of P/test has a label >= 2"):
        write_pairs_as_retrieval(split, tmp_path / "none", threshold=2)
