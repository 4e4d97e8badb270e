"""embedkit compare: records and mteb folders side by side, flags for cells that do not compare."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess

import pytest

from embedkit.errors import ConfigError, DataError, MissingFileError
from embedkit.integrations.mteb_results import write_mteb_results
from embedkit.reports.compare import (
    board_rows,
    comparison_table,
    html_report,
    markdown_report,
    save_plot,
)
from embedkit.runs.compare import compare, compare_records, read_mteb_folder

TASKS = ("ATEC", "STS-B")


def _bench(name: str, protocol: str, scores: dict[str, float], sha: str = "b" * 64,
           rows: tuple[str, ...] = ("cls",)) -> dict:
    results = {}
    for i, row in enumerate(rows):
        results[row] = {t: {"test": {"spearman": s + i / 100, "pearson": s, "n_pairs": 9}}
                        for t, s in scores.items()}
        results[row].update(pooling=row.split(" + ")[0], post=None)
    return {"kind": "bench", "embedkit": "0.1.0", "model": {
                "name": name, "identity": "sha256:" + "1" * 64, "hidden_size": 8},
            "settings": {"protocol": protocol, "max_length": {t: 512 if protocol == "cmteb"
                                                               else 64 for t in scores}},
            "data": {t: {"test": {"sha256": sha, "n_pairs": 9}} for t in scores},
            "results": results}


def _sweep() -> dict:
    res = {t: {"cls": {"raw": {"select": 0.4, "report": 0.41},
                       "classic": {"post": "whiten:k=all", "select": 0.3, "report": 0.31},
                       "best": {"post": "whiten:k=64", "select": 0.5, "report": 0.52}}}
           for t in TASKS}
    return {"kind": "sweep", "model": {"name": "m"}, "results": res,
            "settings": {"protocol": "whitening", "report_on": "test", "select_on": "valid",
                         "fit_on": "task", "max_length": {t: 64 for t in TASKS}},
            "data": {t: {"test": {"sha256": "b" * 64}} for t in TASKS}}


@pytest.fixture()
def inputs(tmp_path):
    a = _bench("model-a", "cmteb", {"ATEC": 0.30, "STS-B": 0.70})
    b = _bench("model-b", "cmteb", {"ATEC": 0.35, "STS-B": 0.60}, rows=("cls", "last-avg"))
    w = _bench("model-w", "whitening", {"ATEC": 0.50, "STS-B": 0.80})
    paths = {}
    for key, rec in (("a", a), ("b", b), ("w", w), ("s", _sweep())):
        paths[key] = tmp_path / f"{key}.json"
        paths[key].write_text(json.dumps(rec))
    write_mteb_results(copy.deepcopy(a), tmp_path / "mteb")
    paths["mteb"] = tmp_path / "mteb"
    return paths


def test_mixed_inputs_flag_protocol_mismatches(inputs):
    cmp = compare([inputs["a"], inputs["b"], inputs["w"], inputs["mteb"]])
    labels = [e.label for e in cmp.entries]
    assert labels[:4] == ["model-a · cls", "model-b · cls", "model-b · last-avg", "model-w · cls"]
    assert any(label.startswith("embedkit/model-a (pooling=cls") for label in labels)
    flagged = {(e, t) for e, t, _ in cmp.flagged_cells()}
    assert flagged == {("model-w · cls", "ATEC"), ("model-w · cls", "STS-B")}
    reasons = {r for *_, r in cmp.flagged_cells()}
    assert reasons == {"protocol whitening (column: cmteb)"}
    # the mteb files written from record a hold a's numbers, protocol and checksums
    mteb_entry = next(e for e in cmp.entries if e.kind == "mteb")
    assert mteb_entry.cells["STS-B"].score == pytest.approx(0.70)
    assert mteb_entry.cells["STS-B"].protocol == "cmteb" and not mteb_entry.cells["STS-B"].flags
    text = comparison_table(cmp)
    assert "65.00*" in text and "model-w · cls / ATEC: protocol whitening" in text


def test_data_checksum_mismatch_is_flagged(tmp_path):
    a = _bench("a", "cmteb", {"ATEC": 0.3})
    b = _bench("b", "cmteb", {"ATEC": 0.4})
    c = _bench("c", "cmteb", {"ATEC": 0.5}, sha="c" * 64)
    cmp = compare_records([("a.json", a), ("b.json", b), ("c.json", c)])
    assert cmp.flagged_cells() == [("c · cls", "ATEC", "data cccccccccccc (column: bbbbbbbbbbbb)")]


def test_mteb_evaluated_results_without_checksums_are_flagged(inputs, tmp_path):
    """A file mteb wrote itself (no embedkit entry in run_settings.jsonl) names its data by its
    dataset revision: C-MTEB's revision names the hub's data, not comparable with local
    checksums; a local revision carries the local file's checksum, comparable."""
    from embedkit.data import get_task

    a = json.loads(inputs["a"].read_text())
    official = copy.deepcopy(a)
    for task in official["data"]:
        official["data"][task]["test"]["sha256"] = get_task(task).sha256["test"]
    write_mteb_results(official, tmp_path / "official")
    for root in (inputs["mteb"], tmp_path / "official"):
        for settings in (root / "results").rglob("run_settings.jsonl"):
            settings.unlink()
    cmp = compare([inputs["a"], tmp_path / "official"])
    mteb_entry = next(e for e in cmp.entries if e.kind == "mteb")
    assert mteb_entry.label.endswith("[mteb]")
    assert mteb_entry.cells["STS-B"].protocol == "mteb"
    assert sorted((t, r) for e, t, r in cmp.flagged_cells()) == [
        ("ATEC", "data hub@0f319b11 (column: bbbbbbbbbbbb)"),
        ("STS-B", "data hub@e036defe (column: bbbbbbbbbbbb)")]
    local = compare([inputs["a"], inputs["mteb"]])
    assert next(e for e in local.entries if e.kind == "mteb").cells["STS-B"].data == "b" * 64
    assert not local.flagged_cells()


def test_ranks_average_and_incomplete_entries():
    a = _bench("a", "cmteb", {"ATEC": 0.3, "STS-B": 0.7})
    b = _bench("b", "cmteb", {"ATEC": 0.4, "STS-B": 0.8})
    c = _bench("c", "cmteb", {"ATEC": 0.9})
    cmp = compare_records([("a.json", a), ("b.json", b), ("c.json", c)])
    assert cmp.ranks() == {"b · cls": 1, "a · cls": 2}
    assert [e.label for e in cmp.ordered()] == ["b · cls", "a · cls", "c · cls"]
    assert "90.00 (1/2)" in comparison_table(cmp)


def test_sweep_entries(inputs):
    cmp = compare([inputs["s"]])
    assert [e.label for e in cmp.entries] == ["m · cls", "m · cls + whiten (classic)",
                                              "m · cls + whiten (best on valid)"]
    assert cmp.entries[2].cells["ATEC"].score == 0.52
    assert compare([inputs["s"]], split="valid").entries[0].cells["ATEC"].score == 0.4


def test_html_contains_every_model_and_task(inputs, tmp_path):
    cmp = compare([inputs["a"], inputs["b"], inputs["w"], inputs["s"], inputs["mteb"]])
    page = html_report(cmp, "T<est>")
    for e in cmp.entries:
        assert e.label.replace("<", "&lt;") in page
    for t in cmp.tasks:
        assert f">{t}</th>" in page and f">{t}</text>" in page
    assert page.count("<svg") == len(cmp.tasks) + 1  # the average, then one per task
    assert "T&lt;est&gt;" in page and "<script>" in page and 'class="sortable"' in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing from the network
    assert "<link" not in page
    md = markdown_report(cmp)
    assert all(e.label in md for e in cmp.entries)


def test_html_inlines_record_plots(tmp_path):
    pytest.importorskip("matplotlib")
    rec = _bench("a", "cmteb", {"ATEC": 0.3})
    cmp0 = compare_records([("a.json", rec)])
    save_plot(cmp0, tmp_path / "p.png")
    rec["plots"] = ["p.png"]
    (tmp_path / "r.json").write_text(json.dumps(rec))
    page = html_report(compare([tmp_path / "r.json"]))
    assert "data:image/png;base64," in page


def test_plot(inputs, tmp_path):
    pytest.importorskip("matplotlib")
    out = save_plot(compare([inputs["a"], inputs["w"]]), tmp_path / "x" / "c.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_errors(tmp_path, inputs):
    with pytest.raises(MissingFileError):
        compare([tmp_path / "nope.json"])
    with pytest.raises(ConfigError) as e:
        compare([inputs["a"]], metric="kendall")
    assert e.value.param == "metric"
    with pytest.raises(ConfigError) as e:
        compare([inputs["a"]], split="train")
    assert e.value.param == "split"
    other = tmp_path / "o.json"
    other.write_text(json.dumps({"kind": "index-eval"}))
    with pytest.raises(ConfigError) as e:
        compare([other])
    assert e.value.param == "inputs"
    assert read_mteb_folder(tmp_path / "empty") == []


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no headless chromium on this machine")
def test_page_renders_in_headless_chromium(inputs, tmp_path):
    page = tmp_path / "compare.html"
    page.write_text(html_report(compare([inputs["a"], inputs["b"], inputs["w"],
                                         inputs["mteb"]])), encoding="utf-8")
    shot = tmp_path / "shot.png"
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120)
    assert "model-w · cls" in dom.stdout and "Leaderboard" in dom.stdout
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                    f"--screenshot={shot}", "--window-size=1280,900", page.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000


def _simcse(kind: str | None) -> dict:
    """A SimCSE report record: ``kind`` None is the layout before records had a kind (pooling at
    the top, no settings), as eval/simcse-m3e-small.json has it."""
    rows = [{"task": t, "raw": 0.4, "whiten": 0.3, "whiten256": 0.35, "simcse": 0.45,
             "out_dir": f"runs/simcse/m-{t}"} for t in TASKS]
    sup = [{"run": "CoSENT on the 0-5 labels", "task": "STS-B", "simcse": 0.6,
            "out_dir": "runs/simcse/m-sup"}]
    rec = {"model": {"name": "m", "identity": "sha256:" + "1" * 64}, "unsupervised": rows,
           "supervised": sup}
    if kind is None:
        return {**rec, "pooling": "last-avg"}
    return {**rec, "kind": kind, "settings": {"pooling": "last-avg",
                                             "whiten": ["whiten:k=all", "whiten:k=8"]}}


@pytest.mark.parametrize("kind", [None, "simcse-report"])
def test_simcse_report_records(tmp_path, inputs, kind):
    path = tmp_path / "simcse.json"
    path.write_text(json.dumps(_simcse(kind)))
    cmp = compare([inputs["w"], inputs["s"], path])
    by = {e.label: e for e in cmp.entries if e.source == str(path)}
    whiten = ("whiten:beta=1,gamma=1,k=all", "whiten:beta=1,gamma=1,k=256") if kind is None \
        else ("whiten:k=all", "whiten:k=8")
    assert set(by) == {"m · last-avg", f"m · last-avg + {whiten[0]}",
                       f"m · last-avg + {whiten[1]}",
                       "m · last-avg + SimCSE (unsupervised, on the task)",
                       "m · last-avg + SimCSE CoSENT on the 0-5 labels (STS-B train)"}
    unsup = by["m · last-avg + SimCSE (unsupervised, on the task)"]
    assert {t: c.score for t, c in unsup.cells.items()} == {"ATEC": 0.45, "STS-B": 0.45}
    assert unsup.kind == "simcse" and unsup.cells["ATEC"].protocol == "whitening"
    assert unsup.cells["ATEC"].settings["trained"] == "runs/simcse/m-ATEC"
    assert by[f"m · last-avg + {whiten[1]}"].cells["STS-B"].settings["post"] == whiten[1]
    assert list(by["m · last-avg + SimCSE CoSENT on the 0-5 labels (STS-B train)"].cells) == [
        "STS-B"]
    # the report keeps no checksum of its test files: flagged against a column that has one
    # (ATEC: four cells with the checksum, the first of them, against four without)
    assert unsup.cells["ATEC"].data is None and cmp.reference["ATEC"] == ("whitening", "b" * 64)
    assert (unsup.label, "ATEC", f"data unknown (column: {'b' * 12})") in cmp.flagged_cells()
    # Spearman on test only
    assert not [e for e in compare_records([(str(path), _simcse(kind))], split="valid",
                                           extra=[]).entries]
    assert "m · last-avg + SimCSE (unsupervised, on the task)" in markdown_report(cmp)


# -- issue 18.3: what is ranked, what is refused, what is named ----------------------------------

def test_flagged_cell_is_never_ranked_or_averaged_with_comparable_ones():
    """b's ATEC is scored on other data: shown and flagged, but b is not ranked (it was ranked
    first on it) and its average is over its one comparable task, marked (1/2)."""
    a = _bench("a", "cmteb", {"ATEC": 0.30, "STS-B": 0.70})
    b = _bench("b", "cmteb", {"ATEC": 0.90, "STS-B": 0.80})
    b["data"]["ATEC"]["test"]["sha256"] = "c" * 64
    cmp = compare_records([("a.json", a), ("b.json", b)])
    assert [(e, t) for e, t, _ in cmp.flagged_cells()] == [("b · cls", "ATEC")]
    assert cmp.ranks() == {"a · cls": 1}
    avg = cmp.average_of(cmp.entries[1])
    assert (avg.value, avg.tasks, avg.flagged) == (0.80, ("STS-B",), False)
    rows = {r[1]: r for r in board_rows(cmp)[1]}
    assert rows["b · cls"][:5] == ["-", "b · cls", "90.00*", "80.00", "80.00 (1/2)"]
    assert rows["a · cls"][:5] == ["1", "a · cls", "30.00", "70.00", "50.00"]
    assert [e.label for e in cmp.ordered()] == ["a · cls", "b · cls"]


def test_entry_with_only_flagged_cells_is_shown_not_ranked(inputs):
    cmp = compare([inputs["a"], inputs["b"], inputs["w"]])
    w = next(e for e in cmp.entries if e.label == "model-w · cls")
    assert not cmp.rankable(w) and "model-w · cls" not in cmp.ranks()
    assert cmp.average_of(w).flagged and [e.label for e in cmp.ordered()][-1] == "model-w · cls"
    assert set(cmp.ranks().values()) == {1, 2, 3}  # a, b's two rows: 1..3, w none


def _write(tmp_path, name, rec) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(rec))
    return str(path)


@pytest.mark.parametrize("value, shown", [
    (1e300, "1e+300: impossible"), (-1.5, "-1.5: impossible"), (float("nan"), "NaN: impossible"),
    (float("inf"), "Infinity: impossible"), ("0.5", '"0.5", not a number'),
    ("abc", '"abc", not a number'), (True, "true, not a number"), (None, "null, not a number"),
    ([0.5], "[0.5], not a number")])
def test_impossible_or_non_numeric_score_is_refused_naming_the_file(tmp_path, value, shown):
    rec = _bench("a", "cmteb", {"ATEC": 0.3})
    rec["results"]["cls"]["ATEC"]["test"]["spearman"] = value
    path = _write(tmp_path, "bad.json", rec)
    with pytest.raises(DataError) as e:
        compare([_write(tmp_path, "good.json", _bench("g", "cmteb", {"ATEC": 0.3})), path])
    assert str(e.value).startswith(f"{path}: results.cls.ATEC.test.spearman is {shown}")
    assert "\n" not in str(e.value) and e.value.param == "inputs"


def test_sweep_simcse_and_mteb_scores_are_checked(tmp_path, inputs):
    sweep = _sweep()
    sweep["results"]["ATEC"]["cls"]["best"]["report"] = "0.52"
    with pytest.raises(DataError, match=r"results\.ATEC\.cls\.best\.report is \"0\.52\""):
        compare([_write(tmp_path, "s.json", sweep)])
    simcse = _simcse("simcse-report")
    simcse["unsupervised"][1]["simcse"] = 45.0  # x 100 in a file that keeps fractions
    with pytest.raises(DataError, match=r"unsupervised\[1\]\.simcse is 45\.0: impossible"):
        compare([_write(tmp_path, "simcse.json", simcse)])
    # the synthetic record's data is not C-MTEB's: its task file carries a local name
    task = next((inputs["mteb"] / "results").rglob("ATEC*.json"))
    result = json.loads(task.read_text())
    result["scores"]["test"][0]["cosine_spearman"] = 1e300
    task.write_text(json.dumps(result))
    with pytest.raises(DataError) as e:
        compare([inputs["mteb"]])
    assert str(e.value).startswith(f"{task}: scores.test[0].cosine_spearman is 1e+300")


def test_score_declared_undefined_is_shown_as_missing_not_refused():
    rec = _bench("a", "cmteb", {"ATEC": 0.3, "STS-B": 0.7})
    rec["results"]["cls"]["ATEC"]["test"]["spearman"] = float("nan")
    rec["undefined"] = [{"row": "cls", "task": "ATEC", "split": "test",
                         "reason": "constant labels"}]
    cmp = compare_records([("a.json", rec), ("b.json", _bench("b", "cmteb", {
        "ATEC": 0.4, "STS-B": 0.6}))])
    assert cmp.ranks() == {"b · cls": 1}
    assert board_rows(cmp)[1][1][2] == "-"


def test_record_without_results_is_named_not_dropped(tmp_path, caplog):
    good = _write(tmp_path, "good.json", _bench("g", "cmteb", {"ATEC": 0.3}))
    empty = _bench("e", "cmteb", {"ATEC": 0.3})
    empty["results"] = {}
    empty_path = _write(tmp_path, "empty.json", empty)
    folder = tmp_path / "no-results"
    folder.mkdir()
    with caplog.at_level("WARNING", logger="embedkit"):
        cmp = compare([good, empty_path, folder])
    assert [e.label for e in cmp.entries] == ["g · cls"]
    assert cmp.skipped == [
        (str(folder), "no mteb result files with spearman on the test split"),
        (empty_path, "no spearman scores on the test split")]
    assert f"{empty_path}: no spearman scores on the test split; left out" in caplog.text
    text = comparison_table(cmp)
    assert f"Left out (no score to compare):\n  {folder}: no mteb" in text
    assert empty_path in markdown_report(cmp) and empty_path in html_report(cmp)


def test_mteb_files_without_the_metric_are_named(inputs):
    task = next((inputs["mteb"] / "results").rglob("ATEC*.json"))  # a local task name
    result = json.loads(task.read_text())
    result["scores"]["test"][0].pop("cosine_spearman")
    result["scores"]["test"][0].pop("spearman", None)
    task.write_text(json.dumps(result))
    cmp = compare([inputs["a"], inputs["mteb"]])
    assert cmp.skipped == [(str(inputs["mteb"]),
                            f"1 result file(s) without spearman on the test split ({task.name})")]


def test_backend_precision_prompt_and_revision_in_the_settings_column(tmp_path):
    """An int8 ONNX run read the same as the float32 torch one (issue 18.3)."""
    torch_rec = _bench("m", "cmteb", {"ATEC": 0.30})
    int8 = _bench("m", "cmteb", {"ATEC": 0.29})
    int8["settings"].update(backend="onnx", quantize="int8", dtype="float32", prompt="query: ",
                            revision="v2")
    ov = _bench("m", "cmteb", {"ATEC": 0.31})
    ov["settings"].update(backend="openvino", quantize="none", prompt="")
    ov["model"]["identity"] = "org/m@0123456789abcdef0123"
    write_mteb_results(copy.deepcopy(int8), tmp_path / "mteb")
    cmp = compare([_write(tmp_path, "t.json", torch_rec), _write(tmp_path, "i.json", int8),
                   _write(tmp_path, "o.json", ov), tmp_path / "mteb"])
    settings = {r[1]: r[-1] for r in board_rows(cmp)[1]}
    assert settings["m · cls"] == "torch float32, max_length=512"
    assert settings["m · cls [i.json]"] == ('onnx int8, prompt "query: ", revision v2, '
                                            "max_length=512")
    assert settings["m · cls [o.json]"] == "openvino float32, revision 0123456789ab, max_length=512"
    mteb_row = next(label for label in settings if label.endswith("[embedkit]"))
    assert settings[mteb_row].startswith('onnx int8, prompt "query: ", revision v2')
