"""Bench records written as mteb TaskResult files, read back with mteb's own loader."""

from __future__ import annotations

import copy
import json

import pytest

from embedkit.errors import ConfigError
from embedkit.experiments.bench import run_bench
from embedkit.experiments.mteb_results import (
    MTEB_SCHEMA_VERSION,
    experiment_name,
    mteb_model_name,
    read_run_settings,
    result_folder,
    task_result_json,
    write_mteb_results,
)

MODEL = {"name": "m3e-small", "identity": "sha256:" + "9" * 64, "dtype": "float32",
         "hidden_size": 512}


def _record(protocol: str = "cmteb") -> dict:
    """A bench record of the shape run_bench returns, on two C-MTEB tasks, two rows."""
    def task(v, t):
        return {"valid": {"spearman": v, "pearson": v - 0.01, "n_pairs": 10},
                "test": {"spearman": t, "pearson": t - 0.01, "n_pairs": 12},
                "avg": {"spearman": (v + t) / 2, "pearson": 0.0},
                "w-avg": {"spearman": 0.0, "pearson": 0.0}}
    rows = {"cls": {"STS-B": task(0.71234567, 0.70), "ATEC": task(0.3, 0.31),
                    "avg": {"spearman": 0.5, "pearson": 0.5}, "pooling": "cls", "post": None},
            "cls + whiten:beta=1,gamma=1,k=256": {
                "STS-B": task(0.75, 0.74), "ATEC": task(0.35, 0.36),
                "avg": {"spearman": 0.55, "pearson": 0.5}, "pooling": "cls",
                "post": "whiten:beta=1,gamma=1,k=256"}}
    data = {t: {"valid": {"source": f"/d/{t}.valid", "sha256": "a" * 64, "n_pairs": 10,
                          "skipped": 0},
                "test": {"source": f"/d/{t}.test", "sha256": "b" * 64, "n_pairs": 12,
                         "skipped": 0}} for t in ("STS-B", "ATEC")}
    return {"kind": "bench", "embedkit": "0.1.0", "command": "embedkit bench", "model": MODEL,
            "settings": {"protocol": protocol, "max_length": {"STS-B": 512, "ATEC": 512},
                         "fit_on": "task", "post_files": {}},
            "data": data, "results": rows}


def test_layout_names_and_revisions(tmp_path):
    paths = write_mteb_results(_record(), tmp_path)
    assert len(paths) == 4
    raw = result_folder(tmp_path, "moka-ai/m3e-small", "9" * 40,
                        {"pooling": "cls", "max_length": 512})
    assert raw == tmp_path / "moka-ai__m3e-small" / ("9" * 40) / "experiments" / (
        "max_length_512__pooling_cls")
    assert sorted(p.name for p in raw.iterdir()) == ["ATEC.json", "STSB.json", "model_meta.json",
                                                    "run_settings.jsonl"]
    stsb = json.loads((raw / "STSB.json").read_text())
    assert list(stsb) == ["dataset_revision", "task_name", "mteb_version", "scores",
                          "evaluation_time", "kg_co2_emissions", "date", "evaluation_phases"]
    assert stsb["task_name"] == "STSB"
    assert stsb["dataset_revision"] == "e036defee8f190911de6fc825a944b928c8cda53"
    assert stsb["mteb_version"] == MTEB_SCHEMA_VERSION
    assert sorted(stsb["scores"]) == ["test", "validation"]
    entry = stsb["scores"]["validation"][0]
    assert entry["cosine_spearman"] == entry["main_score"] == 0.712346
    assert entry["hf_subset"] == "default" and entry["languages"] == ["cmn-Hans"]
    whitened = [p for p in paths if "whiten" in str(p)]
    assert len(whitened) == 2 and whitened[0].parent != raw
    meta = json.loads((whitened[0].parent / "model_meta.json").read_text())
    assert meta["experiment_kwargs"]["post"] == "whiten:beta=1,gamma=1,k=256"
    assert meta["experiment_kwargs"]["fit_on"] == "task"


def test_run_settings_keep_protocol_and_checksums(tmp_path):
    write_mteb_results(_record("whitening"), tmp_path)
    folder = result_folder(tmp_path, "moka-ai/m3e-small", "9" * 40,
                           {"pooling": "cls", "max_length": 512})
    settings = read_run_settings(folder)
    assert set(settings) == {"STSB", "ATEC"}
    ek = settings["STSB"]["embedkit"]
    assert ek["protocol"] == "whitening" and ek["row"] == "cls"
    assert ek["data"]["test"]["sha256"] == "b" * 64
    write_mteb_results(_record("cmteb"), tmp_path)  # rewriting replaces the task's line
    settings = read_run_settings(folder)
    assert settings["STSB"]["embedkit"]["protocol"] == "cmteb"
    assert len((folder / "run_settings.jsonl").read_text().splitlines()) == 2


def test_not_a_bench_record():
    with pytest.raises(ConfigError) as e:
        write_mteb_results({"kind": "sweep", "results": {}}, "x")
    assert e.value.param == "record"


def test_model_names():
    assert mteb_model_name({"name": "moka-ai/m3e-small", "identity": "moka-ai/m3e-small@abc"}
                           ) == ("moka-ai/m3e-small", "abc")
    name, rev = mteb_model_name({"name": "/some/where/my-model/", "identity": "sha256:" + "f" * 64})
    assert name == "embedkit/my-model" and rev == "f" * 40


def test_non_cmteb_task_keeps_its_name_and_checksum():
    r = task_result_json("tiny-sts", {"test": {"spearman": 0.5, "pearson": 0.4}},
                         data={"test": {"sha256": "c" * 64}})
    assert r["task_name"] == "tiny-sts" and r["dataset_revision"] == "sha256:" + "c" * 64


# -- mteb's own loader --------------------------------------------------------------------------

def test_mteb_reads_the_files(tmp_path):
    mteb = pytest.importorskip("mteb")
    from mteb.models.model_meta import ModelMeta

    root = tmp_path / "results"
    paths = write_mteb_results(_record(), root)
    for p in paths:
        tr = mteb.TaskResult.from_disk(p)
        assert tr.task_name in ("STSB", "ATEC")
        assert tr.get_score(splits=["test"]) == pytest.approx(
            json.loads(p.read_text())["scores"]["test"][0]["main_score"])
    saved = json.loads((paths[0].parent / "model_meta.json").read_text())
    saved.pop("is_cross_encoder")  # a derived field to_dict adds
    meta = ModelMeta.model_validate(saved)
    assert meta.experiment_name == paths[0].parent.name
    cache = mteb.ResultCache(cache_path=tmp_path)
    res = cache.load_results(include_remote=False, load_experiments="match_name")
    table = res.to_dataframe()
    assert {"STSB", "ATEC"} <= set(table["task_name"])
    assert len(res.model_results) == 2  # the two rows, two experiments of one model


def test_experiment_name_is_mtebs():
    pytest.importorskip("mteb")
    from mteb.models.model_meta import ModelMeta

    cases = [{"pooling": "cls", "max_length": 512},
             {"pooling": "first-last-avg", "max_length": 64, "post": "whiten:beta=1,k=all",
              "fit_on": "task", "lowercase": True},
             {"pooling": "cls", "max_length": 512, "post": "file:/tmp/w.safetensors"},
             {"pooling": "cls", "max_length": 512, "post": "x" * 300, "post_sha256": "ab" * 32}]
    for kw in cases:
        meta = ModelMeta.create_empty(overwrites={"name": "a/b", "experiment_kwargs": kw})
        assert experiment_name(kw) == meta.experiment_name, kw


def test_bench_on_the_tiny_model_round_trips(tiny_encoder, spec_file, tmp_path):
    mteb = pytest.importorskip("mteb")
    record = run_bench(tiny_encoder, ["cls", "last-avg"], [str(spec_file)], protocol="cmteb")
    paths = write_mteb_results(copy.deepcopy(record), tmp_path)
    assert len(paths) == 2
    for p in paths:
        tr = mteb.TaskResult.from_disk(p)
        pooling = "cls" if "pooling_cls" in str(p) else "last-avg"
        assert tr.task_name == "tiny-sts"
        assert tr.scores["test"][0]["cosine_spearman"] == pytest.approx(
            record["results"][pooling]["tiny-sts"]["test"]["spearman"], abs=1e-6)
