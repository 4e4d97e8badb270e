"""``bench`` / ``whiten`` / ``index build`` on sentence-transformers folders (issue 20 items 1,
4, 5): the folder is scored as sentence-transformers encodes it (its Dense included), a
whitened export benches at its whitened score, the declared similarity is used and recorded,
and a module embedkit cannot run is one error line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedkit.cli.main import main
from embedkit.data import load_task
from embedkit.encoders import EncoderConfig
from embedkit.evaluation.metrics import similarity_scores, spearman
from embedkit.runs.bench import run_bench
from embedkit.runs.whiten import WhitenSettings, run_whiten
from tests.conftest import save_st, st_vectors

pytest.importorskip("sentence_transformers")


def st_spearman(folder, spec_file, similarity="cosine") -> float:
    """Spearman of the pairs' similarity from sentence-transformers' own vectors."""
    pairs = load_task(str(spec_file), ["test"])["test"]
    a, b = st_vectors(folder, pairs.sentences1), st_vectors(folder, pairs.sentences2)
    return spearman(similarity_scores(a, b, similarity), pairs.labels)


def bench_score(folder, spec_file, poolings=None, **kw) -> tuple[float, dict]:
    rec = run_bench(EncoderConfig(str(folder), cache=False), poolings, [str(spec_file)], **kw)
    row = list(rec["results"].values())[-1]  # the post row, when there is one
    return row["tiny-sts"]["test"]["spearman"], rec


@pytest.mark.reliability("20.1", "bench scores an ST folder with its Dense, as ST encodes it")
def test_bench_on_folder_equals_sentence_transformers(tiny_model_dir, spec_file, tmp_path):
    folder = save_st(tmp_path / "st", tiny_model_dir, "mean", "dense-tanh-norm")
    got, rec = bench_score(folder, spec_file)
    assert got == pytest.approx(st_spearman(folder, spec_file), abs=1e-6)
    raw, _ = bench_score(tiny_model_dir, spec_file, poolings=["last-avg"])
    assert abs(got - raw) > 1e-3  # the Dense matters: skipping it gave the raw model's score
    assert rec["settings"]["similarity"] == "cosine"


@pytest.mark.reliability("20.1", "whiten --format sentence-transformers then bench the folder")
def test_whitened_folder_benches_at_its_whitened_score(tiny_model_dir, spec_file, tmp_path):
    out = tmp_path / "whitened"
    run_whiten(EncoderConfig(str(tiny_model_dir), cache=False), f"{spec_file}:test", out,
               WhitenSettings(k=8), pooling="mean", format="sentence-transformers")
    got, rec = bench_score(out, spec_file)
    assert rec["model"]["dim"] == 8
    assert 100 * got == pytest.approx(100 * st_spearman(out, spec_file), abs=0.01)
    whitened, _ = bench_score(tiny_model_dir, spec_file, poolings=["last-avg"],
                              post=["whiten:k=8"])  # fitted on the task's sentences too
    raw, _ = bench_score(tiny_model_dir, spec_file, poolings=["last-avg"])
    assert 100 * got == pytest.approx(100 * whitened, abs=0.01)
    assert abs(got - raw) > 1e-3


def test_declared_similarity_is_used_and_recorded(tiny_model_dir, spec_file, tmp_path):
    folder = save_st(tmp_path / "dot", tiny_model_dir, "mean", "dense-nobias-ln",
                     config={"similarity_fn_name": "dot"})
    got, rec = bench_score(folder, spec_file)
    assert rec["settings"]["similarity"] == "dot" and rec["model"]["similarity"] == "dot"
    assert got == pytest.approx(st_spearman(folder, spec_file, "dot"), abs=1e-6)
    cos, rec = bench_score(folder, spec_file, similarity="cosine")  # --similarity overrides
    assert rec["settings"]["similarity"] == "cosine"
    assert cos == pytest.approx(st_spearman(folder, spec_file, "cosine"), abs=1e-6)
    assert abs(cos - got) > 1e-4


def test_index_metric_follows_the_declared_similarity(tiny_model_dir, tmp_path):
    from embedkit.retrieval.folder import build_index

    folder = save_st(tmp_path / "dot", tiny_model_dir, "mean",
                     config={"similarity_fn_name": "dot"})
    index = build_index(tmp_path / "idx", ["一个人", "男孩"], EncoderConfig(str(folder),
                                                                           cache=False))
    assert index.metric == "ip"
    index = build_index(tmp_path / "idx2", ["一个人"], EncoderConfig(str(folder), cache=False),
                        metric="cosine")
    assert index.metric == "cosine"


@pytest.mark.reliability("20.1", "a module embedkit cannot run is one error line, exit 2")
@pytest.mark.parametrize("kind", ["my_package.Custom", "sentence_transformers.models.Dropout"])
def test_unknown_module_is_one_error_line(tiny_model_dir, spec_file, tmp_path, capsys, kind):
    folder = save_st(tmp_path / "st", tiny_model_dir, "mean")
    modules = json.loads((folder / "modules.json").read_text())
    modules.append({"idx": 2, "name": "2", "path": "2_X", "type": kind})
    (folder / "modules.json").write_text(json.dumps(modules))
    rc = main(["bench", "--model", str(folder), "--tasks", str(spec_file), "--no-cache"])
    out, err = capsys.readouterr()
    assert rc == 2 and "Traceback" not in out + err
    (line,) = err.strip().splitlines()
    assert line.startswith("embedkit: error: ") and f"module 2 is {kind!r}" in line


def test_truncate_dim_option_is_recorded(tiny_model_dir, spec_file, tmp_path, capsys):
    folder = save_st(tmp_path / "st", tiny_model_dir, "mean", "dense-tanh-norm")
    out = tmp_path / "r.json"
    assert main(["bench", "--model", str(folder), "--tasks", str(spec_file), "--no-cache",
                 "--truncate-dim", "4", "--output", str(out)]) == 0
    rec = json.loads(out.read_text())
    assert rec["model"]["truncate_dim"] == 4 and rec["model"]["dim"] == 4
    pairs = load_task(str(spec_file), ["test"])["test"]
    a = st_vectors(folder, pairs.sentences1, truncate_dim=4)
    b = st_vectors(folder, pairs.sentences2, truncate_dim=4)
    want = spearman(similarity_scores(a, b), pairs.labels)
    (row,) = rec["results"].values()
    assert row["tiny-sts"]["test"]["spearman"] == pytest.approx(want, abs=1e-6)
    assert np.isfinite(want)
