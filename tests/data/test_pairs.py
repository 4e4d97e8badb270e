"""The pair-file reader: every malformed row is reported as ``<path>:<line>: <problem>``."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from embedkit.data import TaskSpec, read_pair_file
from embedkit.errors import DataError

INT_0_5 = {"label_range": [0, 5], "label_type": "int"}


def spec(path: Path, **kw) -> TaskSpec:
    return TaskSpec.from_dict({"name": "t", "files": {"test": str(path)}, **kw}, origin="inline")


def write(tmp_path: Path, text: str | bytes, name: str = "p.tsv") -> Path:
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return p


def read(path: Path, skip_invalid: bool = False, **kw):
    return read_pair_file(spec(path, **kw), "test", str(path), skip_invalid=skip_invalid)


GOOD = "一个人在切洋葱。\t男人切洋葱。\t5\n"


@pytest.mark.parametrize("bad_line,problem", [
    ("一个人\t男人\n", "expected 3 tab-separated fields (sentence1, sentence2, label), found 2"),
    ("一个人\t男人\t3\t4\n", "expected 3 tab-separated fields (sentence1, sentence2, label), found 4"),
    ("一个人\t男人\tabc\n", "label 'abc' is not a number"),
    ("一个人\t男人\tnan\n", "label 'nan' is not a number"),
    ("一个人\t男人\t\n", "label '' is not a number"),
    ("一个人\t男人\t6\n", "label '6' is outside the range [0, 5]"),
    ("一个人\t男人\t-1\n", "label '-1' is outside the range [0, 5]"),
    ("一个人\t男人\t2.5\n", "label '2.5' is not an integer"),
    ("\t男人\t2\n", "sentence1 is empty"),
    ("一个人\t   \t2\n", "sentence2 is empty"),
    ("\n", "empty line (expected 3 fields: sentence1, sentence2, label)"),
])
def test_malformed_row_message(tmp_path, bad_line, problem):
    path = write(tmp_path, GOOD + GOOD + bad_line + GOOD)
    with pytest.raises(DataError) as e:
        read(path, **INT_0_5)
    assert str(e.value) == f"{path}:3: {problem}"
    assert (e.value.path, e.value.line, e.value.problem) == (str(path), 3, problem)


def test_bad_utf8(tmp_path):
    path = write(tmp_path, GOOD.encode() + b"\xe4\xb8\x80\xff\t\xe4\xba\xba\t1\n")
    with pytest.raises(DataError) as e:
        read(path)
    assert str(e.value) == (f"{path}:2: invalid UTF-8 at byte 3 of the line; "
                            "re-save the file as UTF-8")


def test_missing_file(tmp_path):
    path = tmp_path / "absent.tsv"
    with pytest.raises(DataError) as e:
        read(path)
    assert str(e.value) == f"{path}: file not found"


def test_float_labels_allowed_when_float(tmp_path):
    path = write(tmp_path, "a\tb\t2.5\nc\td\t0\n")
    s = read(path, label_range=[0, 5])
    assert s.labels.tolist() == [2.5, 0.0]
    assert s.label_distribution() == {"0": 1, "2.5": 1}


def test_skip_invalid_counts_and_keeps_messages(tmp_path):
    lines = [GOOD, "x\ty\n", GOOD, "x\ty\t9\n", b"\xff\tb\t1\n", "\n", GOOD]
    path = write(tmp_path, b"".join(x if isinstance(x, bytes) else x.encode() for x in lines))
    s = read(path, skip_invalid=True, **INT_0_5)
    assert s.n_pairs == 3 and s.skipped == 4
    assert [m.split(": ", 1)[0] for m in s.skip_messages] == [
        f"{path}:2", f"{path}:4", f"{path}:5", f"{path}:6"]


def test_skip_messages_are_capped_but_the_count_is_exact(tmp_path):
    path = write(tmp_path, GOOD + "bad\n" * 30)
    s = read(path, skip_invalid=True)
    assert s.skipped == 30 and len(s.skip_messages) == 20 and s.n_pairs == 1


def test_valid_quirks_are_kept(tmp_path):
    rows = [
        "一个人在弹吉他。\t一个人在弹吉他。\t1",   # identical sentences
        "NS\t这是一个句子。\t0",                    # PAWSX placeholder
        "一个人在切洋葱。\t男人切洋葱。\t1",
        "一个人在切洋葱。\t男人切洋葱。\t1",       # duplicate line
        '"Pure 的意思是 ""Belter"" 很棒。"\t“Pure”意为“非常”。\t0',  # literal quotes
        'a "quoted\tb\t1',                          # unbalanced quote: no special meaning
    ]
    text = "\n".join(rows) + "\n"
    path = write(tmp_path, text)
    s = read(path, label_range=[0, 1], label_type="int")
    assert s.n_pairs == 6 and s.skipped == 0
    assert s.sentences1[0] == s.sentences2[0]
    assert s.sentences1[1] == "NS"
    assert s.sentences1[2:4] == ["一个人在切洋葱。"] * 2
    assert s.sentences1[4] == '"Pure 的意思是 ""Belter"" 很棒。"'
    assert s.sentences1[5] == 'a "quoted'
    assert s.labels.dtype == np.float64 and s.labels.tolist() == [1, 0, 1, 1, 0, 1]
    assert s.sha256 == hashlib.sha256(text.encode()).hexdigest()
    assert s.source == str(path) and (s.task, s.split) == ("t", "test")
    # unique sentences: the first side, then the second, each once in first-seen order
    assert s.unique_sentences()[:3] == ["一个人在弹吉他。", "NS", "一个人在切洋葱。"]
    assert s.unique_sentences()[-2:] == ["“Pure”意为“非常”。", "b"]
    assert len(s.unique_sentences()) == len(set(s.sentences1) | set(s.sentences2)) == 9


def test_crlf_bom_and_missing_final_newline(tmp_path):
    path = write(tmp_path, b"\xef\xbb\xbfa\tb\t1\r\nc\td\t0")
    s = read(path)
    assert (s.sentences1, s.sentences2, s.labels.tolist()) == (["a", "c"], ["b", "d"], [1.0, 0.0])


def test_csv_with_header_and_field_mapping(tmp_path):
    path = write(tmp_path, 'id,query,candidate,score\n1,"a, with comma","say ""hi""",0.5\n'
                 '2,c,d,1\n', "p.csv")
    s = read(path, format="csv", header=True,
             fields={"sentence1": "query", "sentence2": "candidate", "label": "score"})
    assert s.sentences1 == ["a, with comma", "c"]
    assert s.sentences2 == ['say "hi"', "d"]
    assert s.labels.tolist() == [0.5, 1.0]


def test_csv_bad_row_counts_header_as_line_1(tmp_path):
    path = write(tmp_path, "s1,s2,y\na,b,1\nc,d\n", "p.csv")
    with pytest.raises(DataError) as e:
        read(path, format="csv", header=True, fields={"sentence1": "s1", "sentence2": "s2",
                                                      "label": "y"})
    assert str(e.value) == (f"{path}:3: expected 3 comma-separated fields (s1, s2, y), found 2")


def test_header_missing_a_field(tmp_path):
    path = write(tmp_path, "query\tcandidate\tlabel\na\tb\t1\n")
    with pytest.raises(DataError) as e:
        read(path, header=True, fields={"sentence1": "query", "sentence2": "doc"})
    assert re.fullmatch(re.escape(f"{path}:1: the header has no column 'doc'") + r"; .*",
                        str(e.value))


def test_tsv_with_explicit_columns(tmp_path):
    path = write(tmp_path, "7\ta\tb\t1\n")
    s = read(path, columns=["id", "sentence1", "sentence2", "label"])
    assert (s.sentences1, s.sentences2, s.labels.tolist()) == (["a"], ["b"], [1.0])


def test_jsonl_with_fields(tmp_path):
    rows = [{"q": "一个人", "d": "男人", "y": 1}, {"q": "海龟", "d": "猫", "y": 0.25}]
    path = write(tmp_path, "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n",
                 "p.jsonl")
    s = read(path, format="jsonl", fields={"sentence1": "q", "sentence2": "d", "label": "y"})
    assert s.sentences1 == ["一个人", "海龟"] and s.labels.tolist() == [1.0, 0.25]


@pytest.mark.parametrize("line,problem", [
    ('{"sentence1": "a", "sentence2": "b"', "not valid JSON"),
    ('["a", "b", 1]', "each line must be a JSON object"),
    ('{"sentence1": "a", "label": 1}', "sentence2 ('sentence2') is missing or not a string"),
    ('{"sentence1": 3, "sentence2": "b", "label": 1}', "sentence1 ('sentence1') is missing"),
    ('{"sentence1": "a", "sentence2": "b", "label": true}', "label True is not a number"),
    ('{"sentence1": "a", "sentence2": "b", "label": null}', "label None is not a number"),
])
def test_jsonl_errors(tmp_path, line, problem):
    path = write(tmp_path, '{"sentence1": "a", "sentence2": "b", "label": 1}\n' + line + "\n",
                 "p.jsonl")
    with pytest.raises(DataError) as e:
        read(path, format="jsonl")
    assert str(e.value).startswith(f"{path}:2: {problem}")


def test_rows_to_split_hashes_like_the_file(tmp_path):
    from embedkit.data.pairs import rows_to_split

    text = "一个人\t男人\t1\n海龟\t猫\t0\n"
    path = write(tmp_path, text)
    rows = [{"sentence1": "一个人", "sentence2": "男人", "label": "1"},
            {"sentence1": "海龟", "sentence2": "猫", "label": "0"}]
    s = rows_to_split(spec(path), "test", "mem", rows)
    assert s.sha256 == read(path).sha256 == hashlib.sha256(text.encode()).hexdigest()
    with pytest.raises(DataError, match=r"^mem:2: label 'x' is not a number$"):
        rows_to_split(spec(path), "test", "mem", [rows[0], {**rows[1], "label": "x"}])
