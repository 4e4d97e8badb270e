"""FAISS plumbing: per-call search parameters through wrappers, tunables, threads."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from embedkit.errors import ConfigError
from embedkit.postprocess import AffineMap
from embedkit.retrieval.faiss_ops import (
    build_faiss,
    faiss_thread_count,
    faiss_threads,
    ivf_nlist,
    search_parameters,
    tunable_parameters,
)


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).standard_normal((1200, 16)).astype(np.float32)


def _exact(x, q, k=10):
    index, _ = build_faiss(x, "Flat", "cosine", None)
    return index.search(q, k)[1]


@pytest.mark.parametrize("factory", ["IVF8,Flat", "IVF8_HNSW8,Flat", "IVF8,Flat,RFlat"])
def test_nprobe_per_call_sees_through_wrappers(x, factory):
    index, _ = build_faiss(x, factory, "cosine", None)
    assert "nprobe" in tunable_parameters(index) and ivf_nlist(index) == 8
    params = search_parameters(index, factory, nprobe=8, ef_search=None)
    labels = index.search(x[:30], 10, params=params)[1]
    np.testing.assert_array_equal(labels, _exact(x, x[:30]))  # every list probed: exact
    assert faiss.extract_index_ivf(index).nprobe == 1  # the index itself is unchanged


def test_pca_prefix_and_baked_map(x):
    amap = AffineMap(np.eye(16)[:, :12], np.zeros(16))
    index, _ = build_faiss(x, "PCA8,IVF8,Flat", "cosine", amap)
    assert type(search_parameters(index, "PCA8,IVF8,Flat", nprobe=2,
                                  ef_search=None)).__name__ == "SearchParametersPreTransform"


def test_ef_search_hnsw_and_quantizer(x):
    hnsw, _ = build_faiss(x, "HNSW8", "cosine", None)
    assert tunable_parameters(hnsw) == {"efSearch"}
    wide = hnsw.search(x[:30], 10, params=search_parameters(hnsw, "HNSW8", nprobe=None,
                                                            ef_search=256))[1]
    assert (wide == _exact(x, x[:30])).mean() >= 0.95
    ivf, _ = build_faiss(x, "IVF8_HNSW8,Flat", "cosine", None)
    assert "quantizer_efSearch" in tunable_parameters(ivf)
    assert search_parameters(ivf, "IVF8_HNSW8,Flat", nprobe=None, ef_search=32) is not None


def test_settings_an_index_does_not_take(x):
    flat, _ = build_faiss(x[:50], "Flat", "cosine", None)
    assert search_parameters(flat, "Flat", nprobe=None, ef_search=None) is None
    with pytest.raises(ConfigError, match="IVF indexes only") as err:
        search_parameters(flat, "Flat", nprobe=2, ef_search=None)
    assert err.value.param == "nprobe"
    with pytest.raises(ConfigError, match="HNSW indexes only"):
        search_parameters(flat, "Flat", nprobe=None, ef_search=16)
    with pytest.raises(ConfigError, match=">= 1"):
        search_parameters(flat, "Flat", nprobe=0, ef_search=None)


def test_thread_count_is_restored():
    before = faiss_threads()
    with faiss_thread_count(1) as n:
        assert n == faiss_threads() == 1
    assert faiss_threads() == before
    with faiss_thread_count(None) as n:
        assert n == before
    with pytest.raises(ConfigError, match="threads"), faiss_thread_count(0):
        pass


def test_training_seed_reaches_every_kmeans(x):
    """The seed recorded for an index is the one its k-means (IVF and PQ) trained with."""
    a, _ = build_faiss(x, "IVF8,PQ4x4", "l2", None, seed=3)
    b, _ = build_faiss(x, "IVF8,PQ4x4", "l2", None, seed=3)
    c, _ = build_faiss(x, "IVF8,PQ4x4", "l2", None, seed=4)
    ivf = faiss.downcast_index(faiss.extract_index_ivf(a))
    assert (ivf.cp.seed, ivf.pq.cp.seed) == (3, 3)

    def centroids(index):
        quantizer = faiss.extract_index_ivf(index).quantizer
        return quantizer.reconstruct_n(0, quantizer.ntotal)

    np.testing.assert_array_equal(centroids(a), centroids(b))
    assert not np.array_equal(centroids(a), centroids(c))
