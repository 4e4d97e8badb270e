"""Every pooling against values computed by hand from the tiny model's own outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embedkit.encoders import Pooling, masked_mean
from embedkit.errors import ConfigError

POOLINGS = ["cls", "pooler", "pooler-tanh", "last-avg", "first-last-avg", "layers-avg:0,2",
            "layers-avg:1,-1"]


def _forward(encoder, texts: list[str]):
    """Run the model directly on right-padded input; returns (outputs, mask)."""
    ids = [encoder.tokenizer(t)["input_ids"] for t in texts]
    width = max(map(len, ids))
    input_ids = torch.zeros((len(ids), width), dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for r, x in enumerate(ids):
        input_ids[r, :len(x)] = torch.tensor(x)
        mask[r, :len(x)] = 1
    with torch.no_grad():
        out = encoder.model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
    return out, mask


def _by_hand(encoder, out, mask) -> dict[str, np.ndarray]:
    last, hs = out.last_hidden_state, out.hidden_states
    m = mask.unsqueeze(-1).float()

    def mean(h):
        return (h * m).sum(1) / m.sum(1)

    with torch.no_grad():
        ref = {
            "cls": last[:, 0],
            "pooler": encoder.model.pooler.dense(last[:, 0]),
            "pooler-tanh": out.pooler_output,
            "last-avg": mean(last),
            "first-last-avg": (mean(hs[1]) + mean(hs[-1])) / 2,
            "layers-avg:0,2": (mean(hs[0]) + mean(hs[2])) / 2,
            "layers-avg:1,-1": (mean(hs[1]) + mean(hs[2])) / 2,
        }
    return {k: v.numpy() for k, v in ref.items()}


def test_tokens_are_real_characters(tiny_encoder, sentences):
    ids = tiny_encoder.tokenizer(sentences[0])["input_ids"]
    assert len(ids) == len(sentences[0]) + 2
    assert tiny_encoder.tokenizer.unk_token_id not in ids


@pytest.mark.parametrize("pooling", POOLINGS)
def test_unpadded_sentence_by_hand(tiny_encoder, sentences, pooling):
    s = sentences[0]
    out, mask = _forward(tiny_encoder, [s])
    assert mask.all()
    # unpadded: the masked mean is the plain mean over tokens
    assert np.allclose(out.last_hidden_state.mean(1).numpy(),
                       _by_hand(tiny_encoder, out, mask)["last-avg"], atol=1e-6)
    expected = _by_hand(tiny_encoder, out, mask)[pooling]
    got = tiny_encoder.encode([s], pooling=pooling)
    assert got.shape == (1, 32) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_pooler_is_not_tanh_and_tanh_is_pooler_output(tiny_encoder, sentences):
    p = tiny_encoder.encode(sentences[:1], pooling="pooler")
    pt = tiny_encoder.encode(sentences[:1], pooling="pooler-tanh")
    np.testing.assert_allclose(np.tanh(p), pt, atol=1e-6)
    assert np.abs(p).max() > np.abs(pt).max()  # not already squashed


@pytest.mark.parametrize("pooling", POOLINGS)
def test_padded_batch_by_hand(tiny_encoder, sentences, pooling):
    texts = [sentences[4], sentences[3] + sentences[5]]  # short and long: the first is padded
    out, mask = _forward(tiny_encoder, texts)
    assert not mask[0].all() and mask[1].all()
    expected = _by_hand(tiny_encoder, out, mask)[pooling]
    got = tiny_encoder.encode(texts, pooling=pooling)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_masking_invariance(tiny_encoder, sentences, pooling):
    short = sentences[10]
    long_ = ["".join(sentences[20:24]), "".join(sentences[30:33]), sentences[2]]
    alone = tiny_encoder.encode([short], pooling=pooling)
    together = tiny_encoder.encode([*long_, short], pooling=pooling, batch_size=8)
    np.testing.assert_allclose(together[-1:], alone, atol=1e-5, rtol=0)


def test_masked_mean_ignores_padding_values():
    h = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [1e6, -1e6]]])
    assert masked_mean(h, torch.tensor([[1, 1, 0]])).tolist() == [[2.0, 3.0]]
    # an all-zero mask does not divide by zero
    assert masked_mean(h, torch.tensor([[0, 0, 0]])).tolist() == [[0.0, 0.0]]


@pytest.mark.parametrize("name,canonical", [
    ("cls", "cls"), ("CLS", "cls"), ("mean", "last-avg"), ("avg", "last-avg"),
    ("last_avg", "last-avg"), ("first_last_avg", "first-last-avg"), ("pooler_tanh", "pooler-tanh"),
    (" layers-avg:1, -1 ", "layers-avg:1,-1"), ("layers-avg:0,2", "layers-avg:0,2"),
])
def test_pooling_canonical_name(name, canonical):
    assert Pooling(name) == canonical


@pytest.mark.parametrize("name", ["min", "layers-avg:", "layers-avg:a,b", "", "cls2"])
def test_unknown_pooling_lists_the_valid_ones(name):
    with pytest.raises(ConfigError) as e:
        Pooling(name)
    msg = str(e.value)
    assert repr(name) in msg
    for p in ("cls", "pooler", "pooler-tanh", "last-avg", "first-last-avg", "layers-avg"):
        assert p in msg


def test_unknown_pooling_in_encode(tiny_encoder):
    with pytest.raises(ConfigError, match="valid: cls, pooler"):
        tiny_encoder.encode(["一个"], pooling="min")


@pytest.mark.parametrize("pooling", ["layers-avg:3", "layers-avg:9", "layers-avg:0,-4"])
def test_layer_index_out_of_range(tiny_encoder, pooling):
    with pytest.raises(ConfigError, match=r"out of range.*hidden_states\[0\.\.2\]"):
        tiny_encoder.encode(["一个人"], pooling=pooling)


def test_negative_layer_index_counts_from_the_end(tiny_encoder, sentences):
    a = tiny_encoder.encode(sentences[:3], pooling="layers-avg:-3,-1")
    b = tiny_encoder.encode(sentences[:3], pooling="layers-avg:0,2")
    np.testing.assert_array_equal(a, b)
