"""``index eval`` on retrieval tasks read from files, with a model or on a built index."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedkit.data import get_task
from embedkit.data.retrieval import load_retrieval_split
from embedkit.errors import ConfigError
from embedkit.postprocess.spec import PostOptions
from embedkit.reports.index_eval import format_quality_table
from embedkit.retrieval.folder import build_index
from embedkit.runs.index_eval import (
    IndexEvalOptions,
    QualityOptions,
    quality_eval,
    run_index_eval,
)


def _reference(split, cx, qx, transform=None):
    """pytrec_eval on an exact cosine ranking written with numpy (every corpus entry scored)."""
    pytrec_eval = pytest.importorskip("pytrec_eval")
    if transform is not None:
        cx, qx = transform(cx), transform(qx)
    cx = (cx / np.linalg.norm(cx, axis=1, keepdims=True)).astype(np.float32)
    qx = (qx / np.linalg.norm(qx, axis=1, keepdims=True)).astype(np.float32)
    sims = qx @ cx.T
    run = {q: {d: float(s) for d, s in zip(split.corpus_ids, sims[i], strict=True)}
           for i, q in enumerate(split.query_ids)}
    ev = pytrec_eval.RelevanceEvaluator(split.qrels, {"ndcg_cut.10", "recall.10", "map_cut.10"})
    per = ev.evaluate(run)
    return {key: float(np.mean([v[name] for v in per.values()]))
            for key, name in (("ndcg@10", "ndcg_cut_10"), ("recall@10", "recall_10"),
                              ("map@10", "map_cut_10"))}


def _vectors(enc, split):
    cx = enc.encode(split.corpus_texts, "cls", max_length=64).astype(np.float64)
    qx = enc.encode(split.query_texts, "cls", max_length=64).astype(np.float64)
    return cx, qx


def test_model_rows_match_pytrec_eval(tiny_encoder, beir_spec_file, tmp_path):
    opts = IndexEvalOptions(quality=QualityOptions(
        tasks=(str(beir_spec_file),), predictions=str(tmp_path / "p")),
        post=PostOptions(("whiten:k=8",)))
    rows, data = quality_eval(tiny_encoder, opts)
    split = load_retrieval_split(get_task(str(beir_spec_file)), "test")
    cx, qx = _vectors(tiny_encoder, split)
    # the tiny model's raw cosines all lie within 1e-5 of 1 (float-noise ties): compare the
    # whitened row, fitted as index eval fits it (on the distinct corpus texts)
    from embedkit.postprocess import parse_post

    uniq = list(dict.fromkeys(split.corpus_texts))
    pipe = parse_post("whiten:k=8").fit(tiny_encoder.encode(uniq, "cls", max_length=64))
    ref = _reference(split, cx, qx, transform=pipe.transform)
    for key, value in ref.items():
        assert rows[1][key] == pytest.approx(value, abs=1e-6)
    assert {f"{m}@{k}" for m in ("ndcg", "recall", "mrr", "map") for k in (1, 5, 10, 100)} <= set(
        rows[0])
    assert rows[1]["post"] == "whiten:beta=1,gamma=1,k=8" and rows[1]["fit"]["on"] == "corpus"
    assert data["beir-task"]["test"]["n_queries"] == len(split.query_ids)
    # the corpus has one text twice (ids d0 and dup): indexed once, both ids ranked
    assert data["beir-task"]["test"]["n_corpus"] == len(set(split.corpus_texts))
    lines = open(rows[0]["predictions"], encoding="utf-8").read().splitlines()
    per = [json.loads(line) for line in lines]
    assert [p["query_id"] for p in per] == split.query_ids
    assert np.mean([p["ndcg@10"] for p in per]) == pytest.approx(rows[0]["ndcg@10"])
    assert "map@10" in format_quality_table(rows)


def test_a_built_index(tiny_encoder, tiny_model_dir, beir_spec_file, tmp_path):
    split = load_retrieval_split(get_task(str(beir_spec_file)), "test")
    build_index(tmp_path / "idx", split.corpus_texts, tiny_encoder, ids=split.corpus_ids,
                post="whiten:k=8")
    opts = IndexEvalOptions(quality=QualityOptions(tasks=(str(beir_spec_file),),
                                                   index_dir=str(tmp_path / "idx")))
    rec = run_index_eval(None, opts, command="t")
    row = rec["quality"][0]
    assert row["post"] and row["index"] == str(tmp_path / "idx")
    assert rec["settings"]["index"] == str(tmp_path / "idx")
    from embedkit.retrieval.folder import load_index_folder

    index, _ = load_index_folder(tmp_path / "idx")
    amap = index.affine_map()
    cx, qx = _vectors(tiny_encoder, split)
    ref = _reference(split, cx, qx, transform=amap.apply)
    for key, value in ref.items():
        assert row[key] == pytest.approx(value, abs=1e-5)


def test_an_index_of_other_ids_is_refused(tiny_encoder, beir_spec_file, tmp_path):
    split = load_retrieval_split(get_task(str(beir_spec_file)), "test")
    build_index(tmp_path / "idx", split.corpus_texts, tiny_encoder,
                ids=[f"x{i}" for i in split.corpus_ids])
    opts = IndexEvalOptions(quality=QualityOptions(tasks=(str(beir_spec_file),),
                                                   index_dir=str(tmp_path / "idx")))
    with pytest.raises(ConfigError, match="the index lacks .* relevant corpus ids"):
        run_index_eval(None, opts)
