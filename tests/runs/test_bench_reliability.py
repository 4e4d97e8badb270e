"""Reliability of ``run_bench`` (issue 9): undefined scores are said and poison the averages;
bad settings are found before anything is encoded."""

from __future__ import annotations

import json
import math

import pytest

from embedkit.data import TaskSpec
from embedkit.errors import ConfigError, DataError
from embedkit.evaluation import UndefinedScoreWarning
from embedkit.runs.bench import run_bench


class Counting:
    """Any encoder, counting the sentences it is asked to encode."""

    def __init__(self, inner):
        self.inner, self.asked = inner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode(self, sentences, pooling=None, *, max_length=64):
        self.asked += len(sentences)
        return self.inner.encode(sentences, pooling, max_length=max_length)

    def encode_multi(self, sentences, poolings, *, max_length=64):
        self.asked += len(sentences)
        return self.inner.encode_multi(sentences, poolings, max_length=max_length)


def flat_spec(tmp_path, pairs_file) -> TaskSpec:
    """The tiny pairs with every label 3: Spearman is undefined."""
    lines = [ln.rsplit("\t", 1)[0] + "\t3" for ln in pairs_file.read_text("utf-8").splitlines()]
    (tmp_path / "flat.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return TaskSpec.from_dict({"name": "flat", "files": {"test": "flat.tsv"},
                               "label_range": [0, 5]}, origin="flat", spec_dir=str(tmp_path))


@pytest.mark.reliability("9.7", "bench: a task with constant labels makes avg NaN and is "
                                "flagged in the record")
def test_bench_flags_an_undefined_task(tiny_encoder, spec_file, pairs_file, tmp_path):
    with pytest.warns(UndefinedScoreWarning, match=r"flat/test: Spearman is undefined"):
        rec = run_bench(tiny_encoder, ["cls", "last-avg"], [str(spec_file),
                                                           flat_spec(tmp_path, pairs_file)])
    for row in ("cls", "last-avg"):
        r = rec["results"][row]
        assert not math.isnan(r["tiny-sts"]["test"]["spearman"])
        assert math.isnan(r["flat"]["test"]["spearman"])
        assert r["flat"]["test"]["undefined"] == "constant labels"
        assert math.isnan(r["flat"]["avg"]["spearman"]) and math.isnan(r["avg"]["spearman"])
    assert rec["undefined"] == [
        {"row": "cls", "task": "flat", "split": "test", "reason": "constant labels"},
        {"row": "last-avg", "task": "flat", "split": "test", "reason": "constant labels"}]
    json.dumps(rec)  # still JSON-ready


def test_bench_record_has_no_undefined_key_for_good_input(tiny_encoder, spec_file):
    assert "undefined" not in run_bench(tiny_encoder, ["cls"], [str(spec_file)])


def _two_tasks(tmp_path, pairs_file):
    lines = pairs_file.read_text("utf-8").splitlines()
    (tmp_path / "v.tsv").write_text("\n".join(lines[:20]) + "\n", encoding="utf-8")
    (tmp_path / "t.tsv").write_text("\n".join(lines[20:]) + "\n", encoding="utf-8")
    first = TaskSpec.from_dict({"name": "first", "files": {"train": "v.tsv", "test": "t.tsv"},
                                "label_range": [0, 5]}, origin="first", spec_dir=str(tmp_path))
    second = TaskSpec.from_dict({"name": "second", "files": {"test": "t.tsv"},
                                 "label_range": [0, 5]}, origin="second", spec_dir=str(tmp_path))
    return first, second


@pytest.mark.parametrize("post,error,match", [
    pytest.param(dict(post=["pca:k=4"], fit_on="train"), ConfigError, "task second has no train",
                 marks=pytest.mark.reliability("9.tb", "bench: --fit-on a split one task lacks "
                                                      "fails before encoding")),
    pytest.param(dict(post=["pca:k=4"], fit_on="BLANK"), DataError, "no sentences to fit on",
                 marks=pytest.mark.reliability("9.msg", "bench: --fit-on a blank file fails "
                                                       "before encoding, naming it")),
    pytest.param(dict(max_length=0), ConfigError, "max_length must be at least 3",
                 marks=pytest.mark.reliability("9.tb", "bench: max_length 0 is refused, not "
                                                       "read as the default")),
])
def test_bench_refuses_before_encoding(tiny_encoder, pairs_file, tmp_path, post, error, match):
    from embedkit.runs.bench import PostOptions

    first, second = _two_tasks(tmp_path, pairs_file)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n\n", encoding="utf-8")
    enc = Counting(tiny_encoder)
    kwargs = {}
    if "post" in post:
        fit_on = str(blank) if post["fit_on"] == "BLANK" else post["fit_on"]
        kwargs["post"] = PostOptions(tuple(post["post"]), fit_on)
    if "max_length" in post:
        kwargs["max_length"] = post["max_length"]
    with pytest.raises(error, match=match):
        run_bench(enc, ["cls"], [first, second], **kwargs)
    assert enc.asked == 0
