"""FittedPost: one value for a fitted map and where it came from, whichever way it was made
(a post value prepared for an index, a fitted chain, a map, a saved file), with the map's
sha256 as files and mteb model names have always recorded it."""

from __future__ import annotations

import numpy as np
import pytest

from embedkit.errors import ConfigError
from embedkit.postprocess import AffineMap, CompatibilityWarning, parse_post, save_transform
from embedkit.provenance import sha256_file
from embedkit.store.fitted import FittedPost, check_fitted_on, fitted_post, prepare_post


class _Enc:
    name = path = identity = "sha256:demo"

    def describe(self):
        return {"identity": self.identity}


@pytest.fixture
def x():
    return np.random.default_rng(0).standard_normal((40, 6))


def test_sha256_is_the_maps_digest_as_files_store_it():
    # the digest mteb model names carry (post_sha256=...): pinned, so names stay the same
    post = FittedPost("affine:d=2,k=2", AffineMap.identity(2))
    assert post.sha256 == AffineMap.identity(2).sha256()
    assert post.sha256.startswith("d3ed8f490b96") and len(post.sha256) == 64
    assert AffineMap.identity(2, normalize=True).sha256() != post.sha256
    # float32 is what is hashed: a float64 difference below float32 precision is the same map
    k = np.eye(2) * (1 + 1e-12)
    assert AffineMap(k, np.zeros(2)).sha256() == post.sha256


def test_every_route_gives_the_same_fitted_post(x, tmp_path):
    pipe = parse_post("whiten:k=3").fit(x)
    from_chain = fitted_post(pipe)
    path = tmp_path / "w.safetensors"
    save_transform(path, from_chain.map, {"model": _Enc.identity, "pooling": "cls"})
    from_path = fitted_post(str(path))
    prepared = prepare_post(str(path), encoder=_Enc(), pooling="cls", dim=6)
    fitted_here = prepare_post("whiten:k=3", encoder=_Enc(), pooling="cls", dim=6,
                               fit_data=lambda: (x, {"on": "x", "n_sentences": 40}))
    assert {p.sha256 for p in (from_chain, from_path, prepared, fitted_here)} == {
        from_chain.sha256}
    assert (from_chain.spec, from_path.spec) == ("whiten:beta=1,gamma=1,k=3", "file:w.safetensors")
    assert prepared.spec == f"file:{path.resolve()}" and fitted_here.fit["on"] == "x"
    digest = sha256_file(path)
    assert from_path.sources == ({"path": str(path), "sha256": digest},)
    assert prepared.sources == ({"path": str(path.resolve()), "sha256": digest},)
    assert fitted_post(AffineMap.identity(6)).spec == "affine:d=6,k=6"
    assert fitted_post(None) is None


def test_check_fitted_on_checks_the_vectors_settings():
    meta = {"model": _Enc.identity, "pooling": "cls", "d": 6, "max_length": 64,
            "fit_vectors": {"normalized": False}}
    kw = dict(encoder=_Enc(), pooling="cls", dim=6)
    check_fitted_on(meta, "w.npz", force=False, vectors={"max_length": 64, "normalized": False},
                    **kw)
    with pytest.raises(ConfigError, match=r"^w\.npz: .*max_length=64 but .*max_length=32; and "
                                          r"for raw vectors but .*L2-normalised vectors"):
        check_fitted_on(meta, "w.npz", force=False,
                        vectors={"max_length": 32, "normalized": True}, **kw)
    with pytest.warns(CompatibilityWarning, match="max_length=32"):
        check_fitted_on(meta, "w.npz", force=True, vectors={"max_length": 32}, **kw)
    check_fitted_on(meta, "w.npz", force=False, **kw)  # without vectors: not checked


def test_a_saved_quantised_chain_is_refused_not_cut_to_its_map(tmp_path):
    """An mteb model or an index applies a linear map; a file ending in int8 would lose its
    quantiser silently: it is refused in one line naming the file."""
    from embedkit.postprocess.quantize import save_quantized

    x = np.random.default_rng(0).standard_normal((50, 6))
    path = tmp_path / "w8.safetensors"
    save_quantized(path, parse_post("whiten:k=4,int8").fit(x), {"model": "m"})
    with pytest.raises(ConfigError, match=r"w8.safetensors ends in a quantiser \(int8\)"):
        fitted_post(path)
