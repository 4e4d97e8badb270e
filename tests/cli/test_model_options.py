"""The model options are made from EncoderConfig's fields: one flag per flagged field, with the
field's help text, and encoder_config reads them back into the same config."""

from __future__ import annotations

import argparse
import dataclasses

from embedkit.cli.common import add_model_options, encoder_config
from embedkit.encoders import EncoderConfig


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_model_options(p)
    return p


def test_each_flagged_field_is_one_flag_with_its_help():
    actions = {a.dest: a for a in _parser()._actions}
    flagged = [f for f in dataclasses.fields(EncoderConfig) if f.metadata.get("flag")]
    assert {f.name for f in flagged} == {"revision", "device", "dtype", "lowercase",
                                         "batch_size", "backend", "quantize", "threads",
                                         "prompt", "instruction", "truncate_dim", "calibration",
                                         "token_budget"}
    for f in flagged:
        action = actions[f.name]
        assert action.option_strings == ["--" + f.name.replace("_", "-")]
        assert action.help == f.metadata["help"] and action.default == f.default


def test_encoder_config_reads_the_flags_back():
    args = _parser().parse_args(["--model", "org/m", "--lowercase", "--batch-size", "8",
                                 "--backend", "onnx", "--truncate-dim", "16", "--no-cache"])
    assert encoder_config(args, pooling="cls") == EncoderConfig(
        "org/m", lowercase=True, batch_size=8, backend="onnx", truncate_dim=16, cache=False,
        pooling="cls")
    default = encoder_config(_parser().parse_args([]))
    assert default == EncoderConfig()
