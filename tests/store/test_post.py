"""The post-processor baked into an index: prepare_post and same_post."""

from __future__ import annotations

import numpy as np
import pytest

from embedkit.errors import ConfigError
from embedkit.postprocess import AffineMap, save_transform
from embedkit.store.fitted import prepare_post, same_post


def test_prepare_post_file_checks(rx_encoder, rx_texts, tmp_path):
    x = rx_encoder.encode(rx_texts, "cls")
    k = np.eye(32)[:, :8]
    by_name = tmp_path / "name.npz"
    save_transform(by_name, AffineMap(k, np.zeros(32)), {"model": rx_encoder.name,
                                                        "pooling": "cls"})
    post = prepare_post(str(by_name), encoder=rx_encoder, pooling="cls", dim=32)
    assert post.spec == f"file:{by_name.resolve()}" and post.map.kernel.shape == (32, 8)
    assert post.sources[0]["path"] == str(by_name.resolve())
    np.testing.assert_allclose(post.map.apply(x), x[:, :8], atol=1e-6)

    other = tmp_path / "other.npz"
    save_transform(other, AffineMap(k, np.zeros(32)), {"model": "sha256:abc", "pooling": "cls"})
    with pytest.raises(ConfigError, match="model 'sha256:abc'"):
        prepare_post(str(other), encoder=rx_encoder, pooling="cls", dim=32)
    with pytest.raises(ConfigError, match="dimension|d=32"):
        prepare_post(str(by_name), encoder=rx_encoder, pooling="cls", dim=16)
    # file: steps of a chain are checked too
    with pytest.raises(ConfigError, match="sha256:abc"):
        prepare_post(f"file:{other},norm", encoder=rx_encoder, pooling="cls", dim=32)
    with pytest.raises(ConfigError, match="metric='cosine'") as err:
        prepare_post("pca:k=4,norm", encoder=rx_encoder, pooling="cls", dim=32,
                     fit_data=lambda: (x, {"on": "t"}), metric="ip")
    assert err.value.param == "metric"
    assert prepare_post("none", encoder=rx_encoder, pooling="cls", dim=32) is None
    normed = tmp_path / "normed.safetensors"
    save_transform(normed, AffineMap(k, np.zeros(32), normalize=True),
                   {"model": rx_encoder.identity})
    assert prepare_post(str(normed), encoder=rx_encoder, pooling="cls", dim=32).map.normalize
    with pytest.raises(ConfigError, match="normalize"):
        prepare_post(str(normed), encoder=rx_encoder, pooling="cls", dim=32, metric="l2")


def test_prepare_post_needs_two_sentences(rx_encoder, rx_texts):
    x = rx_encoder.encode(rx_texts[:1], "cls")
    with pytest.raises(ConfigError, match="at least 2"):
        prepare_post("whiten", encoder=rx_encoder, pooling="cls", dim=32,
                     fit_data=lambda: (x, {"on": "corpus"}))
    with pytest.raises(ConfigError, match="no fit data"):
        prepare_post("whiten", encoder=rx_encoder, pooling="cls", dim=32)


def test_same_post(tmp_path):
    path = tmp_path / "w.npz"
    save_transform(path, AffineMap(np.eye(4), np.zeros(4)), {})
    copy = tmp_path / "copy.npz"
    copy.write_bytes(path.read_bytes())
    from embedkit.provenance import sha256_file

    sources = ({"path": str(path), "sha256": sha256_file(path)},)
    assert same_post(str(copy), f"file:{path}", sources=sources)  # same content
    assert same_post(f"file:{copy},norm", f"file:{path},norm", sources=sources)
    assert not same_post(f"file:{copy}", f"file:{path},norm", sources=sources)
    assert same_post(str(path), "pca:k=4", post_sha256=sha256_file(path))  # the exported map
    assert not same_post(str(tmp_path / "missing.npz"), f"file:{path}", sources=sources)
    assert not same_post("pca:k=4", None) and same_post("", None)
    assert same_post("whiten:k=8", "whiten:beta=1,gamma=1,k=8")
