"""Unsupervised SimCSE on a tiny random BERT: loss, determinism, exact resume, saved folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from embedkit.encoders import Encoder, pool
from embedkit.errors import ConfigError
from embedkit.training import SimCSEConfig, load_training_model, train_simcse
from embedkit.training.data import sample_examples, task_sentences

SMALL = {"batch_size": 8, "lr": 1e-3, "max_length": 32, "progress": False}


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _assert_same_weights(a, b) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


@pytest.fixture(scope="module")
def trained_cls(simcse_base_dir, simcse_corpus, tmp_path_factory):
    """30 steps (6 epochs of 5 batches) with cls pooling."""
    out = tmp_path_factory.mktemp("trained") / "cls"
    return train_simcse(model=str(simcse_base_dir), corpus=str(simcse_corpus), out_dir=str(out),
                        pooling="cls", epochs=6, seed=1, **SMALL)


def test_loss_falls(trained_cls):
    r = trained_cls
    assert r.complete and r.steps == r.total_steps == 30
    assert np.mean(r.losses[-5:]) < np.mean(r.losses[:5]) - 0.3
    rec = json.loads((r.out_dir / "embedkit.json").read_text(encoding="utf-8"))
    assert rec["steps"] == 30 and rec["final_loss"] == pytest.approx(r.losses[-1])
    assert [h["step"] for h in rec["loss_history"]] == [10, 20, 30]
    assert rec["hyperparameters"]["dropout"] == 0.3 and rec["hyperparameters"]["temperature"] == 0.05
    assert rec["data"]["sampled"] == 40 and len(rec["data"]["sha256"]) == 64
    assert rec["pooling"] == "cls" and rec["seed"] == 1 and rec["versions"]["torch"]
    assert rec["seconds_per_step"] > 0 and rec["base_model"]["identity"].startswith("sha256:")


def test_same_seed_same_weights(simcse_base_dir, simcse_corpus, tmp_path):
    kw = dict(model=str(simcse_base_dir), corpus=str(simcse_corpus), pooling="last-avg",
              seed=7, **SMALL)
    a = train_simcse(out_dir=str(tmp_path / "a"), **kw)
    b = train_simcse(out_dir=str(tmp_path / "b"), **kw)
    _assert_same_weights(a.model, b.model)
    assert a.losses == b.losses
    c = train_simcse(out_dir=str(tmp_path / "c"), **{**kw, "seed": 8})
    assert a.losses != c.losses


def test_resume_equals_uninterrupted(simcse_base_dir, simcse_corpus, tmp_path):
    # 2 epochs x 5 micro-batches, accumulated in pairs: 6 optimizer steps (3 per epoch)
    kw = dict(model=str(simcse_base_dir), corpus=str(simcse_corpus), pooling="cls", epochs=2,
              grad_accum=2, seed=3, **SMALL)
    full = train_simcse(out_dir=str(tmp_path / "full"), save_every=2, **kw)
    assert full.total_steps == 6
    half = train_simcse(out_dir=str(tmp_path / "run"), stop_at=4, **kw)
    assert not half.complete and half.out_dir is None and half.steps == 4
    assert half.checkpoint.name == "step-000004"
    assert (half.checkpoint / "training_state" / "optimizer.pt").is_file()
    assert SimCSEConfig.from_checkpoint(half.checkpoint).grad_accum == 2
    with pytest.raises(ConfigError, match="lr"):
        train_simcse(resume=tmp_path / "run", lr=5e-4)
    resumed = train_simcse(resume=tmp_path / "run", progress=False)  # the output folder works too
    assert resumed.complete and resumed.steps == 6
    assert resumed.losses == full.losses
    _assert_same_weights(full.model, resumed.model)
    rec = json.loads((tmp_path / "run" / "embedkit.json").read_text(encoding="utf-8"))
    assert rec["resumed_from"] and rec["steps"] == 6
    from safetensors.torch import load_file

    fa = load_file(tmp_path / "full" / "model.safetensors")
    fb = load_file(tmp_path / "run" / "model.safetensors")
    assert all(torch.equal(fa[k], fb[k]) for k in fa)


def test_resume_restores_the_warmup_schedule(simcse_base_dir, simcse_corpus, tmp_path):
    # 2 epochs x 5 batches = 10 steps; warmup 4, stopped inside it at step 3
    kw = dict(model=str(simcse_base_dir), corpus=str(simcse_corpus), pooling="last-avg",
              epochs=2, warmup_steps=4, seed=4, **SMALL)
    full = train_simcse(out_dir=str(tmp_path / "full"), **kw)
    half = train_simcse(out_dir=str(tmp_path / "run"), stop_at=3, **kw)
    sched = torch.load(half.checkpoint / "training_state" / "scheduler.pt", weights_only=True)
    assert sched["last_epoch"] == 3 and sched["_last_lr"][0] == pytest.approx(3 / 4 * 1e-3)
    resumed = train_simcse(resume=half.checkpoint, progress=False)
    assert resumed.losses == full.losses
    _assert_same_weights(full.model, resumed.model)


def test_saved_folder_encodes_as_in_memory(trained_cls, simcse_sentences):
    r = trained_cls
    enc = Encoder(str(r.out_dir))
    assert enc.default_pooling == "cls"  # declared through modules.json
    model = r.model.eval()
    sents = simcse_sentences[:6]
    with torch.no_grad():
        batch = r.tokenizer(sents, padding=True, truncation=True, max_length=64,
                            return_tensors="pt", return_token_type_ids=False)
        out = model(**batch, token_type_ids=torch.zeros_like(batch["input_ids"]))
        mine = pool("cls", out, batch["attention_mask"], model).numpy()
    np.testing.assert_allclose(enc.encode(sents), mine, atol=1e-5)
    from transformers import AutoModel

    am = AutoModel.from_pretrained(r.out_dir)
    _assert_same_weights(am, model)


@pytest.mark.parametrize("pooling", ["cls", "last-avg"])
def test_sentence_transformers_matches_encoder(pooling, simcse_base_dir, simcse_corpus, tmp_path,
                                              simcse_sentences):
    from sentence_transformers import SentenceTransformer

    r = train_simcse(model=str(simcse_base_dir), corpus=str(simcse_corpus),
                     out_dir=str(tmp_path / "m"), pooling=pooling, max_sentences=16, **SMALL)
    assert r.steps == 2
    enc = Encoder(str(r.out_dir))
    assert enc.default_pooling == pooling
    st = SentenceTransformer(str(r.out_dir), device="cpu")
    sents = simcse_sentences[:8]
    np.testing.assert_allclose(st.encode(sents, convert_to_numpy=True), enc.encode(sents),
                               atol=1e-5)


def test_first_last_avg_declared_without_sentence_transformers(simcse_base_dir, simcse_corpus,
                                                               tmp_path):
    r = train_simcse(model=str(simcse_base_dir), corpus=str(simcse_corpus),
                     out_dir=str(tmp_path / "m"), pooling="first-last-avg", max_sentences=8,
                     **SMALL)
    assert not (r.out_dir / "modules.json").exists()
    rec = json.loads((r.out_dir / "embedkit.json").read_text(encoding="utf-8"))
    assert rec["pooling_declaration"]["sentence_transformers"] is False
    assert "cannot express" in rec["pooling_declaration"]["note"]
    assert Encoder(str(r.out_dir)).default_pooling == "first-last-avg"


def test_dropout_on_in_training_off_in_eval(simcse_base_dir, simcse_sentences):
    model, tok, original = load_training_model(str(simcse_base_dir), 0.3)
    assert original == {"hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}
    assert model.config.hidden_dropout_prob == 0.3
    assert model.config.attention_probs_dropout_prob == 0.3
    batch = tok(simcse_sentences[:4], padding=True, return_tensors="pt")
    model.train()
    a, b = model(**batch).last_hidden_state, model(**batch).last_hidden_state
    assert not torch.allclose(a, b)
    model.eval()
    with torch.no_grad():
        c, d = model(**batch).last_hidden_state, model(**batch).last_hidden_state
    assert torch.equal(c, d)


def test_bfloat16_autocast_runs(simcse_base_dir, simcse_corpus, tmp_path):
    r = train_simcse(model=str(simcse_base_dir), corpus=str(simcse_corpus),
                     out_dir=str(tmp_path / "m"), dtype="bfloat16", max_sentences=16, **SMALL)
    assert r.steps == 2 and np.isfinite(r.final_loss)
    assert next(r.model.parameters()).dtype == torch.float32


def test_task_sentences_sampling_and_record(simcse_base_dir, tmp_path):
    rows = ["我喜欢北京\t我爱北京\t1", "今天天气很好\t我喜欢北京\t0"]
    (tmp_path / "train.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (tmp_path / "test.tsv").write_text("外面下雨了\t外边在下雨\t1\n", encoding="utf-8")
    spec = tmp_path / "mini.json"
    spec.write_text(json.dumps({"name": "mini", "files": {"train": "train.tsv",
                                                          "test": "test.tsv"},
                                "max_length": 40}), encoding="utf-8")
    sents, desc, max_len = task_sentences([str(spec)])
    assert sents == ["我喜欢北京", "我爱北京", "今天天气很好", "外面下雨了", "外边在下雨"]
    assert max_len == 40 and set(desc["tasks"]["mini"]) == {"train", "test"}
    s1, idx = sample_examples(sents, 3, seed=5)
    assert s1 == sample_examples(sents, 3, seed=5)[0] and len(s1) == 3 and idx == sorted(idx)
    assert sample_examples(sents, 10, seed=5)[0] == sents  # fewer than asked: all of them
    r = train_simcse(model=str(simcse_base_dir), tasks=str(spec), out_dir=str(tmp_path / "m"),
                     batch_size=4, progress=False)
    assert r.record["max_length"] == 40 and r.record["data"]["sampled"] == 5


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 1}, "at least 2"),
    ({"corpus": None}, "no training data"),
    ({"tasks": "LCQMC"}, "exactly one"),
    ({"dtype": "float16"}, "bfloat16"),
    ({"pooling": "nope"}, "unknown pooling"),
    ({"out_dir": None}, "out_dir"),
    ({"pairs": ["x.tsv"]}, "supervised"),
])
def test_config_errors(kwargs, match, simcse_corpus):
    cfg = {"model": "unused", "corpus": str(simcse_corpus), "out_dir": "o", **kwargs}
    with pytest.raises(ConfigError, match=match):
        train_simcse(SimCSEConfig(**cfg))


def test_empty_corpus_and_foreign_out_dir(simcse_base_dir, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="at least 2"):
        train_simcse(model=str(simcse_base_dir), corpus=str(empty), out_dir=str(tmp_path / "o"))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "precious.txt").write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match="not empty"):
        train_simcse(model=str(simcse_base_dir), corpus=str(empty), out_dir=str(tmp_path / "busy"))


def test_base_without_pooler_and_undeclarable_pooling(simcse_base_dir, simcse_corpus, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModel

    bare = tmp_path / "bare"
    AutoModel.from_pretrained(simcse_base_dir, add_pooling_layer=False).save_pretrained(bare)
    for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        if (simcse_base_dir / f).is_file():
            (bare / f).write_bytes((simcse_base_dir / f).read_bytes())
    kw = dict(model=str(bare), corpus=str(simcse_corpus), max_sentences=8, **SMALL)
    with pytest.raises(ConfigError, match="pooler weights"):
        train_simcse(out_dir=str(tmp_path / "p"), pooling="pooler", **kw)
    r = train_simcse(out_dir=str(tmp_path / "m"), pooling="layers-avg:0,-1", **kw)
    assert not any("pooler" in k for k in load_file(r.out_dir / "model.safetensors"))
    cfg = json.loads((r.out_dir / "config.json").read_text(encoding="utf-8"))
    assert "uniem_embedding_strategy" not in cfg and cfg["hidden_dropout_prob"] == 0.1
    assert "pooling layers-avg:0,-1" in r.record["pooling_declaration"]["note"]
