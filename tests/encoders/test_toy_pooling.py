"""Adding a pooling takes one file: this test defines a toy one (masked max over the last layer)
here, registers it, and uses it end to end through the encoder, the cache and ``bench``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embedkit.encoders import Encoder, Pooling, register_pooling
from embedkit.encoders.pooling import unregister_pooling
from embedkit.runs.bench import run_bench


def _masked_max(outputs, mask, model, layers):
    hidden = outputs.last_hidden_state.to(torch.float32)
    return hidden.masked_fill(mask.unsqueeze(-1) == 0, float("-inf")).amax(dim=1)


@pytest.fixture
def toy_max():
    register_pooling("toy-max")(_masked_max)
    yield Pooling("toy-max")
    unregister_pooling("toy-max")


def test_toy_pooling_through_encoder_cache_and_bench(toy_max, tiny_model_dir, spec_file,
                                                     sentences, tmp_path):
    from embedkit.encoders.cache import EmbeddingCache

    enc = Encoder(str(tiny_model_dir), cache=EmbeddingCache(tmp_path / "cache"))
    got = enc.encode(sentences[:5], "toy-max")
    # by hand: the max over the real tokens of each sentence's last layer
    for i, s in enumerate(sentences[:5]):
        ids = enc.tokenizer([s], truncation=True, max_length=64, return_tensors="pt")
        with torch.inference_mode():
            out = enc.model(**ids).last_hidden_state[0]
        np.testing.assert_allclose(got[i], out.max(dim=0).values.numpy(), atol=1e-5)
    again = Encoder(str(tiny_model_dir), cache=EmbeddingCache(tmp_path / "cache"))
    np.testing.assert_array_equal(again.encode(sentences[:5], "toy-max"), got)
    assert again.stats.cache_hits == 5 and again.stats.encoded == 0
    rec = run_bench(enc, ["toy-max", "cls"], [str(spec_file)])
    assert list(rec["results"]) == ["toy-max", "cls"]
    assert np.isfinite(rec["results"]["toy-max"]["tiny-sts"]["test"]["spearman"])


def test_unregistered_pooling_is_refused(tiny_encoder):
    from embedkit.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown pooling 'toy-max'"):
        tiny_encoder.encode(["一个"], "toy-max")
