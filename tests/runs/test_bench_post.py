"""``embedkit bench --post``: fitted chains beside saved maps (``file:``), fixed chains fit nothing,
and a map fitted for another model, pooling or dimension is refused unless ``--force``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embedkit.cli.main import main
from embedkit.encoders import Encoder
from embedkit.postprocess import AffineMap, CompatibilityWarning, load_transform, save_transform
from embedkit.reports.bench import markdown_report
from embedkit.runs.bench import run_bench

pytestmark = pytest.mark.filterwarnings("ignore::embedkit.postprocess.RankDeficientWarning")
POST = "whiten:beta=1,gamma=1,k=16"


@pytest.fixture(scope="module")
def wt_map(wt_model_dir, wt_spec_file, tmp_path_factory) -> Path:
    """``embedkit whiten`` on the task, cls, beta=gamma=1, k=16 (the fit bench does for POST)."""
    out = tmp_path_factory.mktemp("wt-map") / "W.safetensors"
    assert main(["whiten", "--model", str(wt_model_dir), "--pooling", "cls", "--fit-on",
                 str(wt_spec_file), "--k", "16", "--out", str(out), "--no-cache"]) == 0
    return out


def bench(model, spec, *extra):
    return ["bench", "--model", str(model), "--tasks", str(spec), *map(str, extra)]


def one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    assert err[0].startswith("embedkit: error: ")
    return err[0]


def test_whiten_row_equals_file_row(wt_model_dir, wt_spec_file, wt_map, tmp_path, capsys):
    out = tmp_path / "rec.json"
    assert main(bench(wt_model_dir, wt_spec_file, "--pooling", "cls", "--splits", "valid,test",
                      "--post", POST, "--post", f"file:{wt_map}", "--output", out)) == 0
    table = capsys.readouterr().out.splitlines()
    file_row = f"cls + file:{wt_map}"
    assert table[1].split() == ["row", "wt-sts/valid", "wt-sts/test", "avg"]
    assert [line[:len(file_row)].rstrip() for line in table[2:5]] == [
        "cls", f"cls + {POST}", file_row]
    rec = json.loads(out.read_text(encoding="utf-8"))
    assert list(rec["results"]) == ["cls", f"cls + {POST}", file_row]
    fitted, fixed = rec["results"][f"cls + {POST}"], rec["results"][file_row]
    assert (fixed["pooling"], fixed["post"]) == ("cls", f"file:{wt_map}")
    for split in ("valid", "test"):
        a, b = fitted["wt-sts"][split], fixed["wt-sts"][split]
        assert a["spearman"] == pytest.approx(b["spearman"], abs=1e-6)
        assert a["pearson"] == pytest.approx(b["pearson"], abs=1e-5)
        assert a["spearman"] != rec["results"]["cls"]["wt-sts"][split]["spearman"]
    # the map records the same fit as the bench row's
    meta = rec["settings"]["post_files"][str(wt_map)]
    assert meta["fit_data_sha256"] == rec["data"]["wt-sts"]["fit"]["sha256"]
    assert meta["fit_on"] == rec["data"]["wt-sts"]["fit"]["on"] == "task:wt-sts:valid+test"


def test_fixed_chains_encode_no_fit_sentences(wt_model_dir, wt_spec_file, wt_map):
    enc = Encoder(str(wt_model_dir), cache=None)
    rec = run_bench(enc, ["cls"], [str(wt_spec_file)], post=[f"file:{wt_map},norm"])
    assert enc.stats.sentences == 40  # the test split's 20 pairs; nothing for fitting
    assert "fit" not in rec["data"]["wt-sts"]
    assert rec["settings"]["fit_on"] is None and rec["settings"]["force"] is False
    row = rec["results"][f"cls + file:{wt_map},norm"]
    assert np.isfinite(row["wt-sts"]["test"]["spearman"])
    t = load_transform(wt_map)
    split = _wt_test_split(wt_spec_file)
    e1 = t.apply(enc.encode(split.sentences1, "cls"))
    e2 = t.apply(enc.encode(split.sentences2, "cls"))
    from embedkit.evaluation import pair_scores

    ref = pair_scores(e1, e2, split.labels)
    assert row["wt-sts"]["test"]["spearman"] == pytest.approx(ref["spearman"], abs=1e-6)
    assert "nothing fitted" in markdown_report(rec)


def _wt_test_split(spec_file):
    from embedkit.data import load_task

    return load_task(str(spec_file), ["test"])["test"]


@pytest.fixture(scope="module")
def wt_small_map(wt_map, tmp_path_factory) -> Path:
    """A map for the same model and pooling but d=16 inputs."""
    t = load_transform(wt_map)
    out = tmp_path_factory.mktemp("wt-small") / "W16.npz"
    save_transform(out, AffineMap(np.eye(16)[:, :8], np.zeros(16)),
                   {k: v for k, v in t.metadata.items() if k not in ("d", "k")})
    return out


@pytest.mark.parametrize("case", ["model", "pooling"])
def test_mismatched_map_refused_then_forced(wt_model_dir, wt_other_model_dir, wt_spec_file,
                                            wt_map, capsys, case):
    model = wt_other_model_dir if case == "model" else wt_model_dir
    pooling = "cls" if case == "model" else "last-avg"
    argv = bench(model, wt_spec_file, "--pooling", pooling, "--post", f"file:{wt_map}")
    assert main(argv) == 2
    line = one_error_line(capsys)
    assert f"--post: file:{wt_map}: transform file was fitted for {case}" in line
    assert "use --force to use it anyway" in line  # the library says force=True
    with pytest.warns(CompatibilityWarning, match=f"fitted for {case}"):
        assert main([*argv, "--force"]) == 0
    assert f"{pooling} + file:{wt_map}" in capsys.readouterr().out


def test_map_of_another_dimension_refused(wt_model_dir, wt_spec_file, wt_small_map, capsys):
    argv = bench(wt_model_dir, wt_spec_file, "--pooling", "cls", "--post", f"file:{wt_small_map}")
    assert main(argv) == 2
    assert "input dimension d=16 but the vectors have d=32" in one_error_line(capsys)
    # --force cannot make a 16-input map take 32-dimensional vectors: still one clear line
    with pytest.warns(CompatibilityWarning):
        assert main([*argv, "--force"]) == 2
    assert "expects d=16 input dimensions but the vectors have 32" in one_error_line(capsys)


def test_missing_map_is_one_line(wt_model_dir, wt_spec_file, tmp_path, capsys):
    argv = bench(wt_model_dir, wt_spec_file, "--post", f"file:{tmp_path / 'none.safetensors'}")
    assert main(argv) == 2
    assert "transform file not found" in one_error_line(capsys)
