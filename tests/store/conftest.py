"""The store tests run their tiny models on one thread (fixtures: tests/fixtures/retrieval.py)."""

from __future__ import annotations

from tests.fixtures.threads import one_thread  # noqa: F401 (autouse in this folder)
