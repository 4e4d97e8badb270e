"""The typed index recipe: index.json's keys, older folders, conflicts."""

from __future__ import annotations

import warnings

import pytest

from embedkit.errors import ConfigError
from embedkit.store.recipe import Recipe, RecipeConflict, compare_recipe

KEYS = ["model", "model_path", "model_identity", "pooling", "max_length", "dtype", "lowercase",
        "post", "post_file", "post_sha256", "post_sources", "fit", "corpus"]


def test_round_trip_keeps_the_on_disk_keys():
    r = Recipe(model="m", model_identity="sha256:1", pooling="cls", max_length=64,
               post="pca:k=4", post_sources=({"path": "/w.npz", "sha256": "ab"},),
               corpus=({"source": "python", "n_texts": 2},))
    d = r.to_dict()
    assert list(d) == KEYS
    assert Recipe.from_dict(d) == r
    assert r.with_corpus({"source": "file:x"}).to_dict()["corpus"][-1] == {"source": "file:x"}


def test_older_and_newer_recipes():
    old = Recipe.from_dict({"model": "m", "model_identity": "i", "pooling": "cls",
                            "max_length": "32"})
    assert (old.dtype, old.lowercase, old.post, old.max_length) == ("float32", False, None, 32)
    newer = Recipe.from_dict({**old.to_dict(), "quantized": True})
    assert newer.to_dict()["quantized"] is True  # unknown keys survive a read and write
    with pytest.raises(ConfigError, match="lacks model_identity, pooling"):
        Recipe.from_dict({"model": "m", "max_length": 64}, where="idx")


def test_compare_recipe():
    stored = Recipe(model="m", model_identity="i", pooling="cls", max_length=64).to_dict()
    assert compare_recipe(stored, {"pooling": "cls", "max_length": "64", "post": None}) == []
    assert compare_recipe(stored, {"post": "pca:k=4"}) == [RecipeConflict("post", None,
                                                                          "pca:k=4")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compare_recipe(stored, {"model": "m"})
    with pytest.warns(UserWarning, match="does not record quantized"):
        assert compare_recipe(stored, {"quantized": "yes"}) == []


def test_make_recipe_and_post_metadata():
    """The recipe of an encoder's vectors (index and encode folders alike) keeps index.json's
    keys, and post.safetensors' metadata names the same model, pooling and max length."""
    import numpy as np

    from embedkit.encoders.pooling import Pooling
    from embedkit.postprocess.affine import AffineMap
    from embedkit.store.fitted import FittedPost
    from embedkit.store.recipe import POST_FILE, make_recipe, post_metadata

    class Enc:
        name, identity = "tiny", "sha256:ab"

        def describe(self):
            return {"identity": "sha256:ab", "path": "/m/tiny", "dtype": "float32"}

    post = FittedPost("pca:k=2", AffineMap(np.eye(3)[:, :2], np.zeros(3)),
                     fit={"on": "corpus", "n_sentences": 5, "sha256": "cd"})
    r = make_recipe(Enc(), Pooling("cls"), 32, post, {"source": "python", "n_texts": 5})
    assert list(r.to_dict()) == KEYS
    assert (r.model, r.model_path, r.post, r.post_file, r.fit["on"]) == (
        "tiny", "/m/tiny", "pca:k=2", POST_FILE, "corpus")
    assert make_recipe(Enc(), Pooling("cls"), 32, None, {}).post_file is None
    meta = post_metadata(post, r)
    assert (meta["model_identity"], meta["pooling"], meta["max_length"], meta["n_samples"]) == (
        "sha256:ab", "cls", 32, 5)
