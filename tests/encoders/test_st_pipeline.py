"""sentence-transformers folders run whole (issue 20 items 1, 4, 5): every module of
``modules.json`` in order on every backend, each pooling mode and ``include_prompt``, the
folder's truncate_dim and similarity, and modules embedkit cannot run refused in one line.

The reference is always ``SentenceTransformer(folder).encode`` on the same folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedkit.encoders import Encoder, EncoderConfig, read_st_folder
from embedkit.encoders.pooling import _KINDS
from embedkit.errors import ConfigError, UnsupportedModuleError
from tests.conftest import save_st, st_vectors

st = pytest.importorskip("sentence_transformers")
TEXTS = ["一个女孩在梳头。", "一个人在切黄瓜。", "一群男人在海滩上踢足球。", "男孩", "一个人在弹吉他。"]


def st_encode(folder: Path, texts=TEXTS, **kw) -> np.ndarray:
    return st_vectors(folder, texts, **kw)


@pytest.fixture(scope="module")
def st_folders(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("st-folders")
    return {"mean-dense-norm": save_st(root / "a", tiny_model_dir, "mean", "dense-tanh-norm"),
            "cls-dense-ln": save_st(root / "b", tiny_model_dir, "cls", "dense-nobias-ln")}


@pytest.mark.reliability("20.1", "ST folder's Dense/Normalize/LayerNorm run on every backend")
@pytest.mark.parametrize("backend", ["torch", "onnx", "openvino"])
@pytest.mark.parametrize("name", ["mean-dense-norm", "cls-dense-ln"])
def test_folder_pipeline_equals_sentence_transformers(st_folders, name, backend):
    folder = st_folders[name]
    enc = Encoder(str(folder), cache=None, backend=backend)
    got = enc.encode(TEXTS, max_length=32)
    assert got.shape == (len(TEXTS), 16) and enc.dim == 16
    np.testing.assert_allclose(got, st_encode(folder), atol=1e-5)
    assert str(enc.default_pooling) == ("last-avg" if name.startswith("mean") else "cls")
    described = enc.describe()
    assert [m["type"] for m in described["st_folder"]["modules_after_pooling"]] == (
        ["Dense", "Normalize"] if name.startswith("mean") else ["Dense", "LayerNorm"])


def test_tail_is_part_of_the_identity(st_folders, tiny_model_dir, tmp_path):
    folder = st_folders["mean-dense-norm"]
    enc = Encoder(str(folder), cache=None)
    assert ";st=sha256:" in enc.identity and ";st=sha256:" in enc.describe()["identity"]
    plain = save_st(tmp_path / "plain", tiny_model_dir, "mean")  # no tail: no st= part
    assert ";st=" not in Encoder(str(plain), cache=None).identity
    other = save_st(tmp_path / "other", tiny_model_dir, "mean", "dense-nobias-ln")
    assert Encoder(str(other), cache=None).identity != enc.identity


@pytest.mark.parametrize("mode", ["cls", "mean", "max", "mean_sqrt_len_tokens", "weightedmean"])
def test_each_pooling_mode_equals_sentence_transformers(tiny_model_dir, tmp_path, mode):
    folder = save_st(tmp_path / mode, tiny_model_dir, mode)
    enc = Encoder(str(folder), cache=None, batch_size=3)  # padded batches
    assert enc.default_pooling.st_mode is not None
    np.testing.assert_allclose(enc.encode(TEXTS, max_length=32), st_encode(folder), atol=1e-5)


@pytest.mark.parametrize("mode", ["mean", "max", "mean_sqrt_len_tokens"])
def test_include_prompt_false_equals_sentence_transformers(tiny_model_dir, tmp_path, mode):
    folder = save_st(tmp_path / mode, tiny_model_dir, mode, include_prompt=False)
    enc = Encoder(str(folder), cache=None, prompt="ab: ", batch_size=2)
    want = st_encode(folder, prompt="ab: ")
    np.testing.assert_allclose(enc.encode(TEXTS, max_length=32), want, atol=1e-5)
    with_prompt = Encoder(str(save_st(tmp_path / "in", tiny_model_dir, mode)), cache=None,
                          prompt="ab: ")
    assert np.abs(with_prompt.encode(TEXTS, max_length=32) - want).max() > 1e-4  # it matters
    assert "include_prompt=false" in enc.identity


def test_include_prompt_false_refused_where_a_mask_cannot_say_it(tiny_model_dir, tmp_path):
    folder = save_st(tmp_path / "w", tiny_model_dir, "weightedmean", include_prompt=False)
    enc = Encoder(str(folder), cache=None, prompt="ab: ")
    with pytest.raises(ConfigError, match="include_prompt=false") as e:
        enc.encode(TEXTS)
    assert e.value.param == "pooling"
    np.testing.assert_allclose(Encoder(str(folder), cache=None).encode(TEXTS, max_length=32),
                               st_encode(folder), atol=1e-5)  # no prompt: nothing to leave out


def test_lasttoken_maps_to_last_token_or_is_refused(tiny_model_dir, tmp_path):
    folder = save_st(tmp_path / "lt", tiny_model_dir, "lasttoken")
    if "last-token" in _KINDS:  # registered by the decoder work: then it runs
        assert str(Encoder(str(folder), cache=None).default_pooling) == "last-token"
        return
    with pytest.raises(UnsupportedModuleError, match="'lasttoken'.*last-token"):
        Encoder(str(folder), cache=None)
    # an explicit pooling overrides the declared one, and the folder loads
    assert Encoder(str(folder), "cls", cache=None).encode(["男孩"]).shape == (1, 32)


def test_pooling_override_is_a_notice(st_folders, caplog):
    enc = Encoder(str(st_folders["mean-dense-norm"]), cache=None)
    with caplog.at_level("INFO", logger="embedkit"):
        got = enc.encode(TEXTS, "cls", max_length=32)
    assert got.shape == (len(TEXTS), 16)  # the modules after the pooling still run
    assert any("pooling cls overrides it" in r.getMessage() for r in caplog.records)


@pytest.mark.reliability("20.4", "truncate_dim changes identity, cache namespace and record")
def test_truncate_dim(st_folders, spec_file, tmp_path):
    from embedkit.runs.bench import run_bench

    folder = st_folders["mean-dense-norm"]
    full = Encoder(str(folder), cache=None)
    cut = Encoder(str(folder), cache=None, truncate_dim=8)
    assert cut.dim == 8 and "truncate_dim=8" in cut.identity and cut.identity != full.identity
    np.testing.assert_array_equal(cut.encode(TEXTS), full.encode(TEXTS)[:, :8])
    np.testing.assert_allclose(cut.encode(TEXTS, max_length=32),
                               st_encode(folder, truncate_dim=8), atol=1e-5)
    spaces = [e.namespace("last-avg", 64) for e in (
        EncoderConfig(str(folder), truncate_dim=k, cache_dir=str(tmp_path)).build()
        for k in (None, 8))]
    assert spaces[0] != spaces[1]
    rec = run_bench(EncoderConfig(str(folder), truncate_dim=8, cache=False), None,
                    [str(spec_file)])
    assert rec["model"]["truncate_dim"] == 8 and rec["model"]["dim"] == 8
    with pytest.raises(ConfigError, match="between 1 and the model's 16") as e:
        Encoder(str(folder), cache=None, truncate_dim=17)
    assert e.value.param == "truncate_dim"


def test_folder_truncate_dim_and_similarity_are_honoured(tiny_model_dir, tmp_path):
    folder = save_st(tmp_path / "m", tiny_model_dir, "mean", "dense-tanh-norm",
                     config={"truncate_dim": 4, "similarity_fn_name": "dot"})
    enc = Encoder(str(folder), cache=None)
    assert (enc.dim, enc.describe()["similarity"]) == (4, "dot")
    assert Encoder(str(folder), cache=None, truncate_dim=16).dim == 16  # the setting wins


def test_read_st_folder_none_for_plain_model(tiny_model_dir):
    assert read_st_folder(tiny_model_dir) is None and read_st_folder(None) is None
