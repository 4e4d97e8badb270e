"""``run_whiten`` and its parts: chunked fitting equals one fit, the metadata, the export
formats, and checks that fail before anything is encoded."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from embedkit.data import load_task
from embedkit.data.selection import pair_sentences
from embedkit.encoders import Encoder, EncoderConfig
from embedkit.errors import ConfigError
from embedkit.postprocess import (
    RankDeficientWarning,
    Whitening,
    load_transform,
    resolve_post,
)
from embedkit.runs.whiten import (
    WhitenSettings,
    export_format,
    fit_whitening,
    run_whiten,
)

pytestmark = pytest.mark.filterwarnings("ignore::embedkit.postprocess.RankDeficientWarning")


def occurrences(spec_file, splits=("valid", "test")):
    data = load_task(str(spec_file), list(splits))
    return pair_sentences([data[s] for s in splits])


def test_fit_whitening_chunks_equal_one_fit(wt_model_dir, wt_spec_file):
    sents = occurrences(wt_spec_file)
    # batch size 1: no padding, so a sentence's vector does not depend on its batch
    enc = Encoder(str(wt_model_dir), cache=None, batch_size=1, token_budget=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficientWarning)
        a = fit_whitening(enc, "cls", sents, Whitening(gamma=0.5, n_components=20), chunk=7)
        b = Whitening(gamma=0.5, n_components=20).fit(enc.encode(sents, "cls", max_length=64))
    assert a.n_samples_seen_ == 80
    np.testing.assert_allclose(a.kernel_, b.kernel_, rtol=1e-7, atol=1e-9)


def test_run_whiten_api(wt_encoder, wt_spec_file, tmp_path):
    out = tmp_path / "w.safetensors"
    res = run_whiten(wt_encoder, f"{wt_spec_file}:valid", out,
                     WhitenSettings(gamma=0.5, k=8, normalize=True), pooling="mean")
    assert (res.path, res.format, res.pooling, res.max_length) == (out, "safetensors",
                                                                   "last-avg", 64)
    assert res.spec == "whiten:beta=1,gamma=0.5,k=8,norm"
    t = load_transform(out)
    assert t.map.normalize and t.metadata["normalize"] is True and "command" not in t.metadata
    assert (t.metadata["k"], t.metadata["k_spec"], t.metadata["pooling"]) == (8, "8", "last-avg")
    ref = Whitening(gamma=0.5, n_components=8).fit(
        wt_encoder.encode(occurrences(wt_spec_file, ["valid"]), "last-avg"))
    np.testing.assert_allclose(t.map.kernel, ref.kernel_, rtol=1e-5, atol=1e-6)
    # the file, named by its suffix, is a post-processing chain with its normalisation
    assert [name for name, _ in resolve_post(str(out)).steps] == ["file", "norm"]


def test_checks_before_encoding(wt_spec_file, tmp_path):
    # a model that does not exist: every error below comes before it would be loaded
    enc = EncoderConfig(str(tmp_path / "no-model"), cache=False)
    cases = [
        (dict(settings=WhitenSettings(gamma=float("nan"))), "gamma"),
        (dict(settings=WhitenSettings(k=0)), "k"),
        (dict(format="npz"), "format"),
        (dict(format="sentence-transformers", pooling="first-last-avg",
              out=tmp_path / "st"), "pooling"),
    ]
    for kw, param in cases:
        out = kw.pop("out", tmp_path / "w.safetensors")
        with pytest.raises(ConfigError) as e:
            run_whiten(enc, str(wt_spec_file), out, **kw)
        assert e.value.param == param, (kw, e.value)
    with pytest.raises(ConfigError, match="max_length must be at least 3") as e:
        WhitenSettings(max_length=2)
    assert e.value.param == "max_length"
    assert not list(tmp_path.iterdir())


def test_export_format():
    assert export_format("w.bin", None) == "safetensors"
    assert export_format("w.faiss", None) == "faiss"
    assert export_format("w.npz", "faiss") == "faiss"  # as before: faiss takes any name
    with pytest.raises(ConfigError, match="make them agree"):
        export_format("w.safetensors", "npz")
    with pytest.raises(ConfigError, match="valid formats"):
        export_format("w", "onnx")


def test_one_runner_over_sentences_or_their_shards(wt_model_dir, wt_spec_file, tmp_path):
    """The same vectors give the same map and the same record of what made them, whether the
    runner encodes the sentences or reads them from an encode folder's shards."""
    from embedkit.runs.encode import EncodeSettings, run_encode

    texts = occurrences(wt_spec_file)  # with repeats: every occurrence counts in both
    corpus = tmp_path / "fit.txt"
    corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
    enc = Encoder(str(wt_model_dir), cache=None, batch_size=1, token_budget=0)  # no padding
    run_encode(enc, corpus, tmp_path / "emb", EncodeSettings(shard_size=7, max_length=32),
               pooling="cls")
    settings = WhitenSettings(k=16, max_length=32)
    a = run_whiten(enc, str(corpus), tmp_path / "a.npz", settings, pooling="cls")
    b = run_whiten(None, None, tmp_path / "b.npz", settings, embeddings=tmp_path / "emb")
    assert a.whitening.n_samples_seen_ == b.whitening.n_samples_seen_ == len(texts)
    np.testing.assert_allclose(b.whitening.kernel_, a.whitening.kernel_, rtol=1e-6, atol=1e-8)
    same = ("kind", "k", "k_spec", "model", "pooling", "max_length", "dtype", "lowercase",
            "n_samples", "normalize")
    assert {k: b.metadata[k] for k in same} == {k: a.metadata[k] for k in same}
    assert (a.fit is not None, b.fit) == (True, None)
    assert b.metadata["fit_vectors"] == {"dtype": "float32", "normalized": False}
    assert "fit_vectors" not in a.metadata


def test_source_options_are_checked(wt_encoder, wt_spec_file, tmp_path):
    out = tmp_path / "w.npz"
    for kw in (dict(), dict(fit_on=str(wt_spec_file), embeddings=tmp_path)):
        with pytest.raises(ConfigError, match="sentences to fit on or an encode folder") as e:
            run_whiten(wt_encoder, kw.pop("fit_on", None), out, **kw)
        assert e.value.param == "fit_on"
    # what needs the model is refused before the folder is read (it does not exist)
    for kw, param in ((dict(calibrate="tiny"), "calibrate"), (dict(pooling="cls"), "pooling"),
                      (dict(format="sentence-transformers"), "format")):
        with pytest.raises(ConfigError) as e:
            run_whiten(None, None, tmp_path / "st" if "format" in kw else out,
                       embeddings=tmp_path / "missing", **kw)
        assert e.value.param == param, kw
