"""Bench records written as mteb TaskResult files, read back with mteb's own loader
(``ResultCache.load_results`` with its defaults, ``to_dataframe``, ``TaskResult.from_disk``)."""

from __future__ import annotations

import copy
import json

import pytest

from embedkit.data import get_task, load_task
from embedkit.errors import ConfigError
from embedkit.integrations.mteb_results import (
    CMTEB_TASKS,
    MTEB_SCHEMA_VERSION,
    dataset_identity,
    is_official_data,
    model_meta_json,
    mteb_model_name,
    official_task_name,
    read_run_settings,
    result_folder,
    task_result_json,
    variant_name,
    write_mteb_results,
)
from embedkit.runs.bench import run_bench

MODEL = {"name": "m3e-small", "identity": "sha256:" + "9" * 64, "dtype": "float32",
         "hidden_size": 512, "default_pooling": "last-avg"}
STSB_REV = CMTEB_TASKS["STS-B"][1]
WHITEN = "whiten:beta=1,gamma=1,k=256"


def _official(task: str, split: str) -> str:
    return get_task(task).sha256[split]


def _record(protocol: str = "cmteb", sha: dict | None = None) -> dict:
    """A bench record of the shape run_bench returns, on two C-MTEB tasks, three rows (two
    poolings, one postprocessor); the data carries the official checksums unless ``sha``."""
    def task(v, t):
        return {"valid": {"spearman": v, "pearson": v - 0.01, "n_pairs": 10},
                "test": {"spearman": t, "pearson": t - 0.01, "n_pairs": 12},
                "avg": {"spearman": (v + t) / 2, "pearson": 0.0},
                "w-avg": {"spearman": 0.0, "pearson": 0.0}}
    rows = {"last-avg": {"STS-B": task(0.61, 0.60), "ATEC": task(0.21, 0.20),
                         "avg": {"spearman": 0.4, "pearson": 0.4}, "pooling": "last-avg",
                         "post": None},
            "cls": {"STS-B": task(0.71234567, 0.70), "ATEC": task(0.3, 0.31),
                    "avg": {"spearman": 0.5, "pearson": 0.5}, "pooling": "cls", "post": None},
            f"cls + {WHITEN}": {
                "STS-B": task(0.75, 0.74), "ATEC": task(0.35, 0.36),
                "avg": {"spearman": 0.55, "pearson": 0.5}, "pooling": "cls", "post": WHITEN}}
    sha = sha or {(t, s): _official(t, s) for t in ("STS-B", "ATEC") for s in ("valid", "test")}
    data = {t: {s: {"source": f"/d/{t}.{s}", "sha256": sha[(t, s)], "n_pairs": 10,
                    "skipped": 0} for s in ("valid", "test")} for t in ("STS-B", "ATEC")}
    return {"kind": "bench", "embedkit": "0.1.0", "command": "embedkit bench", "model": MODEL,
            "settings": {"protocol": protocol, "max_length": {"STS-B": 512, "ATEC": 512},
                         "model_max_length": 512, "fit_on": "task", "post_files": {}},
            "data": data, "results": rows}


# -- names, revisions, layout -------------------------------------------------------------------

def test_layout_names_and_revisions(tmp_path):
    paths = write_mteb_results(_record(), tmp_path)
    assert len(paths) == 6
    plain = result_folder(tmp_path / "results", "moka-ai/m3e-small", "9" * 40)
    assert plain == tmp_path / "results" / "moka-ai__m3e-small" / ("9" * 40)
    assert sorted(p.name for p in plain.iterdir()) == ["ATEC.json", "STSB.json",
                                                      "model_meta.json", "run_settings.jsonl"]
    stsb = json.loads((plain / "STSB.json").read_text())
    assert list(stsb) == ["dataset_revision", "task_name", "mteb_version", "scores",
                          "evaluation_time", "kg_co2_emissions", "date", "evaluation_phases"]
    assert stsb["task_name"] == "STSB" and stsb["dataset_revision"] == STSB_REV
    assert stsb["mteb_version"] == MTEB_SCHEMA_VERSION
    assert sorted(stsb["scores"]) == ["test", "validation"]
    assert stsb["scores"]["test"][0]["main_score"] == 0.60
    entry = json.loads((result_folder(tmp_path / "results", "moka-ai/m3e-small (pooling=cls)",
                                      "9" * 40) / "STSB.json").read_text())["scores"]
    assert entry["validation"][0]["cosine_spearman"] == entry["validation"][0][
        "main_score"] == 0.712346
    assert entry["validation"][0]["hf_subset"] == "default"
    meta = json.loads((plain / "model_meta.json").read_text())
    assert meta["name"] == "moka-ai/m3e-small" and meta["experiment_kwargs"] is None
    assert meta["loader_kwargs"] == {"pooling": "last-avg", "max_length": 512}
    assert meta["adapted_from"] is None
    whitened = {p.parent for p in paths if "whiten" in str(p)}
    assert len(whitened) == 1
    meta = json.loads((whitened.pop() / "model_meta.json").read_text())
    assert meta["name"] == f"moka-ai/m3e-small (pooling=cls, post={WHITEN.replace(':', '_')}, " \
                           "fit_on=task)"
    assert meta["adapted_from"] == "moka-ai/m3e-small"
    assert meta["loader_kwargs"] == {"pooling": "cls", "max_length": 512, "post": WHITEN,
                                     "fit_on": "task"}


def test_whitening_protocol_names_its_max_length(tmp_path):
    rec = _record("whitening")
    rec["settings"]["max_length"] = {"STS-B": 64, "ATEC": 64}
    names = {json.loads((p.parent / "model_meta.json").read_text())["name"]
             for p in write_mteb_results(rec, tmp_path)}
    assert names == {"moka-ai/m3e-small (max_length=64)",
                     "moka-ai/m3e-small (pooling=cls, max_length=64)",
                     "moka-ai/m3e-small (pooling=cls, max_length=64, post=whiten_beta=1,gamma=1,"
                     "k=256, fit_on=task)"}


def test_variant_names_stay_short_and_distinct():
    long_post = "x" * 300
    a = variant_name("a/b", {"pooling": "cls", "post": long_post})
    b = variant_name("a/b", {"pooling": "cls", "post": long_post + "y"})
    assert a != b and a.startswith("a/b (exp_") and len(a) < 40
    c = variant_name("a/b", {"post": "file:/tmp/w.safetensors", "post_sha256": "ab" * 32})
    assert c == "a/b (post=file__tmp_w.safetensors, post_sha256=abababababab)"


def test_run_settings_keep_protocol_and_checksums(tmp_path):
    write_mteb_results(_record("whitening"), tmp_path)
    folder = result_folder(tmp_path / "results", "moka-ai/m3e-small (pooling=cls)", "9" * 40)
    settings = read_run_settings(folder)
    assert set(settings) == {"STSB", "ATEC"}
    ek = settings["STSB"]["embedkit"]
    assert ek["protocol"] == "whitening" and ek["row"] == "cls"
    assert ek["data"]["test"]["sha256"] == _official("STS-B", "test")
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


# -- item 1: the official revision only for the official data ------------------------------------

def test_other_data_under_an_official_name_is_local():
    local = "c" * 64
    r = task_result_json("STS-B", {"test": {"spearman": 0.86, "pearson": 0.8}},
                         data={"test": {"sha256": local}})
    assert r["task_name"] == "STSB-local-cccccccc" and r["task_name"] != "STSB"
    assert r["dataset_revision"] == f"local-sha256-{local}" != STSB_REV
    official = task_result_json("STS-B", {"test": {"spearman": 0.74, "pearson": 0.7}},
                                data={"test": {"sha256": _official("STS-B", "test")}})
    assert (official["task_name"], official["dataset_revision"]) == ("STSB", STSB_REV)
    # one split of other data is enough to make the whole result local
    mixed = task_result_json("STS-B", {"test": {"spearman": 0.7, "pearson": 0.7},
                                       "valid": {"spearman": 0.7, "pearson": 0.7}},
                             data={"test": {"sha256": _official("STS-B", "test")},
                                   "valid": {"sha256": local}})
    assert mixed["task_name"].startswith("STSB-local-")
    assert official_task_name(mixed["task_name"]) == "STSB"


def test_a_users_task_is_local_and_hub_reads_of_mtebs_dataset_are_official():
    name, rev = dataset_identity("tiny-sts", {"test": {"sha256": "d" * 64}})
    assert (name, rev) == ("tiny-sts-local-dddddddd", "local-sha256-" + "d" * 64)
    atec = CMTEB_TASKS["ATEC"][1]
    assert is_official_data("ATEC", {"test": {"source": f"hub:C-MTEB/ATEC@{atec}/test",
                                              "sha256": "e" * 64}})
    assert not is_official_data("ATEC", {"test": {"source": "hub:C-MTEB/ATEC@main/test",
                                                  "sha256": "e" * 64}})
    assert dataset_identity("STSB", {"test": {}}) == ("STSB-local", "local-unknown")


def test_local_300_pair_file_named_stsb_gets_a_local_revision(tiny_encoder, sentences,
                                                              tmp_path):
    """The user's case: a local pair file under STS-B's name; mteb reads a task that says it
    is local, at a revision that is the file's sha256 (before: STSB at C-MTEB's revision)."""
    mteb = pytest.importorskip("mteb")
    n = len(sentences)
    lines = [f"{sentences[k % n]}\t{sentences[(7 * k + 3) % n]}\t{k % 6}" for k in range(300)]
    pairs = tmp_path / "stsb-300.tsv"
    pairs.write_text("\n".join(lines) + "\n", encoding="utf-8")
    spec = tmp_path / "stsb.json"
    spec.write_text(json.dumps({"name": "STS-B", "files": {"test": str(pairs)},
                                "label_range": [0, 5], "label_type": "int"}))
    record = run_bench(tiny_encoder, ["cls"], [str(spec)], protocol="cmteb")
    sha = record["data"]["STS-B"]["test"]["sha256"]
    (path,) = write_mteb_results(record, tmp_path / "cache")
    tr = mteb.TaskResult.from_disk(path)
    assert tr.task_name == f"STSB-local-{sha[:8]}" and path.name == f"{tr.task_name}.json"
    assert tr.dataset_revision == f"local-sha256-{sha}"
    loaded = mteb.ResultCache(cache_path=tmp_path / "cache").load_results(include_remote=False)
    assert [t.task_name for m in loaded.model_results for t in m.task_results] == [tr.task_name]
    assert "STSB" not in set(loaded.to_dataframe()["task_name"])


@pytest.mark.shared_data
def test_the_published_files_get_cmtebs_revision(shared_data_dir):
    split = load_task("STS-B", ["test"], data_dir=shared_data_dir)["test"]
    r = task_result_json("STS-B", {"test": {"spearman": 0.74, "pearson": 0.7}},
                         data={"test": {"source": split.source, "sha256": split.sha256}})
    assert (r["task_name"], r["dataset_revision"]) == ("STSB", STSB_REV)
    part = split.sample(300, seed=0)  # 300 of the published pairs are not the task
    r = task_result_json("STS-B", {"test": {"spearman": 0.86, "pearson": 0.8}},
                         data={"test": {"source": part.source, "sha256": part.sha256}})
    assert r["task_name"] != "STSB" and r["dataset_revision"] != STSB_REV


# -- items 2 and 3: mteb's default loader reads every row; rows never share a cell ----------------

def test_default_load_results_reads_every_row_in_its_own_column(tmp_path):
    """``ResultCache(cache_path=P).load_results()`` with mteb's defaults (before: experiment
    folders, skipped) and ``to_dataframe()`` (before: the rows of one model averaged)."""
    mteb = pytest.importorskip("mteb")
    write_mteb_results(_record(), tmp_path)
    for kwargs in ({}, {"load_experiments": "match_name"}):
        res = mteb.ResultCache(cache_path=tmp_path).load_results(include_remote=False,
                                                                 **kwargs)
        assert len(res.model_results) == 3
        table = res.to_dataframe().set_index("task_name")  # the mean of valid and test
        assert table.loc["STSB", "moka-ai/m3e-small"] == pytest.approx(0.605)
        assert table.loc["STSB", "moka-ai/m3e-small (pooling=cls)"] == pytest.approx(0.706173)
        whiten = next(c for c in table.columns if "whiten" in c)
        assert table.loc["STSB", whiten] == pytest.approx(0.745)
        by_split = res.to_dataframe(aggregation_level="split").set_index(["task_name", "split"])
        assert by_split.loc[("ATEC", "test"), "moka-ai/m3e-small (pooling=cls)"] == 0.31


def test_model_meta_is_mtebs(tmp_path):
    pytest.importorskip("mteb")
    from mteb.models.model_meta import ModelMeta

    saved = model_meta_json("a/b (pooling=cls)", "r", settings={"pooling": "cls"})
    saved.pop("is_cross_encoder")  # a derived field to_dict adds
    meta = ModelMeta.model_validate(saved)
    assert meta.experiment_name is None and meta.model_name_as_path() == "a__b_(pooling=cls)"
    assert result_folder(tmp_path, meta.name, "r") == tmp_path / meta.model_name_as_path() / "r"
    empty = ModelMeta.create_empty().to_dict()
    assert set(empty) == set(model_meta_json("a/b", "r"))


def test_bench_on_the_tiny_model_round_trips(tiny_encoder, spec_file, tmp_path):
    """A real bench record (default settings and another pooling) loads with mteb's default
    loader, one column per pooling, each holding the bench's own Spearman."""
    mteb = pytest.importorskip("mteb")
    default = tiny_encoder.default_pooling
    other = "last-avg" if str(default) != "last-avg" else "cls"
    record = run_bench(tiny_encoder, [str(default), other], [str(spec_file)], protocol="cmteb")
    paths = write_mteb_results(copy.deepcopy(record), tmp_path)
    assert len(paths) == 2
    sha = record["data"]["tiny-sts"]["test"]["sha256"]
    res = mteb.ResultCache(cache_path=tmp_path).load_results(include_remote=False)
    table = res.to_dataframe().set_index("task_name")
    base = mteb_model_name(record["model"])[0]
    assert sorted(table.columns) == sorted([base, f"{base} (pooling={other})", "is_public"])
    task = f"tiny-sts-local-{sha[:8]}"
    for column, pooling in ((base, str(default)), (f"{base} (pooling={other})", other)):
        want = record["results"][pooling]["tiny-sts"]["test"]["spearman"]
        assert table.loc[task, column] == pytest.approx(want, abs=1e-6)
