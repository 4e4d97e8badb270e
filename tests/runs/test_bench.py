"""``run_bench``, the Python side of ``embedkit bench``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedkit.data import TaskSpec, load_task
from embedkit.data.selection import collect_fit_sentences
from embedkit.encoders import Encoder
from embedkit.errors import ConfigError
from embedkit.evaluation import pair_scores
from embedkit.provenance import sha256_text
from embedkit.runs.bench import run_bench


def second_spec(tmp_path, pairs_file) -> TaskSpec:
    lines = pairs_file.read_text(encoding="utf-8").splitlines()[:20]
    (tmp_path / "half.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return TaskSpec.from_dict({"name": "half", "files": {"test": "half.tsv"},
                               "label_range": [0, 5]}, origin="half", spec_dir=str(tmp_path))


def test_run_bench_api_two_tasks(tiny_encoder, spec_file, pairs_file, tmp_path):
    specs = [str(spec_file), second_spec(tmp_path, pairs_file)]
    rec = run_bench(tiny_encoder, ["last-avg"], specs)
    assert rec["command"] is None and rec["settings"]["tasks"] == ["tiny-sts", "half"]
    assert rec["settings"]["cache"] is None
    r = rec["results"]["last-avg"]
    assert r["half"]["test"]["n_pairs"] == 20
    assert r["avg"]["spearman"] == pytest.approx(
        (r["tiny-sts"]["test"]["spearman"] + r["half"]["test"]["spearman"]) / 2)
    assert json.loads(json.dumps(rec)) == rec  # JSON-ready


def test_cmteb_protocol_uses_the_model_max_length(tiny_encoder, spec_file):
    rec = run_bench(tiny_encoder, ["cls"], [str(spec_file)], protocol="cmteb")
    assert rec["settings"]["max_length"] == {"tiny-sts": 64}
    rec = run_bench(tiny_encoder, ["cls"], [str(spec_file)], max_length=16)
    assert rec["settings"]["max_length"] == {"tiny-sts": 16}
    split = load_task(str(spec_file))["test"]
    ref = pair_scores(tiny_encoder.encode(split.sentences1, "cls", max_length=16),
                      tiny_encoder.encode(split.sentences2, "cls", max_length=16), split.labels)
    assert rec["results"]["cls"]["tiny-sts"]["test"]["spearman"] == pytest.approx(
        ref["spearman"], abs=1e-6)


def test_post_rows_fitted_on_the_task(tiny_encoder, spec_file):
    from sklearn.base import clone

    from embedkit.postprocess import parse_post

    rec = run_bench(tiny_encoder, ["cls"], [str(spec_file)], post=["pca:k=8"])
    assert list(rec["results"]) == ["cls", "cls + pca:k=8"]
    assert rec["results"]["cls + pca:k=8"]["post"] == "pca:k=8"
    split = load_task(str(spec_file))["test"]
    occurrences = [t for pair in zip(split.sentences1, split.sentences2, strict=True) for t in pair]
    fit = rec["data"]["tiny-sts"]["fit"]
    assert fit == {"on": "task:tiny-sts:test", "n_sentences": 80, "unique": False,
                   "sha256": sha256_text("\n".join(occurrences))}
    pipe = clone(parse_post("pca:k=8")).fit(tiny_encoder.encode(occurrences, "cls"))
    ref = pair_scores(pipe.transform(tiny_encoder.encode(split.sentences1, "cls")),
                      pipe.transform(tiny_encoder.encode(split.sentences2, "cls")), split.labels)
    assert rec["results"]["cls + pca:k=8"]["tiny-sts"]["test"]["spearman"] == pytest.approx(
        ref["spearman"], abs=1e-4)
    assert rec["settings"]["fit_on"] == "task" and rec["settings"]["post"] == ["pca:k=8"]


def test_fit_sentences_variants(spec_file, tmp_path):
    spec = TaskSpec.from_file(spec_file)
    data = load_task(spec)
    kw = {"data_dir": None, "source": "auto", "skip_invalid": False}
    fs = collect_fit_sentences("test", spec, data, unique=True, **kw)
    sents, what = fs.sentences, fs.description
    assert what == "task:tiny-sts:test" and len(sents) == len(set(sents)) == len(
        data["test"].unique_sentences())
    with pytest.raises(ConfigError, match="train: task tiny-sts has no train split") as e:
        collect_fit_sentences("train", spec, data, unique=False, **kw)
    assert e.value.param == "fit_on"  # the CLI names --fit-on
    f = tmp_path / "fit.txt"
    f.write_text("一个\n\n两个\n一个\n", encoding="utf-8")
    fs = collect_fit_sentences(str(f), spec, data, unique=False, **kw)
    assert (fs.sentences, fs.description) == (["一个", "两个", "一个"], f"file:{f}")
    assert collect_fit_sentences(str(f), spec, data, unique=True, **kw).sentences == ["一个", "两个"]
    with pytest.raises(ConfigError, match="neither task, train, valid, test nor a file"):
        collect_fit_sentences(str(tmp_path / "nope.txt"), spec, data, unique=False, **kw)


def test_bench_is_deterministic(tiny_encoder, spec_file):
    a = run_bench(tiny_encoder, ["first-last-avg"], [str(spec_file)])
    b = run_bench(Encoder(tiny_encoder.path, batch_size=3), ["first-last-avg"], [str(spec_file)])
    sa = a["results"]["first-last-avg"]["tiny-sts"]["test"]["spearman"]
    sb = b["results"]["first-last-avg"]["tiny-sts"]["test"]["spearman"]
    assert np.isfinite(sa) and sa == pytest.approx(sb, abs=1e-6)


def test_split_order_in_the_record_is_the_requested_one(tiny_encoder, pairs_file, tmp_path):
    # (was a set difference: the order depended on PYTHONHASHSEED, so identical runs differed)
    lines = pairs_file.read_text(encoding="utf-8").splitlines()
    (tmp_path / "v.tsv").write_text("\n".join(lines[:20]) + "\n", encoding="utf-8")
    (tmp_path / "t.tsv").write_text("\n".join(lines[20:]) + "\n", encoding="utf-8")
    spec = TaskSpec.from_dict({"name": "two", "files": {"valid": "v.tsv", "test": "t.tsv"},
                               "label_range": [0, 5]}, origin="two", spec_dir=str(tmp_path))
    for order in (["valid", "test"], ["test", "valid"]):
        rec = run_bench(tiny_encoder, ["cls"], [spec], order, post=["pca:k=4"])
        assert rec["settings"]["splits"] == {"two": order}
        assert list(rec["data"]["two"]) == [*order, "fit"]
    res = rec["results"]["cls"]["two"]
    assert res["w-avg"]["spearman"] == pytest.approx(
        (res["valid"]["spearman"] * 20 + res["test"]["spearman"] * 20) / 40)
