import numpy as np
import pytest

from embedkit.retrieval.costs import approximation_costs


@pytest.fixture(autouse=True)
def _one_thread():
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def test_approximation_costs_rows():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1000, 16)).astype(np.float32)
    q = rng.standard_normal((40, 16)).astype(np.float32)
    transform = (rng.standard_normal((16, 8)).astype(np.float32), np.zeros(16, np.float32))
    rows = approximation_costs(
        x,
        q,
        ["IVF8,Flat", "HNSW8"],
        nprobes=(1, 8, 32),
        ef_searches=(16, 64),
        transform=transform,
        single_queries=20,
    )
    assert [(r["factory"], r["param"]) for r in rows] == [
        ("Flat", ""),
        ("IVF8,Flat", "nprobe=1"),
        ("IVF8,Flat", "nprobe=8"),
        ("HNSW8", "efSearch=16"),
        ("HNSW8", "efSearch=64"),
    ]  # nprobe=32 clamped to nlist=8 and deduplicated
    assert rows[0]["recall@10"] == 1.0
    assert rows[2]["recall@10"] == pytest.approx(1.0)  # all lists probed
    assert 0 < rows[1]["recall@10"] <= 1.0
    for r in rows:
        assert r["qps_batch"] > 0 and r["qps_single"] > 0 and r["build_seconds"] >= 0
        assert r["disk_bytes"] == r["memory_bytes"] > 0 and r["ntotal"] == 1000
