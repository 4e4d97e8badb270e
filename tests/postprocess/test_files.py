"""Saving/loading transforms (AffineMap): safetensors, npz, FAISS, FixedTransform,
check_compatible."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.base import clone

from embedkit.errors import ConfigError
from embedkit.io.seal import value_checksums
from embedkit.postprocess import (
    AffineMap,
    CompatibilityWarning,
    FixedTransform,
    Whitening,
    check_compatible,
    describe_post,
    load_faiss_transform,
    load_transform,
    parse_post,
    save_faiss_transform,
    save_transform,
)
from embedkit.provenance import sha256_file

META = {
    "model": "moka-ai/m3e-small",
    "pooling": "mean",
    "max_length": 128,
    "beta": 1.0,
    "gamma": 0.5,
    "n_samples": 300,
    "fit_data_sha256": "ab" * 32,
    "spec": "whiten:beta=1,gamma=0.5,k=4",
    "numeric_string": "123",
    "layers": [-1, -2],
}


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 10)) @ rng.normal(size=(10, 10)) + 2
    return X, Whitening(gamma=0.5, n_components=4).fit(X)


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_round_trip(tmp_path, fitted, suffix):
    X, w = fitted
    path = tmp_path / f"w{suffix}"
    save_transform(path, AffineMap(w.kernel_, w.bias_), META)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind
    t = load_transform(path)
    assert t.path == path and t.kernel.dtype == np.float32 and t.bias.dtype == np.float32
    np.testing.assert_array_equal(t.kernel, w.kernel_.astype(np.float32))
    np.testing.assert_array_equal(t.bias, w.bias_.astype(np.float32))
    assert t.metadata == {**META, "embedkit_version": "0.1.0", "d": 10, "k": 4}
    assert isinstance(t.metadata["max_length"], int) and t.metadata["numeric_string"] == "123"
    assert (t.d, t.k) == (10, 4)
    np.testing.assert_allclose(t.apply(X), w.transform(X), rtol=1e-4, atol=1e-4)


def test_safetensors_header_is_plain_strings(tmp_path, fitted):
    from safetensors import safe_open

    _, w = fitted
    path = tmp_path / "w.safetensors"
    save_transform(path, AffineMap(w.kernel_, w.bias_), META, format="safetensors")
    with safe_open(str(path), framework="np") as fh:
        header = fh.metadata()
        assert fh.get_tensor("kernel").shape == (10, 4) and fh.get_tensor("bias").shape == (10,)
    assert header["model"] == "moka-ai/m3e-small" and header["d"] == "10"
    assert header["beta"] == "1.0" and header["layers"] == "[-1, -2]"
    assert "numeric_string" not in json.loads(header["embedkit_json_keys"])


def test_npz_loads_without_pickle(tmp_path, fitted):
    _, w = fitted
    path = tmp_path / "w.npz"
    save_transform(path, AffineMap(w.kernel_, w.bias_), {"model": "m"}, format="npz")
    with np.load(path, allow_pickle=False) as z:
        assert sorted(z.files) == ["bias", "kernel", "metadata"]
        assert z["metadata"].dtype.kind == "U"
        meta = json.loads(str(z["metadata"]))
        np.testing.assert_array_equal(z["kernel"], w.kernel_.astype(np.float32))
    assert meta == {"embedkit_version": "0.1.0", "model": "m", "d": 10, "k": 4}


def test_save_and_load_errors(tmp_path, fitted):
    _, w = fitted
    with pytest.raises(ConfigError, match="suffix"):
        save_transform(tmp_path / "w.npz", AffineMap(w.kernel_, w.bias_), {}, format="safetensors")
    with pytest.raises(ConfigError, match="shape"):
        save_transform(tmp_path / "w.npz", AffineMap(w.kernel_, w.bias_[:3]), {})
    with pytest.raises(ConfigError, match="d=3"):
        save_transform(tmp_path / "w.npz", AffineMap(w.kernel_, w.bias_), {"d": 3})
    with pytest.raises(ConfigError, match="AffineMap"):
        save_transform(tmp_path / "w.npz", w.kernel_, {})  # the old (kernel, bias) form
    missing = tmp_path / "missing.safetensors"
    with pytest.raises(ConfigError, match=str(missing)):
        load_transform(missing)
    for name in ("bad.safetensors", "bad.npz"):
        (tmp_path / name).write_bytes(b"PK\x03\x04 not really a file")
        with pytest.raises(ConfigError, match=name):
            load_transform(tmp_path / name)
    np.savez(tmp_path / "other.npz", weights=np.ones(3))
    with pytest.raises(ConfigError, match="not an embedkit transform"):
        load_transform(tmp_path / "other.npz")
    assert not list(tmp_path.glob(".*tmp"))


def test_fixed_transform_equals_original(tmp_path, fitted):
    X, w = fitted
    path = tmp_path / "w.safetensors"
    save_transform(path, AffineMap(w.kernel_, w.bias_), META)
    f = FixedTransform(path=str(path)).fit(X)
    np.testing.assert_allclose(f.transform(X), w.transform(X), rtol=1e-4, atol=1e-4)
    assert f.metadata_["model"] == "moka-ai/m3e-small" and f.kernel_.shape == (10, 4)
    assert clone(f).get_params() == {"path": str(path)}
    assert f.transform(X.astype(np.float32)).dtype == np.float32
    p = parse_post(f"file:{path},norm").fit(X)
    assert describe_post(p) == f"file:{path},norm"
    m = AffineMap.from_pipeline(p)
    np.testing.assert_array_equal(m.kernel, f.kernel_)
    np.testing.assert_array_equal(m.bias, f.bias_)
    assert m.normalize is True
    with pytest.raises(ConfigError, match="d=10"):
        FixedTransform(path=str(path)).fit(X[:, :5])
    with pytest.raises(ConfigError, match="no path"):
        FixedTransform().fit(X)


def test_check_compatible():
    meta = {"model": "moka-ai/m3e-small", "pooling": "mean", "d": 512}
    check_compatible(meta, model="moka-ai/m3e-small", pooling="mean", dim=512)
    check_compatible(meta, model=None, pooling=None, dim=None)
    check_compatible({}, model="x", pooling="cls", dim=3)  # nothing recorded, nothing checked
    cases = [
        ({"model": "bert-base"}, r"model 'moka-ai/m3e-small'.*model 'bert-base'.*force=True"),
        ({"pooling": "cls"}, r"pooling 'mean'.*pooling 'cls'.*force=True"),
        ({"dim": 768}, r"d=512.*d=768.*force=True"),
    ]
    for override, match in cases:
        kwargs = {"model": "moka-ai/m3e-small", "pooling": "mean", "dim": 512, **override}
        with pytest.raises(ConfigError, match=match):
            check_compatible(meta, **kwargs)
        with pytest.warns(CompatibilityWarning, match=match):
            check_compatible(meta, force=True, **kwargs)


def test_check_compatible_vectors():
    """The settings the vectors were made with, checked only when given: max length, dtype,
    casing, raw or L2-normalised (``fit_vectors.normalized``, raw when absent)."""
    meta = {"max_length": 32, "dtype": "float32", "lowercase": False}
    same = {"max_length": 32, "dtype": "float32", "lowercase": False, "normalized": False}
    check_compatible(meta, model=None, pooling=None, dim=None, vectors=same)
    check_compatible(meta, model=None, pooling=None, dim=None)
    cases = [({"max_length": 64}, r"max_length=32 but .* max_length=64"),
             ({"dtype": "float16"}, r"dtype=float32 but .* dtype=float16"),
             ({"lowercase": True}, r"lowercase=False but .* lowercase=True"),
             ({"normalized": True}, r"raw vectors but .* L2-normalised vectors")]
    for override, match in cases:
        with pytest.raises(ConfigError, match=match):
            check_compatible(meta, model=None, pooling=None, dim=None,
                             vectors={**same, **override})
    normed = {**meta, "fit_vectors": {"normalized": True}}
    with pytest.warns(CompatibilityWarning, match="L2-normalised vectors but .* raw vectors"):
        check_compatible(normed, model=None, pooling=None, dim=None, vectors=same, force=True)


def test_faiss_round_trip(tmp_path, fitted):
    import faiss

    X, w = fitted
    path = tmp_path / "w.faiss"
    save_faiss_transform(path, AffineMap(w.kernel_, w.bias_))
    lt = load_faiss_transform(path)
    assert isinstance(lt, faiss.LinearTransform) and (lt.d_in, lt.d_out) == (10, 4)
    x = X[:20].astype(np.float32)
    np.testing.assert_allclose(lt.apply(x), (X[:20] + w.bias_) @ w.kernel_, rtol=1e-4, atol=1e-4)
    with pytest.raises(ConfigError, match="missing.faiss"):
        load_faiss_transform(tmp_path / "missing.faiss")
    (tmp_path / "bad.faiss").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="bad.faiss"):
        load_faiss_transform(tmp_path / "bad.faiss")


def test_faiss_file_loads_as_a_transform_file(tmp_path, fitted):
    X, w = fitted
    path = tmp_path / "w.faiss"
    save_transform(path, AffineMap(w.kernel_, w.bias_, normalize=True), {"model": "m"})
    meta = json.loads((tmp_path / "w.faiss.json").read_text(encoding="utf-8"))
    assert meta.pop("values_sha256") == value_checksums(meta)  # its values sealed
    assert meta == {"embedkit_version": "0.1.0", "model": "m", "normalize": True, "d": 10, "k": 4,
                    "kernel_sha256": sha256_file(path)}
    t = load_transform(path)
    assert t.metadata == meta and t.map.normalize and (t.d, t.k) == (10, 4)
    np.testing.assert_allclose(t.map.kernel, w.kernel_, rtol=1e-5, atol=1e-6)
    # the bias is recovered from FAISS's b = bias @ kernel (kernel has full column rank)
    np.testing.assert_allclose(t.map.bias @ t.map.kernel, w.bias_ @ w.kernel_, rtol=1e-4,
                               atol=1e-4)
    Z = (X + w.bias_) @ w.kernel_
    np.testing.assert_allclose(t.apply(X), Z / np.linalg.norm(Z, axis=1, keepdims=True),
                               atol=1e-5)
    assert FixedTransform(str(path)).fit(X).kernel_.shape == (10, 4)


def test_normalize_is_recorded_and_loaded(tmp_path, fitted):
    _, w = fitted
    for name in ("w.safetensors", "w.npz"):
        save_transform(tmp_path / name, AffineMap(w.kernel_, w.bias_, normalize=True), META)
        t = load_transform(tmp_path / name)
        assert t.metadata["normalize"] is True and t.map.normalize is True
    assert load_transform(_saved(tmp_path, w)).map.normalize is False


def _saved(tmp_path, w):
    path = tmp_path / "plain.npz"
    save_transform(path, AffineMap(w.kernel_, w.bias_), {})
    return path


def test_format_is_read_from_the_bytes_whatever_the_name(tmp_path, fitted):
    """A FAISS transform saved as w.bin (``whiten --format faiss --out w.bin``) loads as FAISS,
    not as a safetensors file whose "header is too large"."""
    X, w = fitted
    amap = AffineMap(w.kernel_, w.bias_)
    save_transform(tmp_path / "w.bin", amap, {"model": "m"}, format="faiss")
    save_transform(tmp_path / "s.bin", amap, {"model": "m"})
    for name in ("w.bin", "s.bin"):
        t = load_transform(tmp_path / name)
        np.testing.assert_allclose(t.apply(X[:5]), (X[:5] + w.bias_) @ w.kernel_, atol=1e-4)
    (tmp_path / "junk.bin").write_bytes(bytes(range(200, 256)) * 3)
    with pytest.raises(ConfigError) as e:
        load_transform(tmp_path / "junk.bin")
    assert str(e.value) == (
        f"{tmp_path / 'junk.bin'}: not a transform file embedkit reads (it reads safetensors "
        "and .npz files written by embedkit whiten or save_transform, and FAISS VectorTransform "
        "files (.faiss, any name: the format is read from the bytes))")
    (tmp_path / "st-folder").mkdir()
    with pytest.raises(ConfigError, match="is a folder, not a transform file .*a "
                                          "sentence-transformers folder is a model"):
        load_transform(tmp_path / "st-folder")
