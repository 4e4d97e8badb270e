"""AffineMap: the one representation of a fitted map; folding a pipeline; FAISS transforms."""

from __future__ import annotations

import numpy as np
import pytest

from embedkit.errors import ConfigError
from embedkit.postprocess import AffineMap, parse_post


def _data(n=200, d=12, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d) * 4


@pytest.mark.parametrize(
    "spec",
    [
        "whiten:k=6",
        "whiten:beta=0.5,gamma=0.5,k=8,pca:k=4",
        "pca:k=10,whiten:beta=1,gamma=1,k=5",
        "whiten:beta=0.3,gamma=1,whiten:beta=0.7,gamma=0.5,k=6",
        "whiten,rp:k=6,seed=1",
        "rp:k=9,seed=2,kind=sparse,whiten:k=4",
        "pca:k=7,whiten=1,whiten:beta=0.2,gamma=0.3,k=5,norm",
    ],
)
def test_from_pipeline_matches_pipeline(spec):
    X = _data()
    p = parse_post(spec).fit(X)
    m = AffineMap.from_pipeline(p)
    assert m.normalize == spec.endswith("norm")
    Y = (X + m.bias) @ m.kernel
    if m.normalize:
        Y = Y / np.linalg.norm(Y, axis=1, keepdims=True)
    np.testing.assert_allclose(Y, p.transform(X), rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(m.apply(X), p.transform(X), rtol=1e-8, atol=1e-8)
    assert (m.d, m.k) == (12, p.transform(X[:1]).shape[1]) and m.bias.shape == (12,)


def test_single_step_and_errors():
    X = _data()
    p = parse_post("whiten:k=4").fit(X)
    m = AffineMap.from_pipeline(p)
    np.testing.assert_array_equal(m.kernel, p[0].kernel_)
    np.testing.assert_array_equal(m.bias, p[0].bias_)
    assert m.normalize is False
    assert AffineMap.from_pipeline(p[0]) == m  # one estimator works too
    with pytest.raises(ConfigError, match="only allowed as the last step"):
        AffineMap.from_pipeline(parse_post("whiten,norm,pca:k=3").fit(X))
    with pytest.raises(ConfigError, match="not fitted"):
        AffineMap.from_pipeline(parse_post("whiten"))
    assert AffineMap.from_pipeline(parse_post("norm").fit(X)) == AffineMap.identity(12, True)


def test_frozen_float64_copies():
    k = np.eye(3, dtype=np.float32)[:, :2]
    m = AffineMap(k, np.zeros(3, np.float32))
    assert m.kernel.dtype == np.float64 and not m.kernel.flags.writeable
    k[0, 0] = 5.0
    assert m.kernel[0, 0] == 1.0  # the caller's array was copied
    with pytest.raises(AttributeError):
        m.normalize = True  # type: ignore[misc]
    k32, b32 = m.float32()
    assert k32.dtype == b32.dtype == np.float32 and k32.flags.c_contiguous
    with pytest.raises(ConfigError, match="NaN"):
        AffineMap(np.full((2, 2), np.nan), np.zeros(2))
    with pytest.raises(ConfigError, match=r"\(n, 3\)"):
        m.apply(np.zeros((1, 4)))


def test_to_faiss_equals_apply():
    faiss = pytest.importorskip("faiss")
    X = _data()
    for normalize in (False, True):
        m = AffineMap.from_pipeline(parse_post("whiten:k=5").fit(X)).with_normalize(normalize)
        chain = m.to_faiss()
        index = faiss.IndexFlatL2(m.k)
        pre = faiss.IndexPreTransform(index)
        for vt in reversed(chain):
            pre.prepend_transform(vt)
        x = X[:20].astype(np.float32)
        y = x
        for vt in chain:
            y = vt.apply(y)
        assert len(chain) == (2 if normalize else 1)
        np.testing.assert_allclose(y, m.apply(X[:20]), rtol=1e-4, atol=1e-4)
        pre.add(x)  # the flat index stores the transformed vectors
        np.testing.assert_allclose(index.reconstruct_n(0, 20), y, rtol=1e-6, atol=1e-6)
