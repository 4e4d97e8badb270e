"""The one sentence-transformers folder writer: a path or an in-memory model, with or without a
Dense map and a Normalize module; SentenceTransformer reads it back and encodes as embedkit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedkit.encoders import Encoder
from embedkit.encoders.st_folder import STFolderSettings, save_st_folder, st_pooling_mode
from embedkit.errors import ConfigError


def test_folder_encodes_like_embedkit(tiny_model_dir, tmp_path):
    pytest.importorskip("sentence_transformers")
    from sentence_transformers import SentenceTransformer

    enc = Encoder(str(tiny_model_dir), cache=None)
    texts = ["一个女孩在梳头。", "一个人在切黄瓜。", "一群男人在海滩上踢足球。"]
    rng = np.random.default_rng(0)
    kernel, bias = rng.normal(size=(enc.dim, 5)), rng.normal(size=enc.dim)
    out = save_st_folder(tmp_path / "st", str(tiny_model_dir), STFolderSettings(
        "mean", 32, kernel=kernel, bias=bias, normalize=True, json_files={"meta.json": {"a": 1}}))
    assert json.loads((out / "meta.json").read_text(encoding="utf-8")) == {"a": 1}
    got = SentenceTransformer(str(out), device="cpu").encode(texts, convert_to_numpy=True)
    want = (enc.encode(texts, "last-avg", max_length=32).astype(np.float64) + bias) @ kernel
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert not [p for p in tmp_path.iterdir() if p.name != "st"]  # no temporary left


def test_in_memory_model_and_errors(tiny_model_dir, tmp_path):
    pytest.importorskip("sentence_transformers")
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(str(tiny_model_dir))
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    out = save_st_folder(tmp_path / "mem", model, STFolderSettings("cls", 16), tok)
    enc = Encoder(str(tiny_model_dir), cache=None)
    got = SentenceTransformer(str(out), device="cpu").encode(["你好"], convert_to_numpy=True)
    np.testing.assert_allclose(got, enc.encode(["你好"], "cls", max_length=16), atol=1e-5)
    with pytest.raises(ConfigError, match="tokenizer"):
        save_st_folder(tmp_path / "x", model, STFolderSettings("cls", 16))
    with pytest.raises(ConfigError, match="safetensors, npz or faiss") as e:
        st_pooling_mode("first-last-avg")
    assert e.value.param == "pooling"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mem"]


def test_rewriting_a_folder_keeps_its_modules(tiny_model_dir, tmp_path):
    """A map written over a sentence-transformers folder goes after the folder's own modules
    (a map fitted on truncated vectors gets zero rows for the dimensions cut)."""
    from tests.conftest import save_st, st_vectors

    base = save_st(tmp_path / "base", tiny_model_dir, "mean", "dense-nobias-ln")
    texts = ["一个女孩在梳头。", "男孩"]
    full = Encoder(str(base), cache=None).encode(texts, max_length=32).astype(np.float64)
    kernel = np.random.default_rng(0).normal(size=(8, 3))
    out = save_st_folder(tmp_path / "w", str(base),
                         STFolderSettings("mean", 32, kernel=kernel, bias=np.ones(8)))
    np.testing.assert_allclose(st_vectors(out, texts), (full[:, :8] + 1) @ kernel, atol=1e-5)
    np.testing.assert_allclose(Encoder(str(out), cache=None).encode(texts, max_length=32),
                               st_vectors(out, texts), atol=1e-5)


def test_a_normalize_tail_runs_in_numpy_as_torch(tmp_path):
    """Normalize after the pooling is computed in numpy (no torch import on the exported
    backends), as torch's F.normalize: rows over max(norm, 1e-12), zero rows stay zero."""
    import numpy as np
    import torch

    from embedkit.encoders.st_folder import STFolder, _STModule

    st = STFolder(tmp_path, "", "mean", tail=(_STModule("Normalize", "2_Normalize"),))
    x = np.random.default_rng(0).normal(size=(20, 48)).astype(np.float32) * 30
    x[3] = 0.0
    want = torch.nn.functional.normalize(torch.from_numpy(x), p=2, dim=-1).numpy()
    got = st.apply(x)
    assert got.dtype == np.float32 and np.abs(got - want).max() < 1e-6
    assert not got[3].any()
