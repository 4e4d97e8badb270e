"""The training config: declarative constraints, errors that name the parameter, resume merge."""

from __future__ import annotations

import dataclasses

import pytest

from embedkit.errors import ConfigError
from embedkit.training import SimCSEConfig
from embedkit.training.config import merge_for_resume, unset_config

OK = {"model": "unused", "corpus": "c.txt", "out_dir": "o"}


@pytest.mark.parametrize("kwargs, param, match", [
    ({"batch_size": 1}, "batch_size", "batch_size must be at least 2"),
    ({"lr": 0.0}, "lr", "lr must be positive"),
    ({"lr": float("nan")}, "lr", "lr must be positive"),
    ({"epochs": 0}, "epochs", "epochs must be at least 1"),
    ({"dropout": 1.0}, "dropout", r"dropout must be in \[0, 1\)"),
    ({"max_length": 2}, "max_length", "max_length must be at least 3"),
    ({"dtype": "float16"}, "dtype", "dtype must be float32 or bfloat16"),
    ({"loss": "mse"}, "loss", "loss must be infonce or cosent"),
    ({"source": "web"}, "source", "source must be auto or local or hub"),
    ({"pooling": "nope"}, "pooling", "unknown pooling"),
    ({"keep_checkpoints": -1}, "keep_checkpoints", "keep_checkpoints must be at least 0"),
    ({"stop_at": 0}, "stop_at", "stop_at must be at least 1"),
    ({"out_dir": None}, "out_dir", "out_dir is required"),
    ({"corpus": None}, "tasks", "no training data"),
    ({"tasks": ["LCQMC"]}, "tasks", "exactly one of tasks and corpus"),
    ({"hard_negatives": True}, "supervised", "need supervised=True"),
    ({"supervised": True}, "supervised", "not tasks/corpus"),
    ({"seed": None}, "seed", "seed must be set"),
    # integer fields go through errors.check_int first (before: 1.5 >= 1 passed)
    ({"epochs": 1.5}, "epochs", "epochs must be an integer; got 1.5"),
    ({"seed": True}, "seed", "seed must be an integer; got True"),
    ({"max_length": 64.0}, "max_length", "max_length must be an integer; got 64.0"),
])
def test_errors_name_the_parameter(kwargs, param, match):
    with pytest.raises(ConfigError, match=match) as e:
        SimCSEConfig(**{**OK, **kwargs}).validate()
    assert e.value.param == param
    assert "--" not in str(e.value)  # no command-line flags in library messages


def test_every_field_is_declared_with_help():
    for f in dataclasses.fields(SimCSEConfig):
        assert f.metadata.get("help"), f.name


def test_normalised_values():
    cfg = SimCSEConfig(tasks="LCQMC", pairs="p.tsv", dtype="bf16", max_grad_norm=0,
                       out_dir=__import__("pathlib").Path("o"))
    assert cfg.tasks == ["LCQMC"] and cfg.pairs == ["p.tsv"] and cfg.dtype == "bfloat16"
    assert cfg.max_grad_norm is None and cfg.out_dir == "o"
    assert SimCSEConfig(supervised=True, loss="cosent").method == "cosent"
    assert SimCSEConfig().resolved_dropout() == 0.3
    assert SimCSEConfig(supervised=True).resolved_dropout() is None
    assert SimCSEConfig().resolved_max_sentences() == 10_000


def test_merge_for_resume():
    stored = SimCSEConfig(**OK, lr=1e-3, seed=3, pooling="cls", save_every=2)
    merged = merge_for_resume(unset_config(save_every=5, pooling="cls"), stored)
    assert merged.lr == 1e-3 and merged.seed == 3 and merged.save_every == 5
    assert merge_for_resume(unset_config(lr=1e-5), stored).lr == 1e-3  # the default: stored
    with pytest.raises(ConfigError, match="lr 0.0005") as e:
        merge_for_resume(unset_config(lr=5e-4), stored)
    assert e.value.param == "resume"
