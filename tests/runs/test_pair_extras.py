"""bench --classify / --ci: pair classification with thresholds chosen on valid, intervals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedkit.data import get_task, load_split
from embedkit.evaluation.classification import best_accuracy, best_f1, threshold_scores
from embedkit.evaluation.metrics import cosine_scores
from embedkit.reports.bench import classification_rows, format_table, markdown_report
from embedkit.runs.bench import run_bench
from embedkit.runs.pair_extras import PairExtras
from tests.conftest import source_lines


@pytest.fixture(scope="module")
def binary_spec(tmp_path_factory):
    """The tiny STS pairs made binary (label >= 3 -> 1): valid = first 20, test = last 20."""
    d = tmp_path_factory.mktemp("binary")
    rows = [ln.split("\t") for ln in source_lines()]
    lines = [f"{a}\t{b}\t{int(float(y) >= 3)}\n" for a, b, y in rows]
    (d / "valid.tsv").write_text("".join(lines[:20]), encoding="utf-8")
    (d / "test.tsv").write_text("".join(lines[20:]), encoding="utf-8")
    spec = d / "bin.json"
    spec.write_text(json.dumps({"name": "bin", "files": {"valid": "valid.tsv",
                                                         "test": "test.tsv"},
                                "label_range": [0, 1], "label_type": "int"}), encoding="utf-8")
    return spec


def test_thresholds_chosen_on_valid_reported_on_test(tiny_encoder, binary_spec):
    rec = run_bench(tiny_encoder, ["last-avg"], [str(binary_spec)], post=["whiten:k=8"],
                    extras=PairExtras(classify=True, ci=200, similarities=("cosine", "dot")))
    spec = get_task(str(binary_spec))
    valid, test = load_split(spec, "valid"), load_split(spec, "test")

    def cos(s):
        e = lambda t: tiny_encoder.encode(t, "last-avg", max_length=64)  # noqa: E731
        return cosine_scores(e(s.sentences1), e(s.sentences2))

    res = rec["results"]["last-avg"]["bin"]["test"]
    c = res["classification"]["cosine"]
    t = best_accuracy(cos(valid), valid.labels)[1]
    assert c["accuracy_threshold"] == pytest.approx(t)
    assert c["accuracy"] == pytest.approx(threshold_scores(cos(test), test.labels, t)["accuracy"])
    assert c["f1_threshold"] == pytest.approx(best_f1(cos(valid), valid.labels)[3])
    assert "dot" in res["classification"] and res["classification"]["selected_on"].startswith(
        "valid (20 pairs")
    ci = res["ci"]["spearman"]
    assert ci["low"] <= res["spearman"] <= ci["high"] and ci["n_resamples"] == 200
    assert set(res["ci"]) == {"spearman", "accuracy", "ap"}
    assert rec["settings"]["extras"]["ci"] == 200
    assert res["classification"]["selection"]["n_pairs"] == 20 and "selection" not in rec["data"][
        "bin"]
    whitened = rec["results"]["last-avg + whiten:beta=1,gamma=1,k=8"]["bin"]["test"]["classification"]["cosine"]
    assert whitened["accuracy_threshold"] != pytest.approx(t)  # whitening moves the scale
    assert "±" in format_table(rec).splitlines()[1]
    _, rows = classification_rows(rec)
    assert [r[1] for r in rows] == ["bin/test", "bin/test"]
    assert "## Pair classification" in markdown_report(rec)


def test_no_extras_leaves_the_record_as_it_was(tiny_encoder, binary_spec):
    rec = run_bench(tiny_encoder, ["last-avg"], [str(binary_spec)])
    res = rec["results"]["last-avg"]["bin"]["test"]
    assert "classification" not in res and "ci" not in res and "extras" not in rec["settings"]
    assert np.isfinite(res["spearman"])


def test_whiten_writes_the_calibrated_threshold(tiny_model_dir, binary_spec, tmp_path):
    from embedkit.encoders import Encoder
    from embedkit.evaluation.classification import pair_similarities
    from embedkit.postprocess.affine import AffineMap
    from embedkit.runs.whiten import WhitenSettings, run_whiten

    enc = Encoder(str(tiny_model_dir), cache=None)
    out = tmp_path / "st"
    res = run_whiten(enc, str(binary_spec), out, WhitenSettings(k=8), pooling="cls",
                     format="sentence-transformers", calibrate=str(binary_spec))
    t = json.loads((out / "embedkit_threshold.json").read_text(encoding="utf-8"))
    assert t == res.metadata["threshold"] and (t["selected_on"], t["evaluated_on"]) == (
        "valid", "test")
    spec = get_task(str(binary_spec))
    amap = AffineMap(res.whitening.kernel_, res.whitening.bias_, False)

    def cos(split):
        s = load_split(spec, split)
        e = lambda x: amap.apply(enc.encode(x, "cls", max_length=64))  # noqa: E731
        return pair_similarities(e(s.sentences1), e(s.sentences2))["cosine"], s.labels

    assert t["threshold"] == pytest.approx(best_accuracy(*cos("valid"))[1])
    assert t["accuracy"] == pytest.approx(threshold_scores(*cos("test"), t["threshold"])[
        "accuracy"])
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "## Threshold" in card and f"**{t['threshold']:.4f}**" in card


def test_bench_cli_classify_and_plots(tiny_model_dir, binary_spec, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from embedkit.cli.main import main

    assert main(["bench", "--model", str(tiny_model_dir), "--tasks", str(binary_spec),
                 "--no-cache", "--post", "whiten:k=8", "--classify", "--predictions",
                 str(tmp_path / "p"), "--predictions-format", "jsonl", "--plots",
                 str(tmp_path / "plots")]) == 0
    out = capsys.readouterr().out
    assert "pair classification x 100" in out and "bin/test" in out
    png = tmp_path / "plots" / "bin_test.png"
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"
    assert main(["bench", "--model", str(tiny_model_dir), "--tasks", str(binary_spec),
                 "--plots", str(tmp_path / "x")]) == 2
    assert "--plots draws from the predictions files" in capsys.readouterr().err
