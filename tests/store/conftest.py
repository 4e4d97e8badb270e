"""The store tests run their tiny models on one thread (fixtures: tests/fixtures/retrieval.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _rx_threads():
    # Tiny models and indexes: extra threads only spin on a busy machine.
    import faiss
    import torch

    before = (faiss.omp_get_max_threads(), torch.get_num_threads())
    faiss.omp_set_num_threads(1)
    torch.set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before[0])
    torch.set_num_threads(before[1])
