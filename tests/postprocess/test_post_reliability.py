"""Reliability of post-processing (issue 9): degenerate fits are refused with an error naming
the parameter, not exported or scored (9.10); transform-file metadata is validated strictly
(9.13); transform files get the umask's permissions like every other output (9.14)."""

from __future__ import annotations

import json
import os
import stat
import warnings

import numpy as np
import pytest

from embedkit.cli.main import main
from embedkit.errors import ConfigError
from embedkit.io.seal import seal_values
from embedkit.postprocess import (
    PCA,
    AffineMap,
    PostprocessError,
    RankDeficientWarning,
    Whitening,
    load_transform,
    parse_post,
    save_transform,
)

rel = pytest.mark.reliability


def one_error_line(capsys) -> str:
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("embedkit: error: "), err
    return lines[0].removeprefix("embedkit: error: ")


# -- 9.10: degenerate fits ------------------------------------------------------------------

@rel("9.10", "whitening fitted on thousands of copies of one sentence is refused")
def test_whitening_on_identical_vectors_is_refused():
    X = np.repeat(np.random.default_rng(0).normal(size=(1, 32)), 3000, axis=0)
    with pytest.raises(PostprocessError, match=r"one distinct vector in 3000 samples") as e:
        Whitening().fit(X)
    assert e.value.param == "n_components"
    with pytest.raises(PostprocessError, match="one distinct vector"):
        Whitening(n_components=1).fit(X)  # centred: no variance at all, whatever k


@rel("9.10", "pca:k=10 fitted on 3 sentences is refused")
def test_pca_k_above_the_distinct_vectors_is_refused():
    X = np.random.default_rng(1).normal(size=(3, 32))
    with pytest.raises(PostprocessError, match=r"k=10 kept directions .* only 3 distinct "
                                               r"vectors among its 3 rows.*use k <= 3") as e:
        parse_post("pca:k=10").fit(X)
    assert e.value.param == "n_components"
    # rows repeated do not count twice
    with pytest.raises(PostprocessError, match="only 3 distinct vectors among its 300 rows"):
        PCA(n_components=10).fit(np.repeat(X, 100, axis=0))


@rel("9.10", "merely poor fits still fit, with a RankDeficientWarning")
def test_merely_poor_fits_warn():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(10, 12))  # N = k = 10 directions: centring leaves 9
    with pytest.warns(RankDeficientWarning, match="1 of the 10 kept directions"):
        w = Whitening(n_components=10).fit(X)
    assert np.all(np.isfinite(w.kernel_))
    low = rng.normal(size=(40, 3)) @ rng.normal(size=(3, 12))  # rank 3, 40 distinct rows
    with pytest.warns(RankDeficientWarning, match="PCA: 2 of the 5 kept directions"):
        PCA(n_components=5).fit(low)  # a projection onto arbitrary directions: said now
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PCA().fit(low)  # every direction kept, no scaling: a rotation, nothing to say
        Whitening(gamma=0, beta=0).fit(np.ones((5, 12)))  # a rotation of identical vectors


@rel("9.10", "gamma 30 (a kernel beyond float32) is refused, not written infinite")
def test_kernel_beyond_float32_is_refused(tmp_path):
    X = np.random.default_rng(3).normal(size=(200, 16)) * np.linspace(0.01, 1, 16)
    with pytest.raises(PostprocessError, match=r"overflows float32 .*gamma=30") as e:
        Whitening(gamma=30).fit(X)
    assert e.value.param == "gamma"
    with pytest.raises(ConfigError, match="exceeds the float32 range"):
        save_transform(tmp_path / "w.safetensors", AffineMap(np.eye(2) * 1e39, np.zeros(2)))
    assert not list(tmp_path.iterdir())


@rel("9.10", "whiten --gamma 30 exits 2 with one line naming --gamma, nothing written")
@pytest.mark.filterwarnings("ignore::embedkit.postprocess.RankDeficientWarning")
def test_whiten_cli_gamma_30(wt_model_dir, wt_spec_file, tmp_path, capsys):
    out = tmp_path / "w.safetensors"
    rc = main(["whiten", "--model", str(wt_model_dir), "--fit-on", str(wt_spec_file),
               "--out", str(out), "--gamma", "30", "--no-cache"])
    assert rc == 2
    assert one_error_line(capsys).startswith("--gamma: Whitening: the whitening kernel "
                                             "overflows float32")
    assert not out.exists()


@rel("9.10", "whiten fitted on one sentence repeated exits 2 naming --k")
def test_whiten_cli_one_sentence_repeated(wt_model_dir, tmp_path, capsys):
    fit = tmp_path / "same.txt"
    fit.write_text("今天的天气非常好\n" * 500, encoding="utf-8")
    out = tmp_path / "w.npz"
    rc = main(["whiten", "--model", str(wt_model_dir), "--fit-on", str(fit), "--out", str(out),
               "--no-cache"])
    assert rc == 2
    assert one_error_line(capsys) == (
        "--k: Whitening: the fitted vectors are all identical (one distinct vector in 500 "
        "samples): there is no variance to whiten or project; fit on distinct sentences")
    assert not out.exists()


# -- 9.13: metadata read strictly --------------------------------------------------------------

def _npz(path, metadata, kernel=None):
    kernel = np.eye(3, dtype=np.float32)[:, :2] if kernel is None else kernel
    with open(path, "wb") as fh:
        np.savez(fh, kernel=kernel, bias=np.zeros(kernel.shape[0], np.float32),
                 metadata=np.array(json.dumps(metadata)))


@pytest.mark.parametrize("metadata, message", [
    pytest.param({"normalize": "no"}, "metadata key 'normalize' must be true or false, not 'no'",
                 marks=rel("9.13", "transform metadata normalize: 'no' is an error, not true")),
    pytest.param({"d": 3, "k": 3}, "metadata key 'k' is 3 but the kernel is 3 x 2 (d x k)",
                 marks=rel("9.13", "transform metadata k not matching the kernel's shape")),
    pytest.param({"d": 4}, "metadata key 'd' is 4 but the kernel is 3 x 2 (d x k)",
                 marks=rel("9.13", "transform metadata d not matching the kernel's shape")),
    pytest.param({"k": "2"}, "metadata key 'k' must be an integer, not '2'",
                 marks=rel("9.13", "transform metadata k of the wrong type")),
    pytest.param({"max_length": True}, "metadata key 'max_length' must be an integer, not True",
                 marks=rel("9.13", "transform metadata max_length a boolean")),
    pytest.param(["not", "an", "object"], "the metadata is not a JSON object (list)",
                 marks=rel("9.13", "transform metadata not a JSON object")),
])
def test_npz_metadata_is_validated(tmp_path, metadata, message):
    path = tmp_path / "w.npz"
    _npz(path, metadata)
    with pytest.raises(ConfigError) as e:
        load_transform(path)
    assert str(e.value) == f"{path}: {message}"


@rel("9.13", "safetensors header normalize: 'no' is an error naming file and key")
def test_safetensors_metadata_is_validated(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "w.safetensors"
    save_file({"kernel": np.eye(2, dtype=np.float32), "bias": np.zeros(2, np.float32)},
              str(path), metadata={"normalize": "no", "embedkit_json_keys": "[]"})
    with pytest.raises(ConfigError, match=r"w.safetensors: metadata key 'normalize' must be "
                                          r"true or false, not 'no' \(the safetensors header"):
        load_transform(path)
    # what embedkit writes loads, with real types
    save_transform(path, AffineMap(np.eye(2), np.zeros(2), normalize=True), {"max_length": 64})
    t = load_transform(path)
    assert t.metadata["normalize"] is True and t.metadata["max_length"] == 64 and t.map.normalize


@rel("9.13", "FAISS transform metadata (PATH.json) validated, k checked against the kernel")
def test_faiss_metadata_is_validated(tmp_path):
    path = tmp_path / "w.faiss"
    save_transform(path, AffineMap(np.eye(3)[:, :2], np.zeros(3)), {"pooling": "cls"})
    meta_file = tmp_path / "w.faiss.json"
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    assert load_transform(path).metadata["k"] == 2
    meta_file.write_text(json.dumps({**meta, "normalize": "no"}), encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{meta_file}: metadata key 'normalize' must be "
                                          "true or false, not 'no'$"):
        load_transform(path)
    # sealed again, as if written so: the check of k against the kernel itself refuses it
    meta_file.write_text(json.dumps(seal_values({**meta, "k": 3})), encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{path}: metadata key 'k' is 3 but the kernel is "
                                          r"3 x 2 \(d x k\)$"):
        load_transform(path)


@rel("18.5", "a hand edit of a FAISS export's metadata (pooling: cls) is refused naming the key")
def test_faiss_metadata_hand_edit_refused(tmp_path):
    path = tmp_path / "w.faiss"
    save_transform(path, AffineMap(np.eye(3)[:, :2], np.zeros(3)), {"pooling": "last-avg"})
    meta_file = tmp_path / "w.faiss.json"
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    assert load_transform(path).metadata["pooling"] == "last-avg"
    meta_file.write_text(json.dumps({**meta, "pooling": "cls"}), encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{meta_file}: edited since the transform was "
                                          r"exported \(changed pooling\)"):
        load_transform(path)


@rel("9.13", "metadata that would not load is not written")
def test_bad_metadata_is_not_written(tmp_path):
    path = tmp_path / "w.npz"
    with pytest.raises(ConfigError, match="metadata key 'normalize' must be true or false"):
        save_transform(path, AffineMap.identity(2), {"normalize": "yes"})
    assert not path.exists()


# -- 18.5: the two files of a FAISS export sealed together ---------------------------------------

def _two_faiss_exports(tmp_path):
    """Two exports of the same k (2) and different poolings: ``a`` (cls), ``b`` (last-avg)."""
    rng = np.random.default_rng(0)
    paths = []
    for name, pooling in (("a", "cls"), ("b", "last-avg")):
        (tmp_path / name).mkdir()
        path = tmp_path / name / "w.faiss"
        save_transform(path, AffineMap(rng.standard_normal((4, 2)), np.zeros(4)),
                       {"pooling": pooling})
        paths.append(path)
    return paths


@pytest.mark.parametrize("swap", [
    pytest.param("kernel", marks=rel("18.5", "FAISS export: the kernel of another export (same "
                                             "k, other pooling) beside the metadata: refused")),
    pytest.param("metadata", marks=rel("18.5", "FAISS export: the metadata of another export "
                                               "(same k, other pooling) beside the kernel: "
                                               "refused")),
])
def test_faiss_export_files_of_two_exports_refused(tmp_path, swap):
    import shutil

    a, b = _two_faiss_exports(tmp_path)
    assert load_transform(a).metadata["pooling"] == "cls"
    if swap == "kernel":
        shutil.copyfile(b, a)
    else:
        shutil.copyfile(f"{b}.json", f"{a}.json")
    with pytest.raises(ConfigError) as err:
        load_transform(a)
    assert str(err.value) == (
        f"{a}.json: written with another kernel than {a} (its kernel_sha256 differs): the two "
        "files come from different exports or a write stopped between them; export the "
        "transform again")


@rel("18.5", "FAISS export killed between its kernel and its metadata: the new kernel beside "
             "the old metadata is refused, not used with the old pooling")
def test_faiss_export_killed_between_its_files(tmp_path):
    from tests.faults import SimulatedKill, kill_at

    a, _ = _two_faiss_exports(tmp_path)
    new = AffineMap(np.random.default_rng(1).standard_normal((4, 2)), np.zeros(4))
    with kill_at("embedkit.postprocess.files.atomic_write_json"), \
            pytest.raises(SimulatedKill):
        save_transform(a, new, {"pooling": "last-avg"})
    with pytest.raises(ConfigError, match="written with another kernel"):
        load_transform(a)
    save_transform(a, new, {"pooling": "last-avg"})  # written again: whole
    assert load_transform(a).metadata["pooling"] == "last-avg"


def test_unsealed_faiss_metadata_loads_with_a_warning(tmp_path):
    a, _ = _two_faiss_exports(tmp_path)
    meta = json.loads((tmp_path / "a" / "w.faiss.json").read_text(encoding="utf-8"))
    del meta["kernel_sha256"]
    (tmp_path / "a" / "w.faiss.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.warns(UserWarning, match="cannot be checked"):
        assert load_transform(a).metadata["pooling"] == "cls"


# -- 9.14: permissions ---------------------------------------------------------------------------

@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    try:
        yield 0o640
    finally:
        os.umask(old)


@pytest.mark.parametrize("name", [
    pytest.param("w.safetensors", marks=rel("9.14", "a safetensors transform file respects "
                                                    "the umask (not 0600)")),
    "w.npz",  # these two were right already: kept as they are
    "w.faiss",
])
def test_transform_files_respect_the_umask(tmp_path, umask_027, name):
    path = tmp_path / name
    save_transform(path, AffineMap.identity(4), {"pooling": "cls"})
    written = [p for p in tmp_path.iterdir()]
    assert written and all(stat.S_IMODE(p.stat().st_mode) == umask_027 for p in written), [
        (p.name, oct(p.stat().st_mode)) for p in written]


@rel("9.14", "whiten exports respect the umask (0644 under umask 022)")
def test_whiten_export_mode(wt_model_dir, wt_spec_file, tmp_path, capsys):
    old = os.umask(0o022)
    try:
        out = tmp_path / "w.safetensors"
        assert main(["whiten", "--model", str(wt_model_dir), "--fit-on", str(wt_spec_file),
                     "--out", str(out), "--k", "8", "--no-cache"]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
