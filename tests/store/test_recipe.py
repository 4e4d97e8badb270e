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
