"""A model folder's tokenizer and config read without transformers (and torch), against
transformers' own on the tiny models."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from embedkit.encoders.base import load_tokenizer
from embedkit.encoders.tokenizer_file import FileTokenizer, file_config, same_as_transformers

TEXTS = ["一个人正在切黄瓜。", "Hello World, it's 3.14!", "", "海龟在水中游泳 " * 20]


@pytest.mark.parametrize("kind", ["bert", "qwen2-left", "gpt2-left"])
def test_the_files_tokenise_as_transformers(kind, tiny_model_dir, make_tiny_decoder):
    folder = str(tiny_model_dir) if kind == "bert" else str(
        make_tiny_decoder(*kind.split("-")))
    mine, theirs = FileTokenizer(folder), load_tokenizer(folder, folder, None)[0]
    for kw in ({"truncation": False}, {"truncation": True, "max_length": 7}):
        assert mine(TEXTS, **kw)["input_ids"] == [list(x) for x in theirs(TEXTS, **kw)["input_ids"]]
    assert (mine.pad_token_id, mine.eos_token_id, mine.padding_side) == (
        theirs.pad_token_id, theirs.eos_token_id, theirs.padding_side)
    assert same_as_transformers(folder)


def test_a_difference_is_found(tiny_model_dir, tmp_path):
    """Without a pad token in tokenizer_config.json transformers' BERT tokenizer still has its
    class default [PAD], which tokenizer.json alone cannot know: the check says no."""
    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder)
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg.pop("pad_token", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    assert not same_as_transformers(str(folder))
    assert not same_as_transformers(str(tmp_path / "no-such-folder"))


def test_config_and_tokenizer_import_no_torch(tiny_model_dir):
    code = ("import sys\nfrom embedkit.encoders.tokenizer_file import FileTokenizer, file_config\n"
            f"t = FileTokenizer({str(tiny_model_dir)!r}); c = file_config({str(tiny_model_dir)!r})\n"
            "t(['猫'], truncation=True, max_length=8)\n"
            "print(c.hidden_size, 'torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60, env=_env())
    width = file_config(str(tiny_model_dir)).hidden_size
    assert out.stdout.split() == [str(width), "False", "False"]


def _env() -> dict:
    """This checkout first on the path (the installed package may be another checkout)."""
    import os
    from pathlib import Path

    import embedkit

    root = str(Path(embedkit.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
