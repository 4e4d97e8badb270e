"""PCA (vs sklearn), random projection and L2 normalisation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.decomposition import PCA as SkPCA
from sklearn.random_projection import johnson_lindenstrauss_min_dim

from embedkit.errors import ConfigError
from embedkit.postprocess import PCA, Normalize, RandomProjection, Whitening


def _data(n=120, d=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + 3.0


@pytest.mark.parametrize("k", [3, 10])
def test_pca_matches_sklearn(k):
    X = _data()
    ours = PCA(n_components=k).fit(X)
    ref = SkPCA(n_components=k, svd_solver="full").fit(X)
    np.testing.assert_allclose(ours.transform(X), ref.transform(X), atol=1e-5)
    np.testing.assert_allclose(ours.components_, ref.components_, atol=1e-8)
    np.testing.assert_allclose(ours.mean_, ref.mean_, atol=1e-12)
    # 1/N versus sklearn's 1/(N-1) variance
    np.testing.assert_allclose(ours.eigenvalues_[:k] * 120 / 119, ref.explained_variance_)


def test_pca_whiten_differs_from_sklearn_by_population_scale():
    X = _data()
    ours = PCA(n_components=4, whiten=True).fit_transform(X)
    ref = SkPCA(n_components=4, whiten=True, svd_solver="full").fit_transform(X)
    np.testing.assert_allclose(ours, ref * np.sqrt(120 / 119), atol=1e-8)
    np.testing.assert_allclose(ours.T @ ours / 120, np.eye(4), atol=1e-9)


def test_pca_is_the_beta1_gamma0_whitening_with_partial_fit():
    X = _data()
    p = PCA(n_components=5)
    for chunk in np.array_split(X, 4):
        p.partial_fit(chunk)
    w = Whitening(beta=1, gamma=0, n_components=5).fit(X)
    np.testing.assert_allclose(p.kernel_, w.kernel_, atol=1e-10)
    np.testing.assert_allclose(p.bias_, -X.mean(0))
    assert PCA(3, whiten=True).get_params() == {"n_components": 3, "whiten": True, "eps": 1e-6}
    assert clone(PCA(3)).n_components == 3
    with pytest.raises(ConfigError, match="n_components=11"):
        PCA(11).fit(X)


def test_random_projection_is_deterministic_with_a_seed():
    X = _data()
    a = RandomProjection(n_components=4, random_state=42).fit(X)
    b = RandomProjection(n_components=4, random_state=42).fit(X[:3])
    c = RandomProjection(n_components=4, random_state=43).fit(X)
    assert a.kernel_.shape == (10, 4) and a.components_.shape == (4, 10)
    np.testing.assert_array_equal(a.kernel_, b.kernel_)
    assert not np.allclose(a.kernel_, c.kernel_)
    np.testing.assert_array_equal(a.bias_, np.zeros(10))
    Y = a.transform(X)
    assert Y.shape == (120, 4)
    np.testing.assert_allclose(Y, X @ a.kernel_)
    assert a.transform(X.astype(np.float32)).dtype == np.float32


def test_sparse_random_projection():
    X = _data(d=50)
    rp = RandomProjection(n_components=8, kind="sparse", random_state=0).fit(X)
    assert isinstance(rp.kernel_, np.ndarray) and rp.kernel_.shape == (50, 8)
    values = np.unique(np.abs(rp.kernel_))
    assert len(values) == 2 and values[0] == 0  # entries are 0 or +-s/sqrt(k)
    np.testing.assert_allclose(rp.transform(X), X @ rp.kernel_)
    np.testing.assert_array_equal(
        RandomProjection(8, kind="sparse", random_state=0).fit(X).kernel_, rp.kernel_
    )


def test_random_projection_auto():
    X = np.random.default_rng(0).normal(size=(10, 128))
    rp = RandomProjection(n_components="auto", eps=0.5, random_state=0).fit(X)
    k = johnson_lindenstrauss_min_dim(10, eps=0.5)
    assert rp.n_components_ == k == rp.kernel_.shape[1] and k < 128
    with pytest.raises(ConfigError, match=r"auto.*N=10.*d=16.*pass an integer"):
        RandomProjection(eps=0.5).fit(X[:, :16])
    with pytest.raises(ConfigError, match="kind"):
        RandomProjection(4, kind="dense").fit(X)
    with pytest.raises(ConfigError, match="n_components"):
        RandomProjection(0).fit(X)


def test_normalize():
    X = np.array([[3.0, 4.0], [0.0, 0.0], [-1.0, 0.0]])
    n = Normalize()
    Y = n.transform(X)  # stateless: no fit needed
    np.testing.assert_allclose(Y, [[0.6, 0.8], [0.0, 0.0], [-1.0, 0.0]])
    assert n.fit(X) is n and n.get_params() == {}
    assert n.transform(X.astype(np.float32)).dtype == np.float32
    np.testing.assert_array_equal(X, [[3.0, 4.0], [0.0, 0.0], [-1.0, 0.0]])  # input untouched
