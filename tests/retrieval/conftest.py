"""The retrieval tests run their tiny models and indexes on one thread (their fixtures are in
tests/fixtures/retrieval.py)."""

from __future__ import annotations

from tests.fixtures.threads import one_thread  # noqa: F401 (autouse in this folder)
