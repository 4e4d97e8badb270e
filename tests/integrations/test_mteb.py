"""embedkit encoders under mteb.evaluate, offline, on the tiny model and an in-memory task."""

from __future__ import annotations

import json

import numpy as np
import pytest

mteb = pytest.importorskip("mteb")

from embedkit.data import get_task, load_task  # noqa: E402
from embedkit.errors import ConfigError  # noqa: E402
from embedkit.evaluation import STSEvaluator  # noqa: E402
from embedkit.integrations.mteb import (  # noqa: E402
    MtebEncoder,
    evaluate_local,
    local_task,
)
from embedkit.integrations.mteb_results import (  # noqa: E402
    CMTEB_DATASETS,
    CMTEB_TASKS,
    result_folder,
)
from embedkit.postprocess import AffineMap, load_transform, parse_post, save_transform  # noqa: E402
from embedkit.runs.bench import run_bench  # noqa: E402
from embedkit.store.fitted import fitted_post  # noqa: E402


def _evaluate(model, task, cache=None):
    res = mteb.evaluate(model, [task], cache=cache, show_progress_bar=False,
                        encode_kwargs={"batch_size": 8})
    return res.task_results[0].scores["test"][0]


@pytest.fixture(scope="module")
def spread_encoder(spread_model_dir):
    """The tiny BERT whose cosines spread (conftest); the default tiny model's cosines all lie
    within 1e-5 of 1, where float32 cannot order them (see
    test_float32_cosines_explain_the_difference)."""
    from embedkit.encoders import Encoder

    return Encoder(str(spread_model_dir), cache=None)


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
    before = model.post.map.sha256()
    scores = _evaluate(model, tiny_task)
    assert scores["cosine_spearman"] == pytest.approx(ours, abs=1e-4)
    assert model.post.map.sha256() == before  # nothing refitted by encode

    # the saved map gives the same vectors and the same sha256
    path = tmp_path / "w.safetensors"
    save_transform(path, AffineMap.from_pipeline(pipe), {"pooling": "cls"})
    from_file = MtebEncoder(tiny_encoder, str(path), pooling="cls")
    assert from_file.post.sha256 == model.post.sha256 == load_transform(path).map.sha256()
    assert from_file.mteb_model_meta.loader_kwargs["post"] == "file:w.safetensors"
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
    assert fitted_post(None) is None


def test_a_map_fitted_for_other_vectors_is_refused(tiny_encoder, tmp_path):
    """A transform file goes through the one check (model, pooling, dimension) before it is
    applied; force warns instead."""
    from embedkit.postprocess import CompatibilityWarning

    other = tmp_path / "other.npz"
    save_transform(other, AffineMap.identity(32), {"model": "sha256:other", "pooling": "cls"})
    with pytest.raises(ConfigError, match="model 'sha256:other'") as e:
        MtebEncoder(tiny_encoder, str(other), pooling="cls")
    assert e.value.param == "post"
    with pytest.warns(CompatibilityWarning, match="sha256:other"):
        assert MtebEncoder(tiny_encoder, str(other), pooling="cls", force=True).post is not None
    pooled = tmp_path / "pooled.npz"
    save_transform(pooled, AffineMap.identity(32), {"model": tiny_encoder.identity,
                                                    "pooling": "last-avg"})
    with pytest.raises(ConfigError, match="pooling 'last-avg'"):
        MtebEncoder(tiny_encoder, load_transform(pooled), pooling="cls")
    assert MtebEncoder(tiny_encoder, str(pooled), pooling="last-avg").post.spec == (
        "file:pooled.npz")
    small = tmp_path / "small.npz"
    save_transform(small, AffineMap.identity(16), {})
    with pytest.raises(ConfigError, match="d=16 but the vectors have d=32"):
        MtebEncoder(tiny_encoder, str(small))


def test_model_meta_names_each_configuration(tiny_encoder, tiny_model_dir):
    """The model by itself keeps the base name; another pooling or a map is a variant name
    (mteb's "org/model (key=value)"), with no experiment_kwargs."""
    default = MtebEncoder(tiny_encoder)
    meta = default.mteb_model_meta
    assert meta.name == f"embedkit/{tiny_model_dir.name}" and meta.adapted_from is None
    assert meta.revision == tiny_encoder.describe()["identity"].split(":", 1)[1][:40]
    assert meta.experiment_kwargs is None and meta.experiment_name is None
    assert meta.loader_kwargs == {"pooling": str(tiny_encoder.default_pooling),
                                  "max_length": default.max_length}
    other = "last-avg" if str(tiny_encoder.default_pooling) != "last-avg" else "cls"
    assert MtebEncoder(tiny_encoder, pooling=other).mteb_model_meta.name == (
        f"{meta.name} (pooling={other})")
    assert MtebEncoder(tiny_encoder, max_length=16).mteb_model_meta.name == (
        f"{meta.name} (max_length=16)")
    pipe = parse_post("pca:k=8").fit(np.random.default_rng(0).normal(size=(40, 32)))
    post = MtebEncoder(tiny_encoder, pipe).mteb_model_meta
    sha = AffineMap.from_pipeline(pipe).sha256()
    assert post.name == f"{meta.name} (post=pca_k=8, post_sha256={sha[:12]})"
    assert post.revision == meta.revision and post.adapted_from == meta.name
    assert post.loader_kwargs["post_sha256"] == sha and post.embed_dim == 8
    with pytest.raises(ConfigError):
        MtebEncoder(tiny_encoder, name="no-slash")


def test_results_land_in_embedkit_named_folders(tiny_encoder, tiny_task, tmp_path):
    model = MtebEncoder(tiny_encoder, pooling="cls")
    _evaluate(model, tiny_task, cache=mteb.ResultCache(cache_path=tmp_path))
    meta = model.mteb_model_meta
    folder = result_folder(tmp_path / "results", meta.name, meta.revision)
    assert (folder / f"{tiny_task.metadata.name}.json").is_file()
    saved = json.loads((folder / "model_meta.json").read_text())
    assert saved["loader_kwargs"] == meta.loader_kwargs and saved["experiment_kwargs"] is None


def test_poolings_and_maps_never_share_a_cell(spread_encoder, tiny_task, tmp_path):
    """mteb.evaluate of three configurations into one cache: mteb's default loader reads all
    three and to_dataframe gives each its own column with its own score (before: experiment
    folders, none loaded by default, and one averaged cell with match_name)."""
    sents = list(dict.fromkeys(tiny_task.dataset["default"]["test"]["sentence1"]))
    pipe = parse_post("whiten:k=8").fit(spread_encoder.encode(sents, "cls", max_length=512))
    models = [MtebEncoder(spread_encoder, pooling="cls"),
              MtebEncoder(spread_encoder, pooling="last-avg"),
              MtebEncoder(spread_encoder, pipe, pooling="cls")]
    cache = mteb.ResultCache(cache_path=tmp_path)
    scores = {m.mteb_model_meta.name: _evaluate(m, tiny_task, cache=cache)["main_score"]
              for m in models}
    assert len(scores) == 3 and len(set(scores.values())) == 3
    for kwargs in ({}, {"load_experiments": "match_name"}):
        table = cache.load_results(include_remote=False, **kwargs).to_dataframe()
        row = table.set_index("task_name").loc[tiny_task.metadata.name]
        assert {name: row[name] for name in scores} == pytest.approx(scores, abs=1e-6)


def test_local_pairs_under_an_official_name_are_a_local_task(tiny_task, spec_file):
    """The tiny pairs evaluated as mteb's STSB: the result says STSB-local-<sha> at a local
    revision, never STSB at C-MTEB's revision."""
    sha = load_task(get_task(str(spec_file)), ("test",))["test"].sha256
    assert tiny_task.metadata.name == f"STSB-local-{sha[:8]}"
    assert tiny_task.metadata.revision == f"local-sha256-{sha}"
    assert mteb.get_task("STSB").metadata.revision == CMTEB_TASKS["STS-B"][1]  # untouched


@pytest.mark.shared_data
def test_the_published_files_are_mtebs_task(shared_data_dir):
    """The files with the task specs' sha256 keep C-MTEB's name and revision, and they hold
    what mteb's descriptive statistics of that revision describe."""
    for task, (name, revision) in CMTEB_TASKS.items():
        if task == "QBQTC":  # no local copy
            continue
        mt = local_task(task, data_dir=shared_data_dir)
        assert (mt.metadata.name, mt.metadata.revision) == (name, revision)
        stats = mt.metadata.descriptive_stats
        for split, ds in mt.dataset["default"].items():
            want = stats[split]
            assert ds.num_rows == want["num_samples"]
            assert sum(map(len, ds["sentence1"])) == want["text1_statistics"]["total_text_length"]
            assert len(set(ds["sentence2"])) == want["text2_statistics"]["unique_texts"]


def test_local_task_unknown_mteb_name(spec_file):
    with pytest.raises(ConfigError) as e:
        local_task(str(spec_file))
    assert e.value.param == "mteb_name"


def test_cmteb_revisions_are_mtebs():
    for task, (name, revision) in CMTEB_TASKS.items():
        assert mteb.get_task(name).metadata.revision == revision, task
        assert mteb.get_task(name).metadata.dataset["path"] == CMTEB_DATASETS[name], task
        assert mteb.get_task(name).metadata.main_score == "cosine_spearman"


def test_evaluate_local_records_checksums_and_compares(spread_encoder, pairs_file, tmp_path):
    """mteb's evaluator and embedkit's bench on the same local file: one column, no flag."""
    from embedkit.reports.compare import agreement_rows, markdown_report
    from embedkit.runs.compare import compare

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
