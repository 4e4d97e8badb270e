"""Default search settings chosen at build time: the smallest nprobe / efSearch reaching
recall@10 >= 0.95 against exact search, stored in the recipe and used when none is given."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedkit.retrieval.index import EmbeddingIndex
from embedkit.retrieval.tuning import RecallProbe, search_defaults_of, tune_defaults


@pytest.fixture(scope="module")
def clustered():
    """3000 vectors in 40 clusters (a corpus where nprobe=1 loses neighbours)."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((40, 24))
    x = centres[rng.integers(0, 40, 3000)] + 0.8 * rng.standard_normal((3000, 24))
    return x.astype(np.float32)


def _exact(x, q, k=10):
    return EmbeddingIndex.build(x, [str(i) for i in range(len(x))]).search(q, k)


def test_ivf_default_nprobe_is_the_smallest_reaching_the_target(clustered, tmp_path):
    x = clustered
    texts = [str(i) for i in range(len(x))]
    idx = EmbeddingIndex.build(x, texts, factory="IVF64,Flat")
    d = idx.recipe["search_defaults"]
    assert d["nprobe"] == idx.search_defaults["nprobe"] > 1
    assert d["recall_at_10"] >= 0.95 and d["reached"] and (d["target"], d["k"]) == (0.95, 10)
    assert d["queries"] == 200 and d["seed"] == 0
    tried = d["tried"]
    assert [t["nprobe"] for t in tried] == [2 ** i for i in range(len(tried))]
    assert all(t["recall_at_10"] < 0.95 for t in tried[:-1])  # the smallest that reaches it
    assert tried[-1] == {"nprobe": d["nprobe"], "recall_at_10": d["recall_at_10"]}

    q = x[:50] + 0.05
    ids = [[h.id for h in hs] for hs in idx.search(q, 10)]
    assert ids == [[h.id for h in hs] for hs in idx.search(q, 10, nprobe=d["nprobe"])]
    assert ids != [[h.id for h in hs] for hs in idx.search(q, 10, nprobe=1)]

    idx.save(tmp_path / "f")  # stored, and used again after a load
    back = EmbeddingIndex.load(tmp_path / "f")
    assert back.search_defaults == {"nprobe": d["nprobe"]}
    assert ids == [[h.id for h in hs] for hs in back.search(q, 10)]
    meta = json.loads((tmp_path / "f" / "index.json").read_text(encoding="utf-8"))
    assert meta["recipe"]["search_defaults"]["nprobe"] == d["nprobe"]


def test_hnsw_default_ef_search_and_flat_has_none(clustered):
    x = clustered[:1500]
    texts = [str(i) for i in range(len(x))]
    hnsw = EmbeddingIndex.build(x, texts, factory="HNSW4")
    d = hnsw.recipe["search_defaults"]
    assert set(hnsw.search_defaults) == {"ef_search"} and d["ef_search"] >= 16
    assert d["recall_at_10"] >= 0.95 or d["ef_search"] == 1024
    flat = EmbeddingIndex.build(x, texts)
    assert "search_defaults" not in flat.recipe and flat.search_defaults == {}
    assert "search_defaults" not in EmbeddingIndex.build(x, texts, factory="IVF8,Flat",
                                                        tune=False).recipe


def test_old_indexes_without_defaults_keep_faiss_defaults(clustered):
    x = clustered
    idx = EmbeddingIndex.build(x, [str(i) for i in range(len(x))], factory="IVF64,Flat",
                               tune=False)
    assert idx.search_defaults == {} and search_defaults_of({"search_defaults": None}) == {}
    q = x[:20]
    assert ([[h.id for h in hs] for hs in idx.search(q, 5)]
            == [[h.id for h in hs] for hs in idx.search(q, 5, nprobe=1)])


def test_probe_leaves_the_query_itself_out(clustered):
    """Exact search finds itself: recall 1.0 against itself, with the self-match dropped."""
    x = clustered[:500]
    from embedkit.retrieval.faiss_ops import build_faiss

    index, _ = build_faiss(x, "Flat", "l2", None)
    probe = RecallProbe.for_matrix(x, "l2", None, n_queries=30)
    for start in range(0, 500, 128):  # chunks merge into the same neighbours
        probe.observe(x[start:start + 128], start)
    assert probe.recall(index, "Flat") == 1.0
    truth = _exact(x, x[probe.query_labels], 11)
    # cosine neighbours of the same points differ from l2 ones; only the self-match is common
    assert all(hs[0].id == own for hs, own in zip(truth, probe.query_labels, strict=True))
    assert tune_defaults(index, x, "Flat", "l2", None) is None


def test_a_recall_plateau_below_the_target_takes_its_smallest_setting(clustered, monkeypatch):
    """PQ codes (or rescoring a few candidates) cap the recall: the default is the smallest
    nprobe at the best recall tried, not a scan of every list for nothing."""
    from embedkit.retrieval.faiss_ops import make_faiss_index, train_index

    index = make_faiss_index(24, "IVF16,Flat", "l2", None)
    train_index(index, clustered, "IVF16,Flat", None, 0)
    index.add(clustered)
    probe = RecallProbe(clustered[:5], np.arange(5), "l2", None)
    plateau = {1: 0.40, 2: 0.60, 4: 0.68, 8: 0.68, 16: 0.68}
    monkeypatch.setattr(RecallProbe, "recall",
                        lambda self, index, factory, nprobe: plateau[nprobe])
    chosen = probe.choose(index, "IVF16,Flat", target=0.95)
    assert (chosen["nprobe"], chosen["recall_at_10"], chosen["reached"]) == (4, 0.68, False)
    assert [t["nprobe"] for t in chosen["tried"]] == [1, 2, 4, 8, 16]
