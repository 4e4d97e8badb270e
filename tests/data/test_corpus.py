"""Corpora to index: text files with aligned ids, and the unique sentences of task splits."""

from __future__ import annotations

import pytest

from embedkit.data.corpus import corpus_from_tasks, drop_blank_texts, read_corpus
from embedkit.errors import ConfigError, DataError


def test_read_corpus(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_bytes("\ufeff一\r\n\n二 \r\n三".encode())
    ids = tmp_path / "i.txt"
    ids.write_text("a\nb\n\nc\n", encoding="utf-8")
    texts, user_ids, info = read_corpus(corpus, ids)
    assert texts == ["一", "二 ", "三"] and user_ids == ["a", None, "c"]
    assert info["n_texts"] == 3 and len(info["sha256"]) == 64 and len(info["ids_sha256"]) == 64
    ids.write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="aligned"):
        read_corpus(corpus, ids)
    corpus.write_bytes(b"ok\n\xff\xfe\n")
    with pytest.raises(DataError, match=":2: invalid UTF-8"):
        read_corpus(corpus)
    with pytest.raises(ConfigError, match="not found"):
        read_corpus(tmp_path / "missing.txt")


def test_drop_blank_texts():
    assert drop_blank_texts(["a", " ", "b"]) == (["a", "b"], None)
    assert drop_blank_texts(["a", "", "b"], ["1", "2", " "]) == (["a", "b"], ["1", None])


@pytest.fixture
def pair_spec(tmp_path):
    import json

    (tmp_path / "pairs.tsv").write_text("甲\t乙\t1\n丙\t甲\t0\n", encoding="utf-8")
    spec = {"name": "tiny-pairs", "format": "tsv", "files": {"test": "pairs.tsv"},
            "label_range": [0, 1], "label_type": "int"}
    path = tmp_path / "tiny-pairs.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    return path


def test_corpus_from_tasks(pair_spec):
    texts, info = corpus_from_tasks([f"{pair_spec}:test", str(pair_spec)])
    assert texts == ["甲", "丙", "乙"] and info["n_texts"] == 3  # column 1, then column 2
    assert info["source"] == "tasks" and info["tasks"]["tiny-pairs"]["test"]["n_pairs"] == 2
    assert corpus_from_tasks(str(pair_spec))[0] == texts  # one item as a string
    with pytest.raises(ConfigError, match="no task given"):
        corpus_from_tasks([])
