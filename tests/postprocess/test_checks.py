"""Postprocessor chains checked against the encoder's dimension before any encoding."""

from __future__ import annotations

import numpy as np
import pytest

from embedkit.errors import ConfigError
from embedkit.postprocess import AffineMap, parse_post, save_transform
from embedkit.postprocess.checks import check_post_chain, check_post_chains


@pytest.mark.parametrize("spec,out", [
    ("whiten", 32), ("whiten:k=8", 8), ("whiten:k=all,pca:k=4,norm", 4), ("rp:k=16", 16),
    ("pca:k=32", 32), ("norm", 32),
])
def test_possible_chains_give_their_output_dimension(spec, out):
    assert check_post_chain(parse_post(spec), dim=32) == out


@pytest.mark.parametrize("spec,message", [
    ("whiten:k=64", "step 1 (whiten) keeps k=64 dimensions, more than its input has (d=32); "
                    "give k <= 32 (or k=all)"),
    ("whiten:k=16,pca:k=20", "step 2 (pca) keeps k=20 dimensions, more than its input has "
                             "(d=16)"),
])
def test_k_above_the_dimension_is_refused(spec, message):
    with pytest.raises(ConfigError) as e:
        check_post_chain(parse_post(spec), dim=32)
    assert message in str(e.value) and e.value.param == "post"


def test_rp_auto_against_the_fit_sentences():
    pipe = parse_post("rp:k=auto")
    assert check_post_chain(pipe, dim=32) is None  # N unknown: not checked here
    with pytest.raises(ConfigError, match=r"k=auto asks for k=\d+ dimensions \(the "
                                          r"Johnson-Lindenstrauss bound for N=80 fit sentences "
                                          r"at eps=0.1\), more than d=32"):
        check_post_chains([("rp", pipe)], dim=32, n_fit=80)
    assert check_post_chain(parse_post("rp:k=auto,eps=0.9"), dim=4096, n_fit=80) < 4096


def test_a_saved_map_for_another_dimension(tmp_path):
    path = tmp_path / "w.safetensors"
    save_transform(path, AffineMap(np.eye(16)[:, :8], np.zeros(16)), {})
    assert check_post_chain(parse_post(f"file:{path},norm"), dim=16) == 8
    with pytest.raises(ConfigError, match=r"w.safetensors: the transform expects d=16 input "
                                          r"dimensions but the vectors have 32"):
        check_post_chain(parse_post(f"file:{path}"), dim=32)
