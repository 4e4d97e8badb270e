"""Index settings (post value, FAISS factories) checked on the dimension before encoding."""

from __future__ import annotations

import pytest

from embedkit.errors import ConfigError
from embedkit.retrieval.checks import check_index_settings


def test_factories_are_built_on_the_dimension_the_post_leaves():
    assert check_index_settings(["Flat", "HNSW8", "IVF4,PQ8"], "whiten:k=16", dim=32) == 16
    assert check_index_settings(["Flat"], None, dim=32) == 32


@pytest.mark.parametrize("factories,post,param,message", [
    (["Bogus"], None, "factory", "FAISS cannot build factory 'Bogus' for dimension 32"),
    (["IVF4,PQ5"], "pca:k=16", "factory", "for dimension 16: "),
    (["Flat"], "whiten:k=64", "post", "keeps k=64 dimensions, more than its input has (d=32)"),
])
def test_impossible_settings_are_refused(factories, post, param, message):
    with pytest.raises(ConfigError) as e:
        check_index_settings(factories, post, dim=32)
    assert message in str(e.value) and e.value.param == param
