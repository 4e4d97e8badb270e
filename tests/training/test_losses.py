"""The training losses against their definitions."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from embedkit.training import cosent_loss, infonce_loss, simcse_loss


def test_simcse_loss_matches_definition():
    torch.manual_seed(0)
    z1, z2 = torch.randn(4, 6), torch.randn(4, 6)
    loss = simcse_loss(z1, z2, temperature=0.1)
    sim = torch.nn.functional.cosine_similarity(z1[:, None], z2[None], dim=-1) / 0.1
    expected = -torch.log_softmax(sim, dim=1).diagonal().mean()
    assert torch.allclose(loss, expected, atol=1e-6)


def test_infonce_hard_negatives_add_columns():
    torch.manual_seed(1)
    a, p, n = torch.randn(3, 5), torch.randn(3, 5), torch.randn(2, 5)
    with_neg = infonce_loss(a, p, n, 0.05)
    cands = torch.cat([p, n])
    sim = torch.nn.functional.cosine_similarity(a[:, None], cands[None], dim=-1) / 0.05
    assert torch.allclose(with_neg, -torch.log_softmax(sim, 1).diagonal().mean(), atol=1e-5)
    assert with_neg > infonce_loss(a, p, None, 0.05)


def test_cosent_loss_matches_brute_force():
    cos = torch.tensor([0.9, 0.2, 0.5, -0.1])
    labels = torch.tensor([5.0, 1.0, 3.0, 1.0])
    total = sum(math.exp(20 * (cos[j] - cos[i]).item())
                for i, j in itertools.product(range(4), repeat=2) if labels[i] > labels[j])
    assert cosent_loss(cos, labels).item() == pytest.approx(math.log1p(total), rel=1e-5)
    assert cosent_loss(cos, torch.ones(4)).item() == 0.0
