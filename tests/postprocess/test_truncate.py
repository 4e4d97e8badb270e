"""``truncate:k=K`` (issue 20 item 4): the first K dimensions as a registered linear step,
re-normalised unless ``norm=0``, folded into an AffineMap and checked against d."""

from __future__ import annotations

import numpy as np
import pytest

from embedkit.errors import ConfigError
from embedkit.postprocess import AffineMap, Truncate, describe_post, parse_post, pipeline_learns
from embedkit.postprocess.checks import check_post_chain


def test_truncate_step_spec_and_values():
    X = np.random.default_rng(0).normal(size=(20, 6))
    p = parse_post("truncate:k=3")
    assert describe_post(p) == "truncate:k=3" and not pipeline_learns(p)
    out = p.fit(X).transform(X)
    np.testing.assert_allclose(out, X[:, :3] / np.linalg.norm(X[:, :3], axis=1, keepdims=True))
    raw = parse_post("truncate:k=3,norm=0").fit(X)
    assert describe_post(raw) == "truncate:k=3,norm=0"
    np.testing.assert_array_equal(raw.transform(X), X[:, :3])


def test_truncate_folds_into_an_affine_map():
    X = np.random.default_rng(1).normal(size=(40, 8))
    p = parse_post("whiten:k=6,truncate:k=4").fit(X)
    m = AffineMap.from_pipeline(p)
    assert (m.k, m.normalize) == (4, True)
    np.testing.assert_allclose(m.apply(X), p.transform(X), atol=1e-12)
    with pytest.raises(ConfigError, match="only allowed as the last step"):
        AffineMap.from_pipeline(parse_post("truncate:k=4,pca:k=2").fit(X))
    assert not AffineMap.from_pipeline(parse_post("truncate:k=4,norm=0").fit(X)).normalize


def test_truncate_checked_against_d():
    assert check_post_chain(parse_post("truncate:k=16"), 32) == 16
    with pytest.raises(ConfigError, match="keeps k=64 dimensions, more than its input has"):
        check_post_chain(parse_post("truncate:k=64"), 32)
    with pytest.raises(ConfigError, match="k=9 is more than the input's 8"):
        Truncate(9).fit(np.ones((2, 8)))
