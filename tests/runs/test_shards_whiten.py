"""Whitening fitted over an encode folder's shards equals one fit in memory; the exported map
carries the recipe's model, pooling and max length."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from embedkit.encoders import EncoderConfig
from embedkit.errors import ConfigError
from embedkit.postprocess import RankDeficientWarning, Whitening, load_transform
from embedkit.runs.encode import EncodeSettings, run_encode
from embedkit.runs.whiten import WhitenSettings, fit_whitening_shards, run_whiten
from embedkit.store.encode_folder import EncodeFolder
from tests.conftest import source_sentences

pytest.importorskip("pyarrow")
pytestmark = pytest.mark.filterwarnings("ignore::embedkit.postprocess.RankDeficientWarning")


@pytest.fixture
def encoded(tmp_path, tiny_model_dir):
    texts = list(dict.fromkeys(source_sentences()))
    texts = texts + [s[::-1] for s in texts] + texts[:10]  # repeats: every row counts
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(texts), encoding="utf-8")
    config = EncoderConfig(str(tiny_model_dir), pooling="cls", cache=False)
    run_encode(config, corpus, tmp_path / "emb", EncodeSettings(shard_size=30, max_length=32))
    return tmp_path / "emb"


def _all_vectors(folder):
    return np.concatenate([x for _, _, x in folder.shards(texts=False)])


def test_from_shards_equals_in_memory(encoded):
    folder = EncodeFolder.open(encoded)
    x = _all_vectors(folder)
    for k in (None, 8):
        streamed = fit_whitening_shards(encoded, Whitening(n_components=k), chunk=7)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RankDeficientWarning)
            whole = Whitening(n_components=k).fit(x.astype(np.float64))
        assert streamed.n_samples_seen_ == x.shape[0] == folder.total_rows
        np.testing.assert_allclose(streamed.kernel_, whole.kernel_, atol=1e-6)
        np.testing.assert_allclose(streamed.bias_, whole.bias_, atol=1e-6)


def test_unique_rows(encoded):
    folder = EncodeFolder.open(encoded)
    w = fit_whitening_shards(folder, unique=True)
    assert w.n_samples_seen_ == folder.total_rows - 10


def test_run_exports_with_the_recipe(tmp_path, encoded):
    res = run_whiten(None, None, tmp_path / "w.safetensors", WhitenSettings(k=16),
                     embeddings=encoded)
    t = load_transform(res.path)
    recipe = EncodeFolder.open(encoded).recipe
    assert t.k == 16 and t.metadata["model"] == recipe.model_identity
    assert t.metadata["pooling"] == "cls" and t.metadata["max_length"] == 32
    assert t.metadata["fit_on"].startswith("embeddings:")
    with pytest.raises(ConfigError) as err:
        run_whiten(None, None, tmp_path / "w2.npz", WhitenSettings(k=64), embeddings=encoded)
    assert err.value.param == "k"
    with pytest.raises(ConfigError) as err:
        run_whiten(None, None, tmp_path / "w3.npz", WhitenSettings(max_length=16),
                   embeddings=encoded)
    assert err.value.param == "max_length"
