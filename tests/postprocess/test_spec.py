"""The post-processing spec language: parse_post, describe_post, resolve_post, the registry."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.pipeline import Pipeline

from embedkit.errors import ConfigError
from embedkit.postprocess import (
    PCA,
    FixedTransform,
    Normalize,
    RandomProjection,
    Whitening,
    describe_post,
    parse_post,
)


def _data(n=200, d=12, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d) * 4


def test_parse_example_from_the_cli():
    p = parse_post("whiten:beta=1,gamma=1,k=256,pca:k=128")
    assert [n for n, _ in p.steps] == ["whiten", "pca"]
    w, pca = p.named_steps["whiten"], p.named_steps["pca"]
    assert isinstance(w, Whitening) and not isinstance(w, PCA)
    assert (w.beta, w.gamma, w.n_components) == (1.0, 1.0, 256)
    assert isinstance(pca, PCA) and pca.n_components == 128 and pca.whiten is False


def test_parse_all_steps_and_unique_names():
    p = parse_post("whiten + pca:k=4,whiten=1 + pca:k=2 + rp:k=auto,kind=sparse,seed=7 + norm")
    assert [n for n, _ in p.steps] == ["whiten", "pca", "pca-2", "rp", "norm"]
    s = p.named_steps
    assert (s["whiten"].beta, s["whiten"].gamma, s["whiten"].n_components) == (1.0, 1.0, None)
    assert s["pca"].whiten is True and s["pca-2"].n_components == 2
    rp = s["rp"]
    assert isinstance(rp, RandomProjection)
    assert (rp.n_components, rp.kind, rp.random_state) == ("auto", "sparse", 7)
    assert isinstance(s["norm"], Normalize)
    f = parse_post("file:/tmp/some dir/w.safetensors").steps[0][1]
    assert isinstance(f, FixedTransform) and f.path == "/tmp/some dir/w.safetensors"
    assert parse_post("whiten:k=all").steps[0][1].n_components is None
    assert parse_post("whiten:beta=1e+3,eps=1e-05").steps[0][1].beta == 1000.0


@pytest.mark.parametrize(
    "spec",
    [
        "whiten:beta=1,gamma=1,k=256",
        "whiten:beta=0.5,gamma=0,k=all,eps=1e-05",
        "whiten:beta=1,gamma=1,k=256,pca:k=128",
        "pca:k=64,whiten=1,norm",
        "rp:k=auto,kind=gaussian,seed=3,eps=0.25",
        "rp:k=32,kind=sparse,seed=0",
        "whiten:beta=1,gamma=0.25,k=all,pca:k=8,pca:k=4,norm",
        "file:a/b.npz,norm",
    ],
)
def test_describe_round_trips(spec):
    p = parse_post(spec)
    text = describe_post(p)
    assert text == spec
    again = parse_post(text)
    assert [type(e) for _, e in again.steps] == [type(e) for _, e in p.steps]
    for (_, a), (_, b) in zip(again.steps, p.steps, strict=True):
        assert a.get_params() == b.get_params()


def test_describe_canonicalises():
    assert describe_post(parse_post("whiten")) == "whiten:beta=1,gamma=1,k=all"
    assert describe_post(parse_post("pca+norm")) == "pca:k=all,norm"
    assert describe_post(Whitening(beta=0, gamma=0.5, n_components=3)) == (
        "whiten:beta=0,gamma=0.5,k=3"
    )
    with pytest.raises(ConfigError, match="not a post-processing step"):
        describe_post(Pipeline([("x", Pipeline([("n", Normalize())]))]))


@pytest.mark.parametrize(
    "spec, match",
    [
        ("whitening:k=3", r"unknown step 'whitening'.*valid steps: whiten, pca, rp, norm, file"),
        ("bogus", r"unknown step 'bogus'.*valid steps: whiten, pca, rp, norm, file"),
        (
            "whiten:alpha=1",
            r"unknown key 'alpha' for step 'whiten'.*valid keys: beta, gamma, k, eps",
        ),
        ("pca:k=4,kind=sparse", r"unknown key 'kind' for step 'pca'.*valid keys: k, whiten"),
        ("norm,p=1", r"unknown key 'p' for step 'norm'"),
        ("whiten:beta=abc", r"bad value 'abc' for whiten key 'beta'.*a number"),
        ("whiten:k=0", r"bad value '0' for whiten key 'k'"),
        ("rp:k=many", r"bad value 'many' for rp key 'k'.*'auto'"),
        ("rp:kind=dense", r"'gaussian' or 'sparse'"),
        ("pca:whiten=maybe", r"bad value 'maybe'"),
        ("k=3,whiten", r"'k=3' comes before any step"),
        ("whiten:beta=1,beta=0", r"key 'beta' given twice"),
        ("file:", r"needs a path"),
        ("", r"empty spec"),
        ("whiten:beta", r"expected key=value in 'whiten:beta'"),
    ],
)
def test_bad_specs(spec, match):
    with pytest.raises(ConfigError, match=match):
        parse_post(spec)


def test_resolve_post_by_suffix_never_by_existence(tmp_path, monkeypatch):
    from embedkit.postprocess import AffineMap, resolve_post, save_transform

    monkeypatch.chdir(tmp_path)
    # a file named like a chain spec exists: still a chain
    (tmp_path / "whiten").write_text("not a transform", encoding="utf-8")
    assert [n for n, _ in resolve_post("whiten").steps] == ["whiten"]
    save_transform("w.npz", AffineMap(np.eye(3), np.zeros(3)), {})
    save_transform("n.safetensors", AffineMap(np.eye(3), np.zeros(3), normalize=True), {})
    p = resolve_post("w.npz")
    assert [n for n, _ in p.steps] == ["file"] and p[0].path == "w.npz"
    assert [n for n, _ in resolve_post("n.safetensors").steps] == ["file", "norm"]
    # the file: prefix is the chain form: the metadata's normalize is not added
    assert [n for n, _ in resolve_post("file:n.safetensors").steps] == ["file"]
    assert [n for n, _ in resolve_post("file:w.npz,norm").steps] == ["file", "norm"]
    with pytest.raises(ConfigError, match="not found"):
        resolve_post("missing.faiss")  # a transform suffix: a file, even when absent
    with pytest.raises(ConfigError, match="empty"):
        resolve_post(" ")


def test_registry_names_and_describe_by_exact_class():
    from embedkit.postprocess import step_names

    assert step_names()[:5] == ("whiten", "pca", "rp", "norm", "file")
    # PCA and Whitening share a base but neither is the other: no order dependence
    assert not isinstance(PCA(), Whitening)
    assert describe_post([PCA(n_components=3), Whitening(n_components=2)]) == (
        "pca:k=3,whiten:beta=1,gamma=1,k=2")
    with pytest.raises(ConfigError, match="not a post-processing step"):
        describe_post([Pipeline([])])


def test_random_steps_default_to_seed_0_and_report_their_seed():
    from embedkit.postprocess import random_seeds

    x = np.random.default_rng(0).normal(size=(20, 12))
    a, b = parse_post("rp:k=4").fit(x), parse_post("rp:k=4").fit(x)
    np.testing.assert_array_equal(a.steps[0][1].kernel_, b.steps[0][1].kernel_)
    assert describe_post(a) == "rp:k=4,kind=gaussian,seed=0"
    c = parse_post("rp:k=4,seed=1").fit(x)
    assert not np.array_equal(a.steps[0][1].kernel_, c.steps[0][1].kernel_)
    assert random_seeds(parse_post("whiten:k=4,rp:k=2,seed=5,rp:k=1")) == {
        "rp:k=2,kind=gaussian,seed=5": 5, "rp:k=1,kind=gaussian,seed=0": 0}
    with pytest.raises(ConfigError, match=r"random_state=None.*only an integer seed"):
        describe_post(RandomProjection(4, random_state=None))
