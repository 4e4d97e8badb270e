"""Quantised indexes (SQ8, binary) with rescoring against a brute-force numpy search."""

from __future__ import annotations

import numpy as np
import pytest

from embedkit.errors import ConfigError
from embedkit.retrieval.index import EmbeddingIndex
from embedkit.retrieval.quantized import (
    RescoreStore,
    binary_factory,
    quantized_factory,
)
from embedkit.retrieval.shards import build_quantized


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((600, 32)).astype("float32")
    q = rng.standard_normal((15, 32)).astype("float32")
    return x, q


def _unit(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def _brute_binary_rescore(x, q, k, factor, centre=False):
    """numpy: Hamming top (factor k) on the sign bits of the unit vectors centred on their mean
    (the training sample is all rows here), then exact cosine on the floats; None for a query
    whose candidates are ambiguous (a Hamming tie across the cut-off)."""
    mu = _unit(x).mean(axis=0) if centre else 0.0
    xb, qb = _unit(x) - mu > 0, _unit(q) - mu > 0
    ham = (qb[:, None, :] != xb[None, :, :]).sum(axis=2)
    out = []
    for i in range(q.shape[0]):
        order = np.argsort(ham[i], kind="stable")
        cand = order[: k * factor]
        if ham[i][order[k * factor - 1]] == ham[i][order[k * factor]]:
            out.append(None)
            continue
        cos = _unit(x[cand]) @ _unit(q[i : i + 1])[0]
        out.append(cand[np.argsort(-cos, kind="stable")[:k]].tolist())
    return out


def test_binary_rescore_matches_numpy():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((300, 256)).astype("float32")
    q = rng.standard_normal((40, 256)).astype("float32")
    k, factor = 5, 4
    index = EmbeddingIndex.build(x, [str(i) for i in range(len(x))], codes="binary",
                                 rescore=factor)
    got = [[h.id for h in row] for row in index.search(q, k)]
    want = _brute_binary_rescore(x, q, k, factor)
    checked = [(g, w) for g, w in zip(got, want, strict=True) if w is not None]
    assert len(checked) >= 8
    assert [g for g, _ in checked] == [w for _, w in checked]
    assert index.factory == "BFlat"
    # the rescoring changes the answer: Hamming order alone is not the cosine order
    plain = EmbeddingIndex.build(x, [str(i) for i in range(len(x))], codes="binary", rescore=0)
    assert [[h.id for h in row] for row in plain.search(q, k)] != got


def test_sq8_matches_numpy_with_and_without_rescoring(data):
    import faiss

    x, q = data
    k = 10
    # SQ8 alone: numpy over FAISS's own decoded codes (the same search, exhaustive)
    plain = EmbeddingIndex.build(x, [str(i) for i in range(len(x))], codes="int8", rescore=0)
    inner = faiss.downcast_index(plain.faiss_index.base.index)
    decoded = inner.sa_decode(inner.sa_encode(_unit(x).astype("float32")))
    sims = _unit(q) @ decoded.T
    want = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    hits = plain.search(q, k)
    # same ids (as sets: near-equal scores may swap neighbours), same scores
    assert [sorted(h.id for h in row) for row in hits] == [sorted(w) for w in want.tolist()]
    np.testing.assert_allclose(np.sort([[h.score for h in row] for row in hits], axis=1),
                               np.sort(np.take_along_axis(sims, want, axis=1), axis=1),
                               atol=2e-3)  # SQ8 search decodes in its own arithmetic
    # rescored 4x: exact cosine among the SQ8 top 40 == exact top 10 here
    rescored = EmbeddingIndex.build(x, [str(i) for i in range(len(x))], codes="int8")
    exact = np.argsort(-(_unit(q) @ _unit(x).T), axis=1, kind="stable")[:, :k]
    assert [[h.id for h in row] for row in rescored.search(q, k)] == exact.tolist()
    scores = [[h.score for h in row] for row in rescored.search(q, k)]
    np.testing.assert_allclose(scores, np.sort(_unit(q) @ _unit(x).T, axis=1)[:, ::-1][:, :k],
                               rtol=1e-5)


def test_rescoring_reads_only_candidate_rows(data, monkeypatch):
    x, q = data
    index = build_quantized(x, "Flat", "cosine", None, vectors="binary", rescore=4)
    store = index.store
    assert store is not None and isinstance(store.mapped(), np.memmap)
    seen = []
    real = RescoreStore.take

    def spy(self, ids):
        seen.append(len(ids))
        return real(self, ids)

    monkeypatch.setattr(RescoreStore, "take", spy)
    index.search_with(q[:2], 3)
    assert seen and max(seen) <= 2 * 3 * 4 < len(x)


def test_int8_store_rescoring_and_round_trip(data, tmp_path):
    x, q = data
    index = EmbeddingIndex.build(x, [str(i) for i in range(len(x))], factory="HNSW16",
                                 codes="binary", rescore_with="int8", rescore=8)
    before = [[h.id for h in row] for row in index.search(q, 5)]
    index.save(tmp_path / "ix")
    loaded = EmbeddingIndex.load(tmp_path / "ix")
    assert [[h.id for h in row] for row in loaded.search(q, 5)] == before
    assert loaded.recipe["vectors"] == {"vectors": "binary", "rescore": 8,
                                        "rescore_with": "int8", "dim": 32, "centre": False}
    assert sorted(loaded.extra_files) == ["codes.faissb", "rescore.i8", "rescore.scale.npy"]
    assert (tmp_path / "ix" / "rescore.i8").stat().st_size == 600 * 32
    assert loaded.memory_bytes() == len(loaded.faiss_index.files()["codes.faissb"])
    with pytest.raises(ConfigError, match="quantised"):
        loaded.add(q[:1], ["new"])


def test_changed_store_is_refused(data, tmp_path):
    x, _ = data
    EmbeddingIndex.build(x, [str(i) for i in range(len(x))], codes="binary").save(tmp_path / "b")
    with open(tmp_path / "b" / "rescore.f32", "r+b") as fh:
        fh.write(b"\0\0\0\0")
    with pytest.raises(ConfigError, match="rescore.f32: changed"):
        EmbeddingIndex.load(tmp_path / "b")


def test_factories():
    assert quantized_factory("IVF64,Flat", "binary") == "BIVF64"
    assert quantized_factory("Flat", "int8") == "SQ8"
    assert binary_factory("HNSW32") == "BHNSW32"
    with pytest.raises(ConfigError, match="no binary form"):
        binary_factory("IVF64,PQ8")
    with pytest.raises(ConfigError, match="rescore must be >= 0"):
        build_quantized(np.ones((4, 8), "float32"), "Flat", "cosine", None, vectors="binary",
                        rescore=-1)


def test_folder_build_binary_with_post_searches_with_its_recipe(rx_model_dir, rx_texts,
                                                                tmp_path):
    from embedkit.encoders import EncoderConfig
    from embedkit.retrieval import folder
    from embedkit.retrieval.budget import IndexCodes

    cfg = EncoderConfig(str(rx_model_dir), cache=False)
    out = tmp_path / "idx"
    index = folder.build_index(out, rx_texts, cfg, pooling="cls", post="pca:k=16",
                               index_codes=IndexCodes("binary", 4, "int8"))
    assert index.factory == "BFlat"
    loaded = folder.IndexSearcher(out, cfg)
    assert loaded.recipe.extra["vectors"] == {"vectors": "binary", "rescore": 4,
                                              "rescore_with": "int8", "dim": 16, "centre": False}
    assert loaded.recipe.post == "pca:k=16"
    hits = loaded.search(rx_texts[3], k=3)[0]["hits"]
    assert hits[0]["text"] == rx_texts[3]
    with pytest.raises(ConfigError, match="no int8 \\(SQ8\\) form"):
        folder.build_index(tmp_path / "x", rx_texts, cfg, factory="IVF4,PQ4",
                           index_codes=IndexCodes("int8"))


def test_centred_binary_matches_numpy_and_round_trips(tmp_path):
    """Sign bits of the vectors minus the training sample's mean (the mean is saved in the
    folder and read back)."""
    from embedkit.retrieval.quantized import make_quantized
    from embedkit.retrieval.shards import ArraySource, fill_index

    rng = np.random.default_rng(5)
    x = (rng.standard_normal((300, 64)) + 3.0).astype("float32")
    q = (rng.standard_normal((40, 64)) + 3.0).astype("float32")
    q_index = make_quantized(64, "Flat", "cosine", None, vectors="binary", rescore=4,
                             centre=True)
    fill_index(q_index, ArraySource(x, [str(i) for i in range(300)]), "Flat", "cosine", None)
    np.testing.assert_allclose(q_index.centre, _unit(x).mean(axis=0), rtol=1e-5, atol=1e-6)
    index = EmbeddingIndex(q_index, [str(i) for i in range(300)], [None] * 300,
                           factory="BFlat", metric="cosine", dim_in=64, dim=64, recipe={},
                           build_seconds=0.0, created="",
                           extra={"quantized": q_index.settings.to_dict()})
    got = [[h.id for h in row] for row in index.search(q, 5)]
    want = _brute_binary_rescore(x, q, 5, 4, centre=True)
    checked = [(g, w) for g, w in zip(got, want, strict=True) if w is not None]
    assert len(checked) >= 5 and [g for g, _ in checked] == [w for _, w in checked]
    index.save(tmp_path / "ix")
    loaded = EmbeddingIndex.load(tmp_path / "ix")
    assert "binary.centre.npy" in loaded.extra_files
    assert [[h.id for h in row] for row in loaded.search(q, 5)] == got
