"""``embedkit sweep``: kernels derived from one eigen-decomposition per beta equal fresh fits,
the fast scoring equals scoring each transformed setting, selection is honest, outputs."""

from __future__ import annotations

import json
import math
import shlex

import numpy as np
import pytest

from embedkit.cli.main import main
from embedkit.data import load_task
from embedkit.errors import ConfigError
from embedkit.evaluation import pair_scores
from embedkit.postprocess import Whitening
from embedkit.postprocess.sweep import (
    WhiteningFamily,
    parse_grid,
    run_sweep,
    score_grid,
    sweep_vectors,
)

pytestmark = pytest.mark.filterwarnings("ignore::embedkit.postprocess.RankDeficientWarning")


@pytest.fixture(scope="module")
def wt_data():
    """Anisotropic vectors for fitting, and two labelled pair splits."""
    rng = np.random.default_rng(0)
    A = rng.normal(size=(12, 12)) * np.linspace(3, 0.1, 12)
    mean = rng.normal(size=12) * 2

    def vecs(n):
        return rng.normal(size=(n, 12)) @ A + mean

    fit = vecs(300)
    pairs = {}
    for name in ("valid", "test"):
        x1 = vecs(60)
        x2 = x1 + rng.normal(size=(60, 12)) * rng.uniform(0.1, 3, size=(60, 1))
        labels = -np.linalg.norm(x1 - x2, axis=1).round(0)  # with ties
        pairs[name] = (x1, x2, labels)
    return fit, pairs


@pytest.mark.parametrize("beta,gamma,k", [(1, 1, "all"), (0, 0.5, 5), (0.5, 0.25, 12),
                                          (1, 0, 3), (0.3, 2.0, 7)])
def test_family_kernels_equal_fresh_whitening(wt_data, beta, gamma, k):
    fit, _ = wt_data
    fam = WhiteningFamily.from_stats(Whitening().partial_fit(fit[:100]).partial_fit(fit[100:]),
                                     beta)
    K, b = fam.kernel(gamma, k)
    w = Whitening(beta=beta, gamma=gamma, n_components=None if k == "all" else k).fit(fit)
    np.testing.assert_allclose(K, w.kernel_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b, w.bias_, rtol=1e-12, atol=1e-12)


def test_one_eigendecomposition_per_beta(wt_data, monkeypatch):
    fit, pairs = wt_data
    import embedkit.postprocess.sweep as sweep_mod

    calls = []
    real = sweep_mod.sigma_eigen
    monkeypatch.setattr(sweep_mod, "sigma_eigen", lambda *a: calls.append(a[3]) or real(*a))
    res = sweep_vectors(Whitening().partial_fit(fit), pairs, betas=[0.0, 0.5, 1.0],
                        gammas=[0, 0.5, 1], ks=[2, 6, "all"], select_on="valid",
                        report_on="test")
    assert calls == [0.0, 0.5, 1.0]
    assert len(res["settings"]) == 27


def test_fast_scores_equal_transformed_scores(wt_data):
    fit, pairs = wt_data
    gammas, ks = [0.0, 0.5, 1.0], [3, 8, 12]
    for beta in (0.0, 1.0):
        scores = score_grid(WhiteningFamily.fit(fit, beta), gammas, ks, pairs)
        for gi, gamma in enumerate(gammas):
            for ki, k in enumerate(ks):
                w = Whitening(beta=beta, gamma=gamma, n_components=k).fit(fit)
                for name, (x1, x2, y) in pairs.items():
                    ref = pair_scores(w.transform(x1), w.transform(x2), y)["spearman"]
                    assert scores[name][gi, ki] == pytest.approx(ref, abs=1e-9)


def test_selection_is_the_max_on_the_select_split(wt_data):
    fit, pairs = wt_data
    res = sweep_vectors(Whitening().partial_fit(fit), pairs, betas=[0, 1], gammas=[0, 0.5, 1],
                        ks=[2, 4, 8, "all", 64], select_on="valid", report_on="test")
    s = res["settings"]
    assert res["skipped_k"] == [64] and len(s) == 2 * 3 * 4
    best = res["best"]
    assert best["select"] == max(x["select"] for x in s)
    assert s[best["index"]] == {k: v for k, v in best.items() if k != "index"}
    assert best["report"] == s[best["index"]]["report"]
    # the report split played no part: the argmax of report is (here) another setting
    assert max(x["report"] for x in s) >= best["report"]
    classic = next(x for x in s if (x["beta"], x["gamma"], x["k"]) == (1.0, 1.0, "all"))
    assert res["classic"] == classic
    raw = {r: pair_scores(*pairs[sp])["spearman"] for r, sp in (("select", "valid"),
                                                                ("report", "test"))}
    assert res["raw"] == pytest.approx(raw)
    # classic outside the grid is still computed
    res2 = sweep_vectors(Whitening().partial_fit(fit), pairs, betas=[0], gammas=[0], ks=[4],
                         select_on="valid", report_on="test")
    assert res2["classic"]["report"] == pytest.approx(classic["report"], abs=1e-12)


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
    assert text.startswith("# embedkit sweep: ")
    assert "Regenerate with:" in text and shlex.join(["embedkit", *argv]) in text
    assert "- Versions: embedkit" in text and "![wt-sts cls](plots/wt-sts-cls.png)" in text

    # a second run comes from the cache: nothing is encoded again
    assert main([*argv[:-6], "--output", str(tmp_path / "again.json")]) == 0
    again = json.loads((tmp_path / "again.json").read_text(encoding="utf-8"))
    assert again["timings"]["encoded"] == 0 and again["timings"]["cache_hits"] == 80
    assert again["results"] == rec["results"]


def test_sweep_api_scores_equal_bench_rows(wt_encoder, wt_spec_file):
    from embedkit.experiments.bench import run_bench

    rec = run_sweep(wt_encoder, ["last-avg"], [str(wt_spec_file)], betas=[1.0], gammas=[0.5],
                    ks=[12], cache=False)
    best = rec["results"]["wt-sts"]["last-avg"]["best"]
    bench = run_bench(wt_encoder, ["last-avg"], [str(wt_spec_file)], ["valid", "test"],
                      post=[best["post"]], cache=False)
    row = bench["results"][f"last-avg + {best['post']}"]["wt-sts"]
    assert best["select"] == pytest.approx(row["valid"]["spearman"], abs=1e-6)
    assert best["report"] == pytest.approx(row["test"]["spearman"], abs=1e-6)


@pytest.mark.parametrize("extra,match", [
    (["--beta", "0,x"], "--beta '0,x'"),
    (["--k", "0"], "--k '0'"),
    (["--select-on", "train"], "task wt-sts has no train split"),
    (["--fit-on", "nope.txt"], "neither task, train, valid, test nor a file"),
    (["--k", "64,128"], "every --k value is larger than the dimension d=32"),
])
def test_sweep_errors_are_one_line(wt_model_dir, wt_spec_file, capsys, extra, match):
    argv = ["sweep", "--model", str(wt_model_dir), "--tasks", str(wt_spec_file), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("embedkit: error: ") and match in err[0]
