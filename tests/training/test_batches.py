"""Training batches: the step plan, and the forward pass shared with evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embedkit.encoders import Encoder, Pooling
from embedkit.training import load_training_model
from embedkit.training.batches import Batches, plan


def test_plan_drops_single_example_batches():
    assert plan(5, 2, 1, 1) == [[(0, 0, 2)], [(0, 2, 4)]]
    steps = plan(10, 4, 2, 2)
    assert steps == [[(0, 0, 4), (0, 4, 8)], [(0, 8, 10)], [(1, 0, 4), (1, 4, 8)], [(1, 8, 10)]]
    assert plan(1, 4, 1, 3) == []


@pytest.mark.parametrize("pooling", ["cls", "last-avg", "first-last-avg", "pooler"])
def test_training_vectors_equal_evaluation_vectors(pooling, simcse_base_dir, simcse_sentences):
    model, tokenizer, _ = load_training_model(str(simcse_base_dir), None)
    model.eval()
    sents = simcse_sentences[:7]
    batches = Batches("simcse-unsupervised", sents, tokenizer, max_length=16,
                      pooling=Pooling(pooling), device=torch.device("cpu"), temperature=0.05,
                      cosent_scale=20.0)
    with torch.no_grad():
        mine = batches.embed(model, sents).numpy()
    enc = Encoder(str(simcse_base_dir))
    np.testing.assert_allclose(mine, enc.encode(sents, pooling, max_length=16), atol=1e-5)


def test_loss_has_gradients(simcse_base_dir, simcse_sentences):
    model, tokenizer, _ = load_training_model(str(simcse_base_dir), 0.3)
    model.train()
    batches = Batches("simcse-unsupervised", simcse_sentences, tokenizer, max_length=16,
                      pooling=Pooling("cls"), device=torch.device("cpu"), temperature=0.05,
                      cosent_scale=20.0)
    loss = batches.loss(model, [0, 1, 2, 3])
    loss.backward()
    assert loss.item() > 0 and model.embeddings.word_embeddings.weight.grad is not None
