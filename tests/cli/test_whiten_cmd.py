"""``embedkit whiten`` on the command line: fitting on --fit-on, the four export formats, the
recorded fit info, and one-line errors."""

from __future__ import annotations

import json
import shlex

import numpy as np
import pytest

from embedkit.cli.main import main
from embedkit.data import load_task
from embedkit.data.selection import pair_sentences
from embedkit.postprocess import Whitening, load_transform
from embedkit.provenance import sha256_text

pytestmark = pytest.mark.filterwarnings("ignore::embedkit.postprocess.RankDeficientWarning")


def whiten(model, fit_on, out, *extra):
    return ["whiten", "--model", str(model), "--fit-on", str(fit_on), "--out", str(out),
            *map(str, extra)]


def occurrences(spec_file, splits=("valid", "test")):
    data = load_task(str(spec_file), list(splits))
    return pair_sentences([data[s] for s in splits])


def reference(encoder, sentences, pooling, **kw) -> Whitening:
    """A fresh Whitening fitted on all the vectors at once."""
    return Whitening(**kw).fit(encoder.encode(sentences, pooling, max_length=64))


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("embedkit: error: ")
    return err[0]


@pytest.mark.parametrize("suffix,fmt", [("safetensors", None), ("npz", "npz")])
def test_safetensors_and_npz_round_trip(wt_model_dir, wt_spec_file, wt_encoder, tmp_path, capsys,
                                        suffix, fmt):
    out = tmp_path / f"w.{suffix}"
    argv = whiten(wt_model_dir, wt_spec_file, out, "--pooling", "cls", "--beta", "0.5",
                  "--gamma", "0.75", "--k", "12", *(["--format", fmt] if fmt else []))
    assert main(argv) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    t = load_transform(out)
    sents = occurrences(wt_spec_file)
    ref = reference(wt_encoder, sents, "cls", beta=0.5, gamma=0.75, n_components=12)
    assert t.kernel.shape == (32, 12) and t.kernel.dtype == np.float32
    np.testing.assert_allclose(t.kernel, ref.kernel_, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(t.bias, ref.bias_, rtol=1e-5, atol=1e-7)
    m = t.metadata
    assert (m["beta"], m["gamma"], m["k"], m["d"]) == (0.5, 0.75, 12, 32)
    assert (m["model"], m["model_name"]) == (wt_encoder.identity, str(wt_model_dir))
    assert (m["pooling"], m["max_length"], m["normalize"]) == ("cls", 64, False)
    assert m["fit_on"] == "task:wt-sts:valid+test" and m["n_samples"] == 80 == len(sents)
    assert m["fit_data_sha256"] == sha256_text("\n".join(sents))
    assert m["embedkit_version"] == "0.1.0"
    assert m["command"] == shlex.join(["embedkit", *argv])


def test_sentence_transformers_folder_encodes_like_embedkit(wt_model_dir, wt_spec_file,
                                                           wt_encoder, tmp_path):
    pytest.importorskip("sentence_transformers")
    from sentence_transformers import SentenceTransformer

    sents = occurrences(wt_spec_file)
    probe = list(dict.fromkeys(sents))[:25] + ["一个没有见过的句子，比较长一点点"]
    cases = [("cls", ["--k", "24"], dict(n_components=24), False),
             ("mean", ["--gamma", "0.5", "--normalize"], dict(gamma=0.5), True)]
    for pooling, extra, kw, normalize in cases:
        out = tmp_path / f"st-{pooling}"
        assert main(whiten(wt_model_dir, wt_spec_file, out, "--pooling", pooling,
                           "--format", "sentence-transformers", "--max-length", "32",
                           *extra)) == 0
        meta = json.loads((out / "embedkit_whitening.json").read_text(encoding="utf-8"))
        canonical = "last-avg" if pooling == "mean" else pooling
        assert (meta["pooling"], meta["max_length"], meta["normalize"]) == (canonical, 32,
                                                                              normalize)
        st = SentenceTransformer(str(out), device="cpu")
        assert st.max_seq_length == 32
        got = st.encode(probe, batch_size=4, convert_to_numpy=True)
        w = Whitening(**kw).fit(wt_encoder.encode(sents, canonical, max_length=32))
        want = (wt_encoder.encode(probe, canonical, max_length=32).astype(np.float64)
                + w.bias_) @ w.kernel_
        if normalize:
            want /= np.linalg.norm(want, axis=1, keepdims=True)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_sentence_transformers_refuses_other_poolings(wt_model_dir, wt_spec_file, tmp_path,
                                                      capsys):
    out = tmp_path / "st"
    assert main(whiten(wt_model_dir, wt_spec_file, out, "--pooling", "first-last-avg",
                       "--format", "sentence-transformers")) == 2
    line = one_error_line(capsys)
    assert "first-last-avg" in line and "safetensors, npz or faiss" in line
    assert not out.exists()


def test_faiss_round_trip(wt_model_dir, wt_spec_file, wt_encoder, tmp_path):
    faiss = pytest.importorskip("faiss")
    out = tmp_path / "w.faiss"
    assert main(whiten(wt_model_dir, wt_spec_file, out, "--pooling", "last-avg", "--k", "8")) == 0
    lt = faiss.read_VectorTransform(str(out))
    assert (lt.d_in, lt.d_out) == (32, 8)
    ref = reference(wt_encoder, occurrences(wt_spec_file), "last-avg", n_components=8)
    x = wt_encoder.encode(occurrences(wt_spec_file)[:10], "last-avg")
    np.testing.assert_allclose(lt.apply(x), ref.transform(x.astype(np.float64)), atol=1e-5)
    meta = json.loads((tmp_path / "w.faiss.json").read_text(encoding="utf-8"))
    assert (meta["model"], meta["pooling"], meta["d"], meta["k"]) == (
        wt_encoder.identity, "last-avg", 32, 8)


def test_fit_on_recorded_for_split_and_file(wt_model_dir, wt_spec_file, wt_sentence_file,
                                            wt_encoder, tmp_path):
    out = tmp_path / "v.safetensors"
    assert main(whiten(wt_model_dir, f"{wt_spec_file}:valid", out, "--pooling", "cls",
                       "--fit-unique")) == 0
    m = load_transform(out).metadata
    valid = list(dict.fromkeys(occurrences(wt_spec_file, ["valid"])))
    assert (m["fit_on"], m["fit_unique"], m["n_samples"]) == ("task:wt-sts:valid", True,
                                                              len(valid))
    assert m["fit_data_sha256"] == sha256_text("\n".join(valid))
    out = tmp_path / "f.npz"
    assert main(whiten(wt_model_dir, wt_sentence_file, out, "--pooling", "cls", "--max-length",
                       "16", "--k", "10")) == 0
    t = load_transform(out)
    lines = [s for s in wt_sentence_file.read_text(encoding="utf-8").splitlines() if s.strip()]
    assert (t.metadata["fit_on"], t.metadata["max_length"]) == (f"file:{wt_sentence_file}", 16)
    ref = Whitening(n_components=10).fit(wt_encoder.encode(lines, "cls", max_length=16))
    np.testing.assert_allclose(t.kernel, ref.kernel_, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("extra,match", [
    (["--fit-on", "nope-task"], "not a task name"),
    (["--k", "0"], "--k '0'"),
    (["--k", "33"], "larger than the model's dimension d=32"),
    (["--out", "w.safetensors", "--format", "npz"], "make them agree"),
    (["--pooling", "maxpool"], "unknown pooling"),
    (["--gamma", "nan"], "'gamma' parameter of Whitening must be a float"),
])
def test_cli_errors_are_one_line(wt_model_dir, wt_spec_file, tmp_path, monkeypatch, capsys,
                                 extra, match):
    monkeypatch.chdir(tmp_path)
    argv = ["whiten", "--model", str(wt_model_dir), "--fit-on", str(wt_spec_file),
            "--out", "w.npz"]
    for flag, value in zip(extra[::2], extra[1::2], strict=True):
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    assert main(argv) == 2
    assert match in one_error_line(capsys)
    assert not list(tmp_path.glob("w.*"))


def test_sentence_transformers_export_has_a_real_model_card(wt_model_dir, wt_spec_file,
                                                            tmp_path):
    """The export's README.md states the base model's licence (read from its folder), the
    pooling, the map, the fit data and the embedkit version -- not the generic template."""
    pytest.importorskip("sentence_transformers")
    import shutil

    import yaml

    base = tmp_path / "base"
    shutil.copytree(wt_model_dir, base)
    (base / "README.md").write_text(
        "---\nlanguage: [zh]\n---\n# base\n\n## License\n\nM3E models 也是非商用的，仅供研究使用。\n",
        encoding="utf-8")
    out = tmp_path / "st"
    assert main(whiten(base, wt_spec_file, out, "--pooling", "cls", "--k", "8",
                       "--format", "sentence-transformers")) == 0
    card = (out / "README.md").read_text(encoding="utf-8")
    meta = yaml.safe_load(card.split("---\n", 2)[1])
    assert meta["license"] == "other" and meta["license_name"] == "base-license"
    assert {"embedkit", "whitening", "sentence-transformers"} <= set(meta["tags"])
    assert "License: Unknown" not in card and "**Non-commercial.**" in card
    assert "| Pooling | cls |" in card and "whiten:beta=1,gamma=1,k=8" in card
    assert "task:wt-sts:valid+test (80 vectors, every occurrence" in card
    assert "| embedkit | 0.1.0 |" in card

    bare = tmp_path / "st-bare"  # the fixture folder has no README: the licence is unknown
    assert main(whiten(wt_model_dir, wt_spec_file, bare, "--pooling", "cls", "--k", "8",
                       "--format", "sentence-transformers")) == 0
    card = (bare / "README.md").read_text(encoding="utf-8")
    assert "license: unknown" in card and "unknown \u2014 check the base model's card" in card


def test_st_export_card_holds_no_path_of_this_machine(tmp_path, wt_model_dir, wt_sentence_file):
    """Issue 18: the card named the base model by its absolute folder and said "Read from:
    /.../site-packages/.../README.md"; it names the folder, the file and the fit file only."""
    pytest.importorskip("sentence_transformers")
    import shutil

    base = tmp_path / "my-base"
    shutil.copytree(wt_model_dir, base)
    (base / "README.md").write_text("---\nlicense: apache-2.0\n---\n# base\n", encoding="utf-8")
    out = tmp_path / "st"
    assert main(whiten(base, wt_sentence_file, out, "--pooling", "cls", "--k", "8",
                       "--format", "sentence-transformers")) == 0
    card = (out / "README.md").read_text(encoding="utf-8")
    assert str(tmp_path) not in card and str(wt_sentence_file.parent) not in card
    assert "# my-base + whitening (whiten:beta=1,gamma=1,k=8)" in card
    assert "| Base model | my-base |" in card
    assert "- Read from: the base model's `README.md`" in card
    assert f"| Fitted on | file:{wt_sentence_file.name} (" in card


@pytest.mark.parametrize("extra,match", [
    ([], "--embeddings: {tmp}/missing/manifest.json: missing; is {tmp}/missing a folder "
         "written by `embedkit encode`?"),
    (["--calibrate", "LCQMC"], "--calibrate: a threshold is calibrated by encoding the task's "
                               "pairs with the model; fit from sentences to calibrate"),
    (["--fit-on", "STS-B"], "give one of --fit-on WHAT or --embeddings DIR"),
])
def test_embeddings_source_errors_are_one_line(tmp_path, capsys, extra, match):
    """``--embeddings DIR`` is a source of the whiten command: checked like the others, and
    what needs the model (a calibrated threshold) refused instead of ignored."""
    from tests.conftest import cli_error

    argv = ["whiten", "--embeddings", str(tmp_path / "missing"), "--out",
            str(tmp_path / "w.npz"), *extra]
    assert cli_error(capsys, argv, before=None) == match.format(tmp=tmp_path)
    assert not (tmp_path / "w.npz").exists()
