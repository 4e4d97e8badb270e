"""Reliability of model loading and encoding (issue 9): the identity covers the tokenizer, a model
that outputs NaN/inf is an error, and weights torch refuses to unpickle are one clear line."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from embedkit.encoders import Encoder
from embedkit.encoders.cache import EmbeddingCache
from embedkit.encoders.models import model_identity
from embedkit.errors import EmbedkitError
from tests.conftest import cli_error


def copy_of(model_dir: Path, tmp_path: Path, name: str = "copy") -> Path:
    copy = tmp_path / name
    shutil.copytree(model_dir, copy)
    return copy


# -- 9.3: the tokenizer is part of the identity -------------------------------------------------

def _flip_lowercase(d: Path) -> None:
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg["do_lower_case"] = not cfg.get("do_lower_case", False)
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))


def _swap_vocab_lines(d: Path) -> None:
    lines = (d / "vocab.txt").read_text(encoding="utf-8").splitlines()
    lines[10], lines[11] = lines[11], lines[10]
    (d / "vocab.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _edit_tokenizer_json(d: Path) -> None:
    tok = json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))
    tok["normalizer"]["lowercase"] = not tok["normalizer"].get("lowercase", False)
    (d / "tokenizer.json").write_text(json.dumps(tok), encoding="utf-8")


def _add(name: str, content: bytes):
    def write(d: Path) -> None:
        (d / name).write_bytes(content)
    return write


@pytest.mark.parametrize("change", [
    pytest.param(_flip_lowercase, id="do_lower_case", marks=pytest.mark.reliability(
        "9.3", "tokenizer_config.json do_lower_case flipped: the model identity changes")),
    pytest.param(_swap_vocab_lines, id="vocab.txt", marks=pytest.mark.reliability(
        "9.3", "vocab.txt edited: the model identity changes")),
    pytest.param(_edit_tokenizer_json, id="tokenizer.json", marks=pytest.mark.reliability(
        "9.3", "tokenizer.json edited: the model identity changes")),
    pytest.param(_add("special_tokens_map.json", b'{"unk_token": "[MASK]"}'),
                 id="special_tokens_map.json", marks=pytest.mark.reliability(
        "9.3", "special_tokens_map.json added: the model identity changes")),
    pytest.param(_add("added_tokens.json", b'{"[NEW]": 200}'), id="added_tokens.json",
                 marks=pytest.mark.reliability(
        "9.3", "added_tokens.json added: the model identity changes")),
    pytest.param(_add("spiece.model", b"\x0a\x05hello"), id="sentencepiece",
                 marks=pytest.mark.reliability(
        "9.3", "a sentencepiece model added: the model identity changes")),
])
def test_tokenizer_files_are_part_of_the_identity(tiny_model_dir, tmp_path, change):
    copy = copy_of(tiny_model_dir, tmp_path)
    assert model_identity(str(copy)) == model_identity(str(tiny_model_dir))
    change(copy)
    assert model_identity(str(copy)) != model_identity(str(tiny_model_dir))


def test_files_that_do_not_change_vectors_keep_the_identity(tiny_model_dir, tmp_path):
    copy = copy_of(tiny_model_dir, tmp_path)
    (copy / "README.md").write_text("notes")
    (copy / "eval-results.json").write_text("{}")
    assert model_identity(str(copy)) == model_identity(str(tiny_model_dir))


@pytest.mark.reliability("9.3", "do_lower_case flipped after caching: the cache misses and the "
                                "new tokenizer's vectors are served, not the stale ones")
def test_changed_tokenizer_misses_the_cache(tiny_model_dir, tmp_path):
    texts = ["ABC 一个人在切洋葱。", "Hello 一个女人在跳舞。"]  # the vocabulary has lower case only
    root = tmp_path / "cache"
    copy = copy_of(tiny_model_dir, tmp_path)
    before = Encoder(str(copy), cache=EmbeddingCache(root)).encode(texts, "cls")
    _flip_lowercase(copy)
    enc = Encoder(str(copy), cache=EmbeddingCache(root))
    after = enc.encode(texts, "cls")
    fresh = Encoder(str(copy), cache=None).encode(texts, "cls")
    assert enc.stats.cache_hits == 0 and enc.stats.encoded == 2
    np.testing.assert_allclose(after, fresh, atol=1e-6)
    assert np.abs(after - before).max() > 1e-3  # the stale vectors really differ
    assert {e["settings"]["model_identity"] for e in EmbeddingCache(root).namespaces()} == {
        model_identity(str(tiny_model_dir)), model_identity(str(copy))}


# -- 9.9: a model that outputs NaN/inf ----------------------------------------------------------

@pytest.fixture
def nan_model(tiny_model_dir, tmp_path) -> tuple[Path, str]:
    """A copy of the tiny model whose embedding of one character is NaN: every sentence with
    that character encodes to NaN."""
    from safetensors.torch import load_file, save_file

    copy = copy_of(tiny_model_dir, tmp_path, "nan-model")
    vocab = (copy / "vocab.txt").read_text(encoding="utf-8").splitlines()
    char = "洋"
    state = load_file(copy / "model.safetensors")
    key = next(k for k in state if k.endswith("word_embeddings.weight"))
    state[key][vocab.index(char)] = torch.nan
    save_file(state, copy / "model.safetensors", metadata={"format": "pt"})
    return copy, char


@pytest.mark.reliability("9.9", "a model that outputs NaN: a clear error naming the model and "
                                "how many sentences, nothing cached")
def test_model_output_nan_is_an_error(nan_model, sentences):
    folder, char = nan_model
    texts = list(dict.fromkeys(sentences))
    n_bad = sum(char in s for s in texts)
    assert 0 < n_bad < len(texts)
    enc = Encoder(str(folder), cache=EmbeddingCache())
    with pytest.raises(EmbedkitError) as e:
        enc.encode(texts, "last-avg")
    assert str(e.value).startswith(
        f"model '{folder}' produced vectors that are not finite (NaN or inf) for {n_bad} of "
        f"{len(texts)} sentences (pooling last-avg; the first: ")
    assert "its weights may be damaged" in str(e.value)
    assert [e["rows"] for e in enc.cache.namespaces()] == [0]  # no garbage cached


@pytest.mark.reliability("9.9", "bench on a model that outputs NaN: one line, exit 2, no score")
def test_bench_on_a_nan_model(nan_model, spec_file, capsys, tmp_path):
    folder, _ = nan_model
    out = tmp_path / "result.json"
    msg = cli_error(capsys, ["bench", "--model", str(folder), "--tasks", str(spec_file),
                             "--pooling", "cls", "--output", str(out)])
    assert msg.startswith(f"model '{folder}' produced vectors that are not finite (NaN or inf)")
    assert not out.exists()


# -- 9.tb: weights torch refuses to unpickle ---------------------------------------------------

class _Payload:
    """What a malicious pickle would run: here, create a marker folder."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.makedirs, (self.marker,)


def _bin_with_code(folder: Path) -> None:
    torch.save({"embeddings.word_embeddings.weight": _Payload(str(folder / "PWNED"))},
               folder / "pytorch_model.bin")


def _bin_garbage(folder: Path) -> None:
    (folder / "pytorch_model.bin").write_bytes(b"this is not a pickle")


def _bin_empty(folder: Path) -> None:
    (folder / "pytorch_model.bin").write_bytes(b"")


@pytest.mark.parametrize("weights", [
    pytest.param(_bin_with_code, id="pickled-code", marks=pytest.mark.reliability(
        "9.tb", "pytorch_model.bin holding pickled code (weights_only refusal): one line naming "
                "the folder, code not run")),
    pytest.param(_bin_garbage, id="not-a-pickle", marks=pytest.mark.reliability(
        "9.tb", "pytorch_model.bin that is not a valid pickle: one line naming the folder")),
    pytest.param(_bin_empty, id="empty", marks=pytest.mark.reliability(
        "9.tb", "an empty pytorch_model.bin: one line naming the folder")),
])
def test_weights_torch_refuses(tiny_model_dir, spec_file, tmp_path, capsys, weights):
    folder = copy_of(tiny_model_dir, tmp_path, "bad-weights")
    (folder / "model.safetensors").unlink()
    weights(folder)
    msg = cli_error(capsys, ["bench", "--model", str(folder), "--tasks", str(spec_file),
                             "--no-cache"])
    assert msg.startswith(f"--model: cannot load model '{folder}': torch refused to unpickle the "
                          f"weights in {folder} (pytorch_model.bin): not a valid checkpoint, or "
                          "it holds objects other than tensors, which embedkit never loads")
    assert not (folder / "PWNED").exists()


@pytest.mark.reliability("9.tb", "a damaged model.safetensors: one line naming the folder")
def test_damaged_safetensors(tiny_model_dir, spec_file, tmp_path, capsys):
    folder = copy_of(tiny_model_dir, tmp_path, "bad-safetensors")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[:len(data) // 2])
    msg = cli_error(capsys, ["bench", "--model", str(folder), "--tasks", str(spec_file),
                             "--no-cache"])
    assert msg.startswith(f"--model: cannot load model '{folder}': the weights in {folder} "
                          "(model.safetensors) are damaged or do not fit its config.json (")
