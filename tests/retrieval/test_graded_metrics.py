"""Graded retrieval metrics against pytrec_eval (what mteb uses) on a run with ties."""

from __future__ import annotations

import numpy as np
import pytest

from embedkit.retrieval.metrics import graded_retrieval_scores, trec_ranking

#: graded labels (0 judged not relevant), a query with no relevant document, ties in the run
QRELS = {"q1": {"d1": 2, "d2": 1, "d5": 3, "d9": 0},
         "q2": {"d3": 1},
         "q3": {"d4": 1, "d6": 2, "d7": 1, "d8": 1},
         "q4": {"d2": 0}}
RUN = {"q1": {"d1": 0.9, "d2": 0.9, "d3": 0.8, "d9": 0.8, "d5": 0.1},
       "q2": {"d1": 0.5, "d2": 0.5, "d3": 0.5, "d4": 0.4},
       "q3": {"d8": 0.7, "d7": 0.7, "d6": 0.7, "d4": 0.7, "d1": 0.9},
       "q4": {"d2": 0.3}}
KS = (1, 3, 5, 100)


def _numpy_reference(run, qrels, k):
    """The definitions, written out: ranking by (score, id) descending; gains = labels."""
    out = {"ndcg": [], "recall": [], "map": [], "mrr": []}
    for q, judged in qrels.items():
        ids = sorted(run[q], key=lambda d: (run[q][d], d), reverse=True)[:k]
        g = np.array([max(judged.get(d, 0), 0) for d in ids], dtype=float)
        rel = np.array([judged.get(d, 0) > 0 for d in ids])
        n_rel = sum(v > 0 for v in judged.values())
        disc = 1 / np.log2(np.arange(2, len(ids) + 2))
        ideal = np.sort([v for v in judged.values() if v > 0])[::-1][:k]
        idcg = float(np.sum(ideal / np.log2(np.arange(2, len(ideal) + 2))))
        out["ndcg"].append(float(g @ disc) / idcg if idcg else 0.0)
        out["recall"].append(rel.sum() / n_rel if n_rel else 0.0)
        prec = np.cumsum(rel) / np.arange(1, len(ids) + 1)
        out["map"].append(float(prec[rel].sum()) / n_rel if n_rel else 0.0)
        first = np.flatnonzero(rel)
        out["mrr"].append(1 / (first[0] + 1) if len(first) else 0.0)
    return {key: float(np.mean(v)) for key, v in out.items()}


def test_ties_break_by_id_descending():
    assert trec_ranking(RUN["q3"]) == ["d1", "d8", "d7", "d6", "d4"]


def test_against_pytrec_eval():
    pytrec_eval = pytest.importorskip("pytrec_eval")
    means, per = graded_retrieval_scores(RUN, QRELS, KS)
    cuts = ",".join(map(str, KS))
    ev = pytrec_eval.RelevanceEvaluator(QRELS, {f"ndcg_cut.{cuts}", f"recall.{cuts}",
                                                f"map_cut.{cuts}"})
    ref = ev.evaluate(RUN)
    for q in QRELS:
        for k in KS:
            assert per[q][f"ndcg@{k}"] == pytest.approx(ref[q][f"ndcg_cut_{k}"], abs=1e-12)
            assert per[q][f"recall@{k}"] == pytest.approx(ref[q][f"recall_{k}"], abs=1e-12)
            assert per[q][f"map@{k}"] == pytest.approx(ref[q][f"map_cut_{k}"], abs=1e-12)
    # the tie matters: q1's d1 and d2 tie at 0.9, d2 goes first (id descending)
    assert per["q1"]["mrr@1"] == 1.0 and per["q2"]["mrr@5"] == pytest.approx(1.0)
    assert means["ndcg@3"] == pytest.approx(np.mean([ref[q]["ndcg_cut_3"] for q in QRELS]))


def test_against_mteb_mrr():
    retrieval_metrics = pytest.importorskip("mteb._evaluators.retrieval_metrics")
    _, per = graded_retrieval_scores(RUN, QRELS, KS)
    ref = retrieval_metrics.mrr(QRELS, RUN, KS)
    for k in KS:
        assert [per[q][f"mrr@{k}"] for q in QRELS] == pytest.approx(ref[f"MRR@{k}"])


@pytest.mark.parametrize("k", KS)
def test_against_numpy_definitions(k):
    means, _ = graded_retrieval_scores(RUN, QRELS, (k,))
    ref = _numpy_reference(RUN, QRELS, k)
    for name in ("ndcg", "recall", "map", "mrr"):
        assert means[f"{name}@{k}"] == pytest.approx(ref[name], abs=1e-12)
