"""embedkit encoders under mteb.evaluate, offline, on the tiny model and an in-memory task."""

from __future__ import annotations

import json

import numpy as np
import pytest

mteb = pytest.importorskip("mteb")

from embedkit.data import get_task, load_task  # noqa: E402
from embedkit.errors import ConfigError  # noqa: E402
from embedkit.evaluation import STSEvaluator  # noqa: E402
from embedkit.experiments.bench import run_bench  # noqa: E402
from embedkit.experiments.mteb_results import (  # noqa: E402
    CMTEB_TASKS,
    experiment_name,
    result_folder,
)
from embedkit.integrations.mteb import (  # noqa: E402
    MtebEncoder,
    evaluate_local,
    fixed_post,
    local_task,
    map_sha256,
)
from embedkit.postprocess import AffineMap, load_transform, parse_post, save_transform  # noqa: E402


def _evaluate(model, task, cache=None):
    res = mteb.evaluate(model, [task], cache=cache, show_progress_bar=False,
                        encode_kwargs={"batch_size": 8})
    return res.task_results[0].scores["test"][0]


@pytest.fixture(scope="module")
def spread_encoder(make_tiny_bert, sentences):
    """A tiny BERT with larger weights: its cosines spread over 0.84..0.99. The default tiny
    model's cosines all lie within 1e-5 of 1, where float32 cannot order them (see
    test_float32_cosines_explain_the_difference)."""
    from embedkit.encoders import Encoder

    folder = make_tiny_bert("tiny-spread", sentences, initializer_range=0.2)
    return Encoder(str(folder), cache=None)


@pytest.fixture(scope="module")
def tiny_task(spec_file):
    """The tiny STS-B pairs, as mteb's STSB task with its data already loaded."""
    return local_task(str(spec_file), mteb_name="STSB")


@pytest.mark.parametrize("pooling", ["cls", "last-avg"])
def test_mteb_matches_bench_cmteb(spread_encoder, spec_file, tiny_task, pooling):
    record = run_bench(spread_encoder, [pooling], [str(spec_file)], protocol="cmteb")
    ours = record["results"][pooling]["tiny-sts"]["test"]
    scores = _evaluate(MtebEncoder(spread_encoder, pooling=pooling), tiny_task)
    assert scores["cosine_spearman"] == pytest.approx(ours["spearman"], abs=1e-4)
    assert scores["cosine_pearson"] == pytest.approx(ours["pearson"], abs=1e-4)
    assert scores["main_score"] == scores["cosine_spearman"]


def test_float32_cosines_explain_the_difference(tiny_encoder, spec_file, tiny_task):
    """On the default tiny model (cosines within 1e-5 of 1) mteb's float32 cosines reorder
    pairs that embedkit's float64 cosines keep apart: Spearman moves by ~0.004. Ranking
    embedkit's cosines rounded to float32 gives exactly mteb's number."""
    from sklearn.metrics.pairwise import paired_cosine_distances

    from embedkit.evaluation.metrics import spearman

    model = MtebEncoder(tiny_encoder, pooling="cls")
    scores = _evaluate(model, tiny_task)
    split = load_task(get_task(str(spec_file)), ("test",))["test"]
    e1, e2 = model.embed(split.sentences1), model.embed(split.sentences2)
    cos32 = 1 - paired_cosine_distances(e1, e2)
    assert cos32.dtype == np.float32
    assert scores["cosine_spearman"] == pytest.approx(spearman(cos32, split.labels), abs=1e-12)


def test_fixed_postprocessor_matches_evaluator(spread_encoder, spec_file, tiny_task, tmp_path):
    tiny_encoder = spread_encoder
    spec = get_task(str(spec_file))
    data = load_task(spec, ("test",))
    sents = list(dict.fromkeys(data["test"].sentences1 + data["test"].sentences2))
    vecs = tiny_encoder.encode(sents, "cls", max_length=tiny_encoder.model_max_length())
    pipe = parse_post("whiten:k=16").fit(vecs)
    evaluator = STSEvaluator([spec], protocol="cmteb")
    ours = evaluator(tiny_encoder, "cls", transform=pipe.transform)["tiny-sts/test/spearman"]

    model = MtebEncoder(tiny_encoder, pipe, pooling="cls")
    before = map_sha256(model.post.map)
    scores = _evaluate(model, tiny_task)
    assert scores["cosine_spearman"] == pytest.approx(ours, abs=1e-4)
    assert map_sha256(model.post.map) == before  # nothing refitted by encode

    # the saved map gives the same vectors and the same sha256
    path = tmp_path / "w.safetensors"
    save_transform(path, AffineMap.from_pipeline(pipe), {"pooling": "cls"})
    from_file = MtebEncoder(tiny_encoder, str(path), pooling="cls")
    assert from_file.post.sha256 == model.post.sha256 == map_sha256(load_transform(path).map)
    assert from_file.mteb_model_meta.experiment_kwargs["post"] == "file:w.safetensors"
    assert _evaluate(from_file, tiny_task)["cosine_spearman"] == pytest.approx(ours, abs=1e-4)


def test_encode_applies_the_same_map_to_each_call(tiny_encoder):
    pipe = parse_post("whiten:k=4").fit(np.random.default_rng(0).normal(size=(40, 32)))
    model = MtebEncoder(tiny_encoder, pipe, pooling="cls")
    one = model.encode([{"text": ["一个人在切洋葱。"]}])
    both = model.encode([{"text": ["一个人在切洋葱。", "一个人在打鼓。"]}])
    np.testing.assert_allclose(one[0], both[0], rtol=1e-5, atol=1e-6)
    assert one.dtype == np.float32


def test_unfitted_chain_is_refused(tiny_encoder):
    with pytest.raises(ConfigError) as e:
        MtebEncoder(tiny_encoder, parse_post("whiten:k=4"))
    assert e.value.param == "post"
    assert fixed_post(None) is None


def test_model_meta_names_base_model_and_experiment(tiny_encoder, tiny_model_dir):
    raw = MtebEncoder(tiny_encoder, pooling="cls")
    meta = raw.mteb_model_meta
    assert meta.name == f"embedkit/{tiny_model_dir.name}"
    assert meta.revision == tiny_encoder.describe()["identity"].split(":", 1)[1][:40]
    assert meta.experiment_kwargs == {"pooling": "cls", "max_length": raw.max_length}
    pipe = parse_post("pca:k=8").fit(np.random.default_rng(0).normal(size=(40, 32)))
    post = MtebEncoder(tiny_encoder, pipe, pooling="cls").mteb_model_meta
    assert post.name == meta.name and post.revision == meta.revision
    assert post.experiment_kwargs["post_sha256"] == map_sha256(AffineMap.from_pipeline(pipe))
    assert post.experiment_name != meta.experiment_name
    assert experiment_name(post.experiment_kwargs) == post.experiment_name
    with pytest.raises(ConfigError):
        MtebEncoder(tiny_encoder, name="no-slash")


def test_results_land_in_embedkit_named_folders(tiny_encoder, tiny_task, tmp_path):
    model = MtebEncoder(tiny_encoder, pooling="cls")
    _evaluate(model, tiny_task, cache=mteb.ResultCache(cache_path=tmp_path))
    meta = model.mteb_model_meta
    folder = result_folder(tmp_path / "results", meta.name, meta.revision, meta.experiment_kwargs)
    assert (folder / "STSB.json").is_file()
    saved = json.loads((folder / "model_meta.json").read_text())
    assert saved["experiment_kwargs"] == meta.experiment_kwargs


def test_local_task_unknown_mteb_name(spec_file):
    with pytest.raises(ConfigError) as e:
        local_task(str(spec_file))
    assert e.value.param == "mteb_name"


def test_cmteb_revisions_are_mtebs():
    for task, (name, revision) in CMTEB_TASKS.items():
        assert mteb.get_task(name).metadata.revision == revision, task
        assert mteb.get_task(name).metadata.main_score == "cosine_spearman"


def test_evaluate_local_records_checksums_and_compares(spread_encoder, pairs_file, tmp_path):
    """mteb's evaluator and embedkit's bench on the same local file: one column, no flag."""
    from embedkit.experiments.compare import compare
    from embedkit.experiments.compare_render import agreement_rows, markdown_report

    spec = tmp_path / "stsb-tiny.json"  # the tiny pairs under STS-B's name
    spec.write_text(json.dumps({"name": "STS-B", "format": "tsv", "files": {
        "test": str(pairs_file)}, "label_range": [0, 5], "label_type": "int",
        "max_length": 64}))
    model = MtebEncoder(spread_encoder, pooling="cls")
    res = evaluate_local(model, [str(spec)], cache_path=tmp_path / "cache",
                         encode_kwargs={"batch_size": 8})
    score = res.task_results[0].scores["test"][0]["cosine_spearman"]
    record = run_bench(spread_encoder, ["cls"], [str(spec)], protocol="cmteb")
    rec_path = tmp_path / "bench.json"
    rec_path.write_text(json.dumps(record))
    cmp = compare([rec_path, tmp_path / "cache"])
    assert cmp.tasks == ["STS-B"] and len(cmp.entries) == 2
    assert not cmp.flagged_cells()  # same protocol family, same data checksum
    by_kind = {e.kind: e for e in cmp.entries}
    mteb_cell = by_kind["mteb"].cells["STS-B"]
    assert mteb_cell.protocol == "mteb" and mteb_cell.evaluator == "mteb"
    assert mteb_cell.score == pytest.approx(score, abs=1e-6)  # files keep 6 decimals
    assert by_kind["mteb"].label.endswith("[mteb]")
    assert abs(score - record["results"]["cls"]["STS-B"]["test"]["spearman"]) < 1e-4
    header, rows = agreement_rows(cmp)  # the two evaluators, side by side
    assert len(rows) == 1 and rows[0][1] == "STS-B" and abs(float(rows[0][4])) < 0.01
    assert "Same configuration, two evaluators" in markdown_report(cmp)
