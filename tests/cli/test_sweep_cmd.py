"""``embedkit sweep`` on the command line: the JSON record, table, Markdown and plots, the cache
on a second run, one-line errors, and the grid options."""

from __future__ import annotations

import json
import math
import shlex

import pytest

from embedkit.cli.main import main
from embedkit.cli.parsing import parse_grid
from embedkit.data import load_task
from embedkit.errors import ConfigError
from embedkit.evaluation import pair_scores

pytestmark = pytest.mark.filterwarnings("ignore::embedkit.postprocess.RankDeficientWarning")


def test_parse_grid():
    assert parse_grid("0,0.5,1,0.5", "beta") == [0.0, 0.5, 1.0]
    assert parse_grid("64, all,128", "k") == [64, "all", 128]
    for text, what in [("0,x", "gamma"), ("0", "k"), ("", "beta"), ("inf", "beta")]:
        with pytest.raises(ConfigError, match=f"--{what}"):
            parse_grid(text, what)


def test_sweep_cli_end_to_end(wt_model_dir, wt_spec_file, wt_encoder, tmp_path, capsys):
    out, plots, md = tmp_path / "sweep.json", tmp_path / "plots", tmp_path / "report.md"
    argv = ["sweep", "--model", str(wt_model_dir), "--tasks", str(wt_spec_file),
            "--pooling", "cls,mean", "--beta", "0,1", "--gamma", "0,0.5,1",
            "--k", "8,16,all,64", "--output", str(out), "--plots", str(plots),
            "--markdown", str(md)]
    assert main(argv) == 0
    stdout = capsys.readouterr().out.splitlines()
    assert stdout[1].split()[:4] == ["task", "pooling", "raw/test", "best"]
    assert [line.split()[:2] for line in stdout[2:4]] == [["wt-sts", "cls"],
                                                         ["wt-sts", "last-avg"]]
    rec = json.loads(out.read_text(encoding="utf-8"))
    assert rec["command"] == shlex.join(["embedkit", *argv])
    assert rec["model"]["identity"] == wt_encoder.identity
    s = rec["settings"]
    assert (s["betas"], s["gammas"], s["ks"]) == ([0.0, 1.0], [0.0, 0.5, 1.0],
                                                  [8, 16, "all", 64])
    assert (s["select_on"], s["report_on"], s["fit_on"], s["honest"]) == ("valid", "test",
                                                                          "task", True)
    t = rec["timings"]
    assert t["n_settings"] == 24 and t["n_scored"] == 2 * 18 and t["seconds_sweep"] >= 0
    assert t["encoded"] == 80  # every sentence once, for both poolings and all settings
    assert {"embedkit", "torch", "numpy", "scikit-learn"} <= set(rec["versions"])
    d = rec["data"]["wt-sts"]
    assert (d["valid"]["n_pairs"], d["test"]["n_pairs"]) == (20, 20)
    assert d["fit"]["on"] == "task:wt-sts:valid+test" and d["fit"]["n_sentences"] == 80
    data = load_task(str(wt_spec_file), ["valid", "test"])
    for pooling in ("cls", "last-avg"):
        r = rec["results"]["wt-sts"][pooling]
        assert r["skipped_k"] == [64] and r["d"] == 32 and r["n_fit"] == 80
        assert len(r["settings"]) == 18
        assert r["best"]["select"] == max(x["select"] for x in r["settings"]
                                          if not math.isnan(x["select"]))
        test = data["test"]
        raw = pair_scores(wt_encoder.encode(test.sentences1, pooling),
                          wt_encoder.encode(test.sentences2, pooling), test.labels)
        assert r["raw"]["report"] == pytest.approx(raw["spearman"], abs=1e-6)
        png = plots / f"wt-sts-{pooling}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert str(png) in rec["plots"]
    text = md.read_text(encoding="utf-8")
    assert text.startswith(f"# embedkit sweep: {rec['model']['name']} [torch float32]\n")
    assert "Regenerate with:" in text and shlex.join(["embedkit", *argv]) in text
    assert "- Versions: embedkit" in text and "![wt-sts cls](plots/wt-sts-cls.png)" in text

    # a second run comes from the cache: nothing is encoded again
    assert main([*argv[:-6], "--output", str(tmp_path / "again.json")]) == 0
    again = json.loads((tmp_path / "again.json").read_text(encoding="utf-8"))
    assert again["timings"]["encoded"] == 0 and again["timings"]["cache_hits"] == 80
    assert again["results"] == rec["results"]


@pytest.mark.parametrize("extra,match", [
    (["--beta", "0,x"], "--beta '0,x'"),
    (["--k", "0"], "--k '0'"),
    (["--select-on", "train"], "task wt-sts has no train split"),
    (["--fit-on", "nope.txt"], "neither task, train, valid, test nor a file"),
    (["--k", "64,128"], "--k: every k value is larger than the dimension d=32"),
    (["--quantize-vectors", "pca"], "--quantize-vectors"),
])
def test_sweep_errors_are_one_line(wt_model_dir, wt_spec_file, capsys, extra, match):
    argv = ["sweep", "--model", str(wt_model_dir), "--tasks", str(wt_spec_file), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("embedkit: error: ") and match in err[0]


def test_sweep_cli_classify_prints_the_table(wt_model_dir, wt_binary_spec_file, wt_spec_file,
                                             tmp_path, capsys):
    """``--classify``: the binary task's best setting gets a pair-classification table (and
    its record entry, and the Markdown section); the graded task gets none."""
    out, md = tmp_path / "sweep.json", tmp_path / "report.md"
    argv = ["sweep", "--model", str(wt_model_dir), "--tasks",
            f"{wt_binary_spec_file},{wt_spec_file}", "--pooling", "mean", "--beta", "0,1",
            "--gamma", "0.5,1", "--k", "8,all", "--classify", "--output", str(out),
            "--markdown", str(md)]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    rec = json.loads(out.read_text(encoding="utf-8"))
    best = rec["results"]["wt-pairs"]["last-avg"]["best"]
    c = best["classification"]["cosine"]
    assert "classification" not in rec["results"]["wt-sts"]["last-avg"]["best"]
    lines = stdout.splitlines()
    i = next(j for j, line in enumerate(lines) if line.startswith("pair classification x 100"))
    assert "thresholds chosen on valid, reported on test" in lines[i]
    assert lines[i + 1].split()[:5] == ["task", "pooling", "setting", "acc", "acc"]
    assert lines[i + 2].split()[:5] == ["wt-pairs", "last-avg", best["post"],
                                        f"{100 * c['accuracy']:.2f}",
                                        f"{c['accuracy_threshold']:.4f}"]
    assert not any(line.startswith("wt-sts") for line in lines[i:i + 4])
    assert "## Pair classification x 100" in md.read_text(encoding="utf-8")
    assert main(argv[:-5] + ["--output", str(out)]) == 0  # without --classify: no table
    assert "pair classification" not in capsys.readouterr().out


def test_sweep_cli_quantize_scores_each_setting_on_its_codes(wt_model_dir, wt_spec_file,
                                                             tmp_path, capsys):
    out = tmp_path / "q.json"
    argv = ["sweep", "--model", str(wt_model_dir), "--tasks", str(wt_spec_file), "--beta", "1",
            "--gamma", "1", "--k", "8,all", "--quantize-vectors", "binary", "--output", str(out)]
    assert main(argv) == 0
    rec = json.loads(out.read_text(encoding="utf-8"))
    assert rec["settings"]["quantize"] == "binary"
    plain = tmp_path / "p.json"
    assert main([*argv[:-4], "--output", str(plain)]) == 0
    assert json.loads(plain.read_text(encoding="utf-8"))["settings"]["quantize"] is None
    assert rec["results"] != json.loads(plain.read_text(encoding="utf-8"))["results"]
