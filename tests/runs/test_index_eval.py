"""``index eval``'s library side: quality rows, thresholds, options and the record."""

from __future__ import annotations

import numpy as np
import pytest

from embedkit.data import get_task, load_split
from embedkit.encoders.wrappers import EncoderWrapper
from embedkit.errors import ConfigError
from embedkit.postprocess.spec import PostOptions
from embedkit.reports.index_eval import markdown_eval_report
from embedkit.retrieval import evaluate_retrieval, pairs_to_retrieval
from embedkit.runs import index_eval
from embedkit.runs.index_eval import (
    CostOptions,
    IndexEvalOptions,
    QualityOptions,
    label_threshold,
    quality_eval,
    run_index_eval,
)


def test_quality_eval_both_directions(rx_encoder, rx_spec_file):
    opts = IndexEvalOptions(quality=QualityOptions(tasks=(str(rx_spec_file),),
                                                   both_directions=True))
    rows, data = quality_eval(rx_encoder, opts)
    assert len(rows) == 1 and rows[0]["n_queries"] == 20 and rows[0]["post"] is None
    split = load_split(get_task(str(rx_spec_file)), "test")
    task = pairs_to_retrieval(split.sentences1, split.sentences2, split.labels,
                              both_directions=True)
    x = rx_encoder.encode(task.corpus, "cls", max_length=64)
    ref = evaluate_retrieval(task, x, x[task.query_ids])
    for key in ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10"):
        assert rows[0][key] == pytest.approx(ref[key])
    assert data["rx-pairs"]["test"]["threshold"] == 1.0
    assert data["rx-pairs"]["test"]["max_length"] == 64  # the whitening protocol's


class _Short(EncoderWrapper):
    """The tiny model, claiming a 16-token maximum (the cmteb protocol encodes with it)."""

    def model_max_length(self) -> int:
        return 16


def test_quality_eval_posts_and_protocol(rx_encoder, rx_spec_file):
    opts = IndexEvalOptions(protocol="cmteb", quality=QualityOptions(
        tasks=(f"{rx_spec_file}:test",)), post=PostOptions(("none", "whiten:k=8")))
    rows, data = quality_eval(_Short(rx_encoder), opts)
    assert [r["post"] for r in rows] == [None, "whiten:beta=1,gamma=1,k=8"]
    assert rows[1]["dim"] == 8 and rows[1]["fit"]["on"] == "task:rx-pairs:test"
    assert data["rx-pairs"]["test"]["max_length"] == 16  # cmteb: the model's own
    assert data["rx-pairs"]["test"]["fit"]["n_sentences"] == 40


def test_thresholds():
    assert label_threshold((0, 5), None) == 4.0
    assert label_threshold(None, np.array([0.0, 1.0, 1.0])) == 1.0
    assert label_threshold(None, np.array([1.0, 3.0, 5.0])) == pytest.approx(4.2)
    with pytest.raises(ConfigError, match="without labels"):
        label_threshold(None, np.array([]))


def test_run_index_eval_record(rx_encoder, rx_spec_file):
    opts = IndexEvalOptions(cost=CostOptions(corpus_tasks=(f"{rx_spec_file}:test",),
                                             factories=("Flat", "HNSW8"), ef_searches=(16,),
                                             n_queries=10, single_queries=2), faiss_threads=1)
    rec = run_index_eval(rx_encoder, opts, command="demo")
    assert rec["kind"] == "index-eval" and rec["command"] == "demo" and rec["quality"] is None
    s = rec["settings"]
    assert s["cost_corpus_tasks"] == f"{rx_spec_file}:test" and s["tasks"] is None
    assert (s["pooling"], s["protocol"], s["faiss_threads"]) == ("cls", "whitening", 1)
    assert [r["factory"] for r in rec["cost"]["rows"]] == ["Flat", "HNSW8"]
    assert rec["cost"]["max_length"] == index_eval.COST_MAX_LENGTH
    cmteb = run_index_eval(_Short(rx_encoder), IndexEvalOptions(protocol="cmteb", cost=opts.cost))
    assert cmteb["cost"]["max_length"] == 16
    assert rec["data"]["cost"]["n_texts"] == 40 and rec["timings"]["seconds_total"] >= 0
    md = markdown_eval_report(rec)
    assert "## Cost of approximate search" in md and f"of {rx_spec_file}:test;" in md
    with pytest.raises(ConfigError, match="nothing to evaluate"):
        run_index_eval(rx_encoder, IndexEvalOptions())


def test_csls_rows_rerank_the_same_candidates(rx_encoder, rx_spec_file):
    """--csls adds a re-ranked twin after the raw row and after each post row, equal to
    CSLS computed directly: 2 cos(q, c) - r(c) over the plain search's candidates."""
    from embedkit.diagnostics import corpus_hub_penalty
    from embedkit.retrieval.metrics import retrieval_scores

    opts = IndexEvalOptions(quality=QualityOptions(
        tasks=(str(rx_spec_file),), csls=True, csls_k=3, csls_candidates=1000),
        post=PostOptions(("pca:k=8",)))
    rows, _ = quality_eval(rx_encoder, opts)
    assert [r["row"] for r in rows] == ["cls", "cls + csls", "cls + pca:k=8",
                                        "cls + pca:k=8 + csls"]
    assert rows[1]["rerank"] == "csls" and rows[1]["k_penalty"] == 3
    plain, _ = quality_eval(rx_encoder, IndexEvalOptions(quality=QualityOptions(
        tasks=(str(rx_spec_file),)), post=PostOptions(("pca:k=8",))))
    assert [rows[0], rows[2]] == plain  # the plain rows are what index eval gives without CSLS
    split = load_split(get_task(str(rx_spec_file)), "test")
    task = pairs_to_retrieval(split.sentences1, split.sentences2, split.labels)
    x = rx_encoder.encode(task.corpus, "cls", max_length=64).astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    pen = corpus_hub_penalty(x, k=3)
    csls = 2 * x[task.query_ids] @ x.T - pen[None, :]
    ranked = []
    for q, own in enumerate(task.query_ids):
        order = [int(i) for i in np.argsort(-csls[q], kind="stable")
                 if i != own or i in task.relevant[q]]
        ranked.append(order[:10])
    ref = retrieval_scores(ranked, task.relevant, ks=(1, 5, 10))
    for key in ("recall@1", "recall@10", "mrr@10"):
        assert rows[1][key] == pytest.approx(ref[key], abs=1e-9)


def test_csls_needs_cosine(rx_encoder, rx_spec_file):
    opts = IndexEvalOptions(quality=QualityOptions(tasks=(str(rx_spec_file),), csls=True),
                            metric="l2")
    with pytest.raises(ConfigError, match="cosine"):
        quality_eval(rx_encoder, opts)


def test_cost_rows_of_quantized_indexes(rx_encoder, rx_spec_file):
    """index eval's cost part: SQ8 and binary + rescoring rows carry recall@10 against exact
    float search, QPS and bytes per vector (the rescoring file counted on disk only)."""
    opts = IndexEvalOptions(cost=CostOptions(
        corpus_tasks=(f"{rx_spec_file}:test",), n_queries=10, single_queries=2,
        factories=("Flat", "SQ8", "BFlat", "BFlat+rescore4x")), faiss_threads=1)
    rows = {r["factory"]: r for r in run_index_eval(rx_encoder, opts)["cost"]["rows"]}
    dim = rx_encoder.dim
    # memory over ntotal: the codes plus, on 40 texts, a visible share of the fixed part (SQ8
    # ranges, headers)
    assert 4 * dim <= rows["Flat"]["bytes_per_vector"] < 4 * dim + 8
    assert dim <= rows["SQ8"]["bytes_per_vector"] < dim + 2 * dim * 4 / 40 + 8
    assert dim / 8 <= rows["BFlat"]["bytes_per_vector"] < dim / 8 + 8
    rescored = rows["BFlat+rescore4x"]
    assert rescored["memory_bytes"] == rows["BFlat"]["memory_bytes"]
    n = rescored["ntotal"]
    assert rescored["disk_bytes"] == rescored["memory_bytes"] + n * dim * 4
    assert rescored["recall@10"] >= rows["BFlat"]["recall@10"]
    assert rescored["qps_batch"] > 0
    from embedkit.reports.index_eval import markdown_eval_report

    md = markdown_eval_report(run_index_eval(rx_encoder, opts))
    assert "| bytes/vector |" in md and "BFlat+rescore4x" in md
