"""The training losses: SimCSE's InfoNCE (unsupervised and supervised) and CoSENT.

All take float tensors of sentence vectors (or cosines) and return a scalar tensor.

>>> import torch
>>> z = torch.eye(3)
>>> round(simcse_loss(z, z, temperature=0.05).item(), 6)   # positives far above negatives
0.0
>>> round(cosent_loss(torch.tensor([0.9, 0.1]), torch.tensor([1.0, 0.0])).item(), 4)
0.0
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_COSENT_SCALE = 20.0


def _cos_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T


def simcse_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """Unsupervised SimCSE: ``z1[i]`` and ``z2[i]`` are the same sentence under two dropout
    masks. Cross-entropy over ``cos(z1[i], z2[j]) / temperature`` with target ``j = i``: the
    paired copy is the positive, every other sentence of the batch a negative (as the SimCSE
    paper's code)."""
    sim = _cos_matrix(z1, z2) / temperature
    return F.cross_entropy(sim, torch.arange(len(z1), device=sim.device))


def infonce_loss(anchors: torch.Tensor, positives: torch.Tensor,
                 negatives: torch.Tensor | None = None, temperature: float = 0.05) -> torch.Tensor:
    """Supervised SimCSE: anchor i against every positive of the batch (its own is the target)
    and every hard negative of the batch (``negatives``, any number of rows, may be None)."""
    cands = positives if negatives is None or len(negatives) == 0 else torch.cat(
        [positives, negatives.to(positives.dtype)], dim=0)
    sim = _cos_matrix(anchors, cands) / temperature
    return F.cross_entropy(sim, torch.arange(len(anchors), device=sim.device))


def cosent_loss(cos: torch.Tensor, labels: torch.Tensor, scale: float = _COSENT_SCALE) -> torch.Tensor:
    """CoSENT: ``log(1 + sum over (i, j) with label_i > label_j of exp(scale * (cos_j - cos_i)))``,
    i.e. every pair ranked above another should have the larger cosine. Works for binary and
    graded labels; a batch whose labels are all equal gives 0."""
    cos = cos.float()
    labels = labels.to(cos.device)
    diff = scale * (cos[None, :] - cos[:, None])           # [i, j] = scale * (cos_j - cos_i)
    keep = labels[:, None] > labels[None, :]
    diff = diff.masked_fill(~keep, float("-inf"))
    return torch.logsumexp(torch.cat([diff.new_zeros(1), diff.flatten()]), dim=0)
