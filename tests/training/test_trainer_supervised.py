"""Supervised SimCSE (InfoNCE, hard negatives, triplets), CoSENT and the overlap warning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embedkit.errors import ConfigError
from embedkit.training import TrainingWarning, cosent_loss, train_simcse

SUP = {"supervised": True, "batch_size": 8, "lr": 1e-3, "max_length": 32, "progress": False,
       "seed": 2}


def _falls(losses: list[float]) -> bool:
    return np.mean(losses[-4:]) < np.mean(losses[:4])


def test_supervised_infonce_lowers_loss(simcse_base_dir, simcse_pairs, tmp_path):
    r = train_simcse(model=str(simcse_base_dir), pairs=[str(simcse_pairs)],
                     out_dir=str(tmp_path / "m"), epochs=8, **SUP)
    assert r.record["method"] == "simcse-supervised"
    assert r.record["data"]["positives"] == 20 and r.steps == 24
    assert r.record["hyperparameters"]["dropout"] is None  # the model's own, 0.1
    assert r.model.config.hidden_dropout_prob == 0.1
    assert _falls(r.losses)


def test_hard_negatives_and_triplets(simcse_base_dir, simcse_pairs, simcse_paraphrases, tmp_path):
    trip = tmp_path / "trip.tsv"
    trip.write_text("".join(f"{a}\t{b}\t{simcse_paraphrases[(i + 3) % 20][0]}\n"
                            for i, (a, b) in enumerate(simcse_paraphrases[:8])), encoding="utf-8")
    r = train_simcse(model=str(simcse_base_dir), pairs=[str(simcse_pairs)], triplets=str(trip),
                     hard_negatives=True, out_dir=str(tmp_path / "m"), epochs=6, **SUP)
    d = r.record["data"]
    assert d["with_hard_negative"] == 20 and d["triplets"]["n_triplets"] == 8
    assert r.record["examples"] == 28 and _falls(r.losses)


def test_cosent_lowers_loss(simcse_base_dir, simcse_pairs, simcse_paraphrases, tmp_path):
    from embedkit.encoders import Encoder

    # per-batch CoSENT losses depend on each batch's label mix: judge on all 40 pairs instead
    pp = simcse_paraphrases
    s1 = [a for a, _ in pp] * 2
    s2 = [b for _, b in pp] + [pp[(i + 7) % 20][1] for i in range(20)]
    labels = torch.tensor([1.0] * 20 + [0.0] * 20)

    def full_loss(folder) -> float:
        enc = Encoder(str(folder))
        a, b = (torch.from_numpy(enc.encode(s, "last-avg")) for s in (s1, s2))
        return cosent_loss(torch.nn.functional.cosine_similarity(a, b), labels).item()

    r = train_simcse(model=str(simcse_base_dir), pairs=[str(simcse_pairs)], loss="cosent",
                     pooling="last-avg", out_dir=str(tmp_path / "m"), epochs=6, **SUP)
    assert r.record["method"] == "cosent" and r.record["examples"] == 40
    assert r.record["hyperparameters"]["cosent_scale"] == 20.0
    assert full_loss(r.out_dir) < full_loss(simcse_base_dir) - 0.1


def test_overlap_warning(simcse_base_dir, simcse_paraphrases, tmp_path):
    ddir = tmp_path / "data"
    atec = ddir / "senteval_cn" / "ATEC"
    atec.mkdir(parents=True)
    test_rows = [f"{b}\t{a}\t1" for a, b in simcse_paraphrases[:3]]  # reversed order
    test_rows += ["完全不同的句子\t另一个句子\t0"]
    (atec / "ATEC.test.data").write_text("\n".join(test_rows) + "\n", encoding="utf-8")
    train = tmp_path / "train.tsv"
    train.write_text("".join(f"{a}\t{b}\t1\n" for a, b in simcse_paraphrases[:10]),
                     encoding="utf-8")
    with pytest.warns(TrainingWarning, match=r"ATEC/test 3 of 4 pairs"):
        r = train_simcse(model=str(simcse_base_dir), pairs=[str(train)], data_dir=str(ddir),
                         out_dir=str(tmp_path / "m"), **SUP)
    assert r.record["evaluation_overlap"] == {"ATEC/test": {"overlap": 3, "n_pairs": 4}}


def test_supervised_config_errors(simcse_pairs):
    base = {"model": "unused", "out_dir": "o", "supervised": True}
    with pytest.raises(ConfigError, match="pairs"):
        train_simcse(**base)
    with pytest.raises(ConfigError, match="not tasks"):
        train_simcse(**base, pairs=[str(simcse_pairs)], corpus="c.txt")
    with pytest.raises(ConfigError, match="cosent"):
        train_simcse(**base, pairs=[str(simcse_pairs)], loss="cosent", hard_negatives=True)
    with pytest.raises(ConfigError, match="supervised"):
        train_simcse(model="unused", out_dir="o", loss="cosent", corpus="c.txt")
