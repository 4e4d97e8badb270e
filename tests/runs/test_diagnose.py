"""run_diagnose on the tiny model: rows, the scores bench gives, diagnostics equal to the
functions on the same vectors, options, the sweep comparison and the report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedkit.diagnostics import profile
from embedkit.errors import ConfigError
from embedkit.evaluation import STSEvaluator
from embedkit.postprocess.spec import PostOptions
from embedkit.reports.diagnose import (
    conclusions,
    diagnose_markdown,
    format_diagnose_table,
    format_summary_table,
)
from embedkit.runs.bench import run_bench
from embedkit.runs.diagnose import (
    DiagnoseOptions,
    load_sweep,
    run_diagnose,
    stop_dimension,
    sweep_dimensions,
)

OPTS = dict(k=5, n_pairs=300, jl_dims=(8, 16))


@pytest.fixture(scope="module")
def record(tiny_encoder, spec_file):
    opts = DiagnoseOptions(tasks=(str(spec_file),), post=PostOptions(("whiten:k=16", "rp:k=8,seed=0")),
                           retrieval=True, **OPTS)
    return run_diagnose(tiny_encoder, opts, ["cls", "last-avg"], command="embedkit diagnose x")


def test_rows_scores_and_diagnostics(record, tiny_encoder, spec_file):
    assert [r["row"] for r in record["rows"]] == [
        "cls", "cls + whiten:beta=1,gamma=1,k=16", "cls + rp:k=8,kind=gaussian,seed=0",
        "last-avg", "last-avg + whiten:beta=1,gamma=1,k=16",
        "last-avg + rp:k=8,kind=gaussian,seed=0"]
    bench = run_bench(tiny_encoder, ["cls", "last-avg"], [str(spec_file)],
                      post=["whiten:k=16", "rp:k=8,seed=0"])
    for r in record["rows"]:  # the postprocessors are fitted and scored exactly as bench does
        assert r["spearman_avg"] == pytest.approx(bench["results"][r["row"]]["avg"]["spearman"])
    sentences = STSEvaluator([str(spec_file)]).sentences("tiny-sts")
    x = tiny_encoder.encode(sentences, "cls")
    raw = record["rows"][0]
    ref = profile(x, k=5, n_pairs=300, jl_dims=(8, 16))
    assert raw["diagnostics"]["spectrum"] == ref["spectrum"]
    assert raw["diagnostics"]["hubness"] == ref["hubness"]
    assert raw["diagnostics"]["anisotropy"] == ref["anisotropy"]
    d = record["data"]["tiny-sts"]
    assert d["n_sentences"] == len(sentences) and d["fit"]["on"].startswith("task:")
    assert d["retrieval"]["test"]["threshold"] == 4.0
    s = record["settings"]
    assert (s["k"], s["sample"], s["retrieval_tasks"], s["poolings"]) == (
        5, None, ["tiny-sts"], ["cls", "last-avg"])
    assert record["timings"]["seconds_diagnostics"] > 0


def test_summary_and_tables(record):
    summary = {s["row"]: s for s in record["summary"]}
    assert summary["cls"]["n_tasks"] == 1
    assert summary["cls"]["spearman_avg"] == record["rows"][0]["spearman_avg"]
    assert summary["cls"]["recall"] == record["rows"][0]["retrieval"]["test"]["raw"]["recall@10"]
    table = format_diagnose_table(record).splitlines()
    assert table[0].split()[:3] == ["task", "row", "dim"]
    assert len(table) == 7 and "R@10 CSLS" in table[0]
    assert format_summary_table(record, markdown=True).startswith("| row | dim |")


def test_sample_is_the_same_for_every_row(tiny_encoder, spec_file):
    opts = DiagnoseOptions(tasks=(str(spec_file),), post=PostOptions(("pca:k=8",)), sample=30, **OPTS)
    rec = run_diagnose(tiny_encoder, opts, ["cls"])
    assert [r["diagnostics"]["n_sample"] for r in rec["rows"]] == [30, 30]
    assert rec["rows"][0]["diagnostics"]["jl"]["n_vectors"] > 30
    assert all(r["retrieval"] is None for r in rec["rows"])


@pytest.mark.parametrize("opts, param", [
    (dict(k=0), "k"),
    (dict(sample=5, k=10), "sample"),
    (dict(seed=-1), "seed"),
    (dict(n_pairs=0), "n_pairs"),
    (dict(jl_dims=()), "jl_dims"),
    (dict(jl_dims=(8, 0)), "jl_dims"),
    (dict(csls_k=0), "csls_k"),
    (dict(csls_candidates=0), "csls_candidates"),
    (dict(max_length=2), "max_length"),
    (dict(corpus="c.txt", tasks=("STS-B",)), "corpus"),
    (dict(corpus="c.txt", retrieval=True), "retrieval"),
])
def test_options_name_the_bad_parameter(opts, param):
    with pytest.raises(ConfigError) as e:
        DiagnoseOptions(**opts).check()
    assert e.value.param == param


def test_unknown_retrieval_task(tiny_encoder, spec_file):
    opts = DiagnoseOptions(tasks=(str(spec_file),), retrieval=True, retrieval_tasks=("LCQMC",))
    with pytest.raises(ConfigError, match="LCQMC") as e:
        run_diagnose(tiny_encoder, opts, ["cls"])
    assert e.value.param == "retrieval"


def test_stop_dimension():
    assert stop_dimension({64: 0.60, 128: 0.695, 256: 0.70, 512: 0.70}) == 128
    assert stop_dimension({64: 0.72, 128: 0.70, 512: 0.70}) == 64  # rising as k falls
    assert stop_dimension({64: 0.70, 128: 0.50, 512: 0.70}) == 512  # a dip in between
    assert stop_dimension({64: 0.5, 512: 0.7}, tolerance=0.3) == 64


def fake_sweep(d: int = 32) -> dict:
    settings = []
    for beta, gamma, curve in ((0.0, 0.0, {8: 0.30, 16: 0.335, d: 0.34}),
                               (1.0, 1.0, {8: 0.50, 16: 0.55, d: 0.60})):
        for k, v in curve.items():
            settings.append({"beta": beta, "gamma": gamma, "k": "all" if k == d else k,
                             "k_dim": k, "report": v, "select": v})
    return {"kind": "sweep", "settings": {"report_on": "test"},
            "results": {"tiny-sts": {"cls": {"d": d, "settings": settings}},
                        "other": {"cls": {"d": d, "settings": settings}}}}


def test_sweep_comparison_and_report(record, tmp_path):
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(fake_sweep()), encoding="utf-8")
    sw = sweep_dimensions(load_sweep(path), record["rows"], str(path))
    assert len(sw["entries"]) == 1  # only the task x pooling of this run
    e = sw["entries"][0]
    assert (e["task"], e["pooling"], e["pca"]["stop_dim"], e["classic"]["stop_dim"]) == (
        "tiny-sts", "cls", 16, 32)
    assert e["practical_min_dim"] == int(np.ceil(8.33 * np.log(e["n_vectors"])))
    rec = {**record, "sweep": sw}
    lines = conclusions(rec)
    assert lines[0].startswith("Does whitening reduce anisotropy and hubness here?")
    assert any(line.startswith("CSLS re-ranking") for line in lines)
    assert lines[-1].startswith("JL estimate vs the sweep: 8.33 ln N = ")
    assert "beta = gamma = 0 (PCA truncation)" in lines[-1]
    assert "conclusions" not in record  # numbers only: the report writes the sentences
    md = diagnose_markdown(rec)
    assert "".join(f"- {line}\n" for line in lines) in md
    assert md.startswith("# embedkit diagnose: ") and "embedkit diagnose x" in md
    for heading in ("## Measured answers", "## tiny-sts (", "## Retrieval: plain cosine vs CSLS",
                    "## Johnson-Lindenstrauss", "## JL estimate vs the whitening sweep",
                    "## Data"):
        assert heading in md
    assert "8: 30.00 / 16: 33.50 / 32: 34.00" in md


def test_load_sweep_errors(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_sweep(tmp_path / "missing.json")
    assert e.value.param == "sweep"
    bad = tmp_path / "bad.json"
    bad.write_text("{", encoding="utf-8")
    with pytest.raises(ConfigError, match="not a JSON record"):
        load_sweep(bad)
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"kind": "bench", "results": {}}), encoding="utf-8")
    with pytest.raises(ConfigError, match="not a sweep record"):
        load_sweep(bench)
