"""FAISS plumbing: per-call search parameters through wrappers, tunables, threads."""

from __future__ import annotations

import shutil

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
    read_faiss_index,
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


def _on_disk_index(x, folder):
    """An IVF4 index with its lists in ``folder/lists.ivfdata``, written to ``folder/ix``."""
    index, _ = build_faiss(x[:400], "IVF4,Flat", "l2", None)
    ivf = faiss.extract_index_ivf(index)
    lists = faiss.OnDiskInvertedLists(ivf.nlist, ivf.code_size, str(folder / "lists.ivfdata"))
    lists.merge_from_1(ivf.invlists)
    ivf.replace_invlists(lists, True)
    lists.this.disown()
    faiss.write_index(index, str(folder / "ix"))
    return index


def test_on_disk_lists_are_mapped_from_the_file_given(x, tmp_path):
    """The lists FAISS stored the path of are never mapped: a moved folder reads its own."""
    (tmp_path / "a").mkdir()
    built = _on_disk_index(x, tmp_path / "a")
    want = built.search(x[:5], 3)
    (tmp_path / "a").rename(tmp_path / "b")
    index = read_faiss_index(tmp_path / "b" / "ix", tmp_path / "b" / "lists.ivfdata")
    lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists)
    assert lists.filename == str(tmp_path / "b" / "lists.ivfdata")
    got = index.search(x[:5], 3)
    np.testing.assert_array_equal(got[1], want[1])
    with pytest.raises(ConfigError, match=f"{tmp_path / 'a' / 'lists.ivfdata'}"):
        read_faiss_index(tmp_path / "b" / "ix")  # without the file: refused, naming the old one
    (tmp_path / "a").mkdir()
    shutil.copyfile(tmp_path / "b" / "lists.ivfdata", tmp_path / "a" / "lists.ivfdata")
    with pytest.raises(ConfigError, match="inverted lists are on disk in .*a/lists.ivfdata"):
        read_faiss_index(tmp_path / "b" / "ix")  # never searched from a file it was not given
    (tmp_path / "short").write_bytes(b"")
    with pytest.raises(ConfigError, match="short: 0 bytes but the index's lists take"):
        read_faiss_index(tmp_path / "b" / "ix", tmp_path / "short")
    in_memory, _ = build_faiss(x[:400], "IVF4,Flat", "l2", None)
    faiss.write_index(in_memory, str(tmp_path / "mem"))
    with pytest.raises(ConfigError, match=f"^{tmp_path / 'mem'}: "):  # lists in memory
        read_faiss_index(tmp_path / "mem", tmp_path / "b" / "lists.ivfdata")
