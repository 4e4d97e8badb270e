"""The one integer / range validator (``errors.check_int``) and its users."""

from __future__ import annotations

import numpy as np
import pytest

from embedkit.errors import ConfigError, check_int


@pytest.mark.parametrize("value, kw, message", [
    (0, {}, "k must be an integer >= 1; got 0"),
    (True, {}, "k must be an integer >= 1; got True"),
    (2.0, {}, "k must be an integer >= 1; got 2.0"),
    ("3", {"minimum": 0}, "k must be an integer >= 0; got '3'"),
    (9, {"minimum": 1, "maximum": 8}, "k must be an integer in [1, 8]; got 9"),
    (9, {"minimum": None, "maximum": 8}, "k must be an integer <= 8; got 9"),
])
def test_refused_with_the_parameter(value, kw, message):
    with pytest.raises(ConfigError) as e:
        check_int(value, "k", **kw)
    assert str(e.value) == message and e.value.param == "k"


def test_accepted_values_and_param():
    assert check_int(np.int64(5), "k") == 5 and type(check_int(np.int64(5), "k")) is int
    assert check_int(0, "seed", minimum=0) == 0 and check_int(8, "k", 1, 8) == 8
    with pytest.raises(ConfigError) as e:
        check_int(0, "each entry of dims", param="dims")
    assert e.value.param == "dims"


def test_the_validators_are_this_one():
    """diagnostics, CSLS and FAISS settings refuse the same values with the same line."""
    from embedkit.diagnostics import k_occurrence
    from embedkit.retrieval.faiss_ops import faiss_thread_count
    from embedkit.retrieval.hubness import CSLSReranker

    x = np.eye(4)
    for call, line in [
        (lambda: k_occurrence(x, k=0), "k must be an integer >= 1; got 0"),
        (lambda: CSLSReranker(np.zeros(3), k_penalty=0),
         "k_penalty must be an integer >= 1; got 0"),
        (lambda: faiss_thread_count(0).__enter__(), "threads must be an integer >= 1; got 0"),
        # before: int(1.5) silently ran FAISS with 1 thread
        (lambda: faiss_thread_count(1.5).__enter__(), "threads must be an integer >= 1; got 1.5"),
    ]:
        with pytest.raises(ConfigError) as e:
            call()
        assert str(e.value) == line
