"""Corpus inputs for ``embedkit encode``: every format, folders, columns, stable batches."""

from __future__ import annotations

import json

import pytest

from embedkit.data.sources import open_corpus
from embedkit.errors import ConfigError, DataError, MissingFileError

TEXTS = ["今天天气很好", "我想去北京旅游", "这本书很有意思", "明天会下雨吗", "咖啡太烫了"]


def _all(src, size=2):
    ids, texts = [], []
    for i, t in src.batches(size):
        assert len(t) <= size
        ids += i
        texts += t
    return ids, texts


def test_text_file_skips_blank_lines_and_numbers_rows(tmp_path):
    p = tmp_path / "c.txt"
    p.write_bytes(("\ufeff" + "\n".join(TEXTS[:2] + [""] + TEXTS[2:]) + "\r\n").encode())
    src = open_corpus(p)
    assert _all(src) == ([str(i) for i in range(5)], TEXTS)
    assert src.files[0].format == "text" and len(src.files[0].sha256) == 64
    assert src.count() == 5


def test_jsonl_csv_tsv_with_columns(tmp_path):
    (tmp_path / "a.jsonl").write_text(
        "".join(json.dumps({"sid": f"j{i}", "s": t}, ensure_ascii=False) + "\n"
                for i, t in enumerate(TEXTS[:2])), encoding="utf-8")
    (tmp_path / "b.csv").write_text("sid,s\nc0,\"" + TEXTS[2] + "\"\n", encoding="utf-8")
    (tmp_path / "c.tsv").write_text("sid\ts\nt0\t" + TEXTS[3] + "\n", encoding="utf-8")
    (tmp_path / "notes.md").write_text("ignored")
    src = open_corpus(tmp_path, text_column="s", id_column="sid")
    assert [f.format for f in src.files] == ["jsonl", "csv", "tsv"]
    assert _all(src, 3) == (["j0", "j1", "c0", "t0"], TEXTS[:4])


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": TEXTS, "k": list(range(5))}), tmp_path / "p.parquet")
    src = open_corpus(tmp_path / "p.parquet", id_column="k")
    assert _all(src, 4) == (["0", "1", "2", "3", "4"], TEXTS)
    with pytest.raises(DataError) as err:
        list(open_corpus(tmp_path / "p.parquet", text_column="body").rows())
    assert err.value.param == "text_column"


def test_batches_are_stable_and_sized(tmp_path):
    (tmp_path / "c.txt").write_text("\n".join(TEXTS * 3), encoding="utf-8")
    a = list(open_corpus(tmp_path).batches(4))
    b = list(open_corpus(tmp_path).batches(4))
    assert a == b and [len(t) for _, t in a] == [4, 4, 4, 3]


def test_errors_name_the_parameter(tmp_path):
    with pytest.raises(MissingFileError):
        open_corpus(tmp_path / "nope.txt")
    (tmp_path / "x.docx").write_text("x")
    with pytest.raises(ConfigError) as err:
        open_corpus(tmp_path / "x.docx")
    assert err.value.param == "corpus"
    (tmp_path / "bad.jsonl").write_text('{"text": "a"}\n{oops\n')
    with pytest.raises(DataError, match="bad.jsonl:2"):
        list(open_corpus(tmp_path / "bad.jsonl").rows())
    (tmp_path / "t.txt").write_text("a\n")
    with pytest.raises(ConfigError) as err:
        list(open_corpus(tmp_path / "t.txt", id_column="id").rows())
    assert err.value.param == "id_column"
