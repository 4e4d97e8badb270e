"""``run_sweep`` and ``sweep_vectors``: one eigen-decomposition per beta, honest selection, the
classic setting, and scores equal to bench rows of the chosen setting."""

from __future__ import annotations

import numpy as np
import pytest

from embedkit.errors import ConfigError
from embedkit.evaluation import pair_scores
from embedkit.postprocess import RunningMoments
from embedkit.postprocess.spec import PostOptions
from embedkit.reports.sweep import format_sweep_table, headline_table, sweep_markdown
from embedkit.runs.sweep import SweepOptions, run_sweep, sweep_vectors

pytestmark = pytest.mark.filterwarnings("ignore::embedkit.postprocess.RankDeficientWarning")


def test_one_eigendecomposition_per_beta(wt_data, monkeypatch):
    fit, pairs = wt_data
    import embedkit.postprocess.family as family_mod

    calls = []
    real = family_mod.sigma_eigen
    monkeypatch.setattr(family_mod, "sigma_eigen", lambda *a: calls.append(a[1]) or real(*a))
    res = sweep_vectors(RunningMoments.of(fit), pairs,
                        SweepOptions(beta=[0.0, 0.5, 1.0], gamma=[0, 0.5, 1], k=[2, 6, "all"]))
    assert calls == [0.0, 0.5, 1.0]
    assert len(res["settings"]) == 27


def test_selection_is_the_max_on_the_select_split(wt_data):
    fit, pairs = wt_data
    res = sweep_vectors(RunningMoments.of(fit), pairs,
                        SweepOptions(beta=[0, 1], gamma=[0, 0.5, 1], k=[2, 4, 8, "all", 64]))
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
    res2 = sweep_vectors(RunningMoments.of(fit), pairs, SweepOptions(beta=[0], gamma=[0], k=[4]))
    assert res2["classic"]["report"] == pytest.approx(classic["report"], abs=1e-12)
    with pytest.raises(ConfigError, match="every k value is larger than the dimension d=12") as e:
        sweep_vectors(RunningMoments.of(fit), pairs, SweepOptions(k=[64]))
    assert e.value.param == "k"


def test_options_are_validated_typed_values():
    o = SweepOptions(beta=[1, 0, 1], k=[8, "all", 8], select_on="dev")
    assert o.beta == (1.0, 0.0) and o.k == (8, "all") and o.select_on == "valid"
    assert o.n_settings == 2 * 5 * 2 and o.honest
    assert not SweepOptions(select_on="test").honest
    for kw, param in [({"k": [0]}, "k"), ({"k": ["64"]}, "k"), ({"beta": [float("nan")]}, "beta"),
                      ({"gamma": []}, "gamma")]:
        with pytest.raises(ConfigError) as e:
            SweepOptions(**kw)
        assert e.value.param == param


def test_sweep_api_scores_equal_bench_rows(wt_encoder, wt_spec_file):
    from embedkit.runs.bench import run_bench

    rec = run_sweep(wt_encoder, ["last-avg"], [str(wt_spec_file)],
                    SweepOptions(beta=[1.0], gamma=[0.5], k=[12]))
    best = rec["results"]["wt-sts"]["last-avg"]["best"]
    bench = run_bench(wt_encoder, ["last-avg"], [str(wt_spec_file)], ["valid", "test"],
                      post=[best["post"]])
    row = bench["results"][f"last-avg + {best['post']}"]["wt-sts"]
    assert best["select"] == pytest.approx(row["valid"]["spearman"], abs=1e-6)
    assert best["report"] == pytest.approx(row["test"]["spearman"], abs=1e-6)
    s = rec["settings"]
    assert s["protocol"] == "whitening" and s["max_length"] == {"wt-sts": 64}
    assert rec["kind"] == "sweep" and rec["model"]["identity"] == wt_encoder.identity
    assert "wt-sts" in format_sweep_table(rec) and "| last-avg | raw |" in headline_table(rec)
    assert sweep_markdown(rec).startswith("# embedkit sweep: ")


def test_sweep_errors_name_the_parameter(wt_encoder, wt_spec_file):
    with pytest.raises(ConfigError, match="has no train split") as e:
        run_sweep(wt_encoder, None, [str(wt_spec_file)], SweepOptions(select_on="train"))
    assert e.value.param == "select_on"
    with pytest.raises(ConfigError, match="neither task, train, valid, test nor a file") as e:
        run_sweep(wt_encoder, None, [str(wt_spec_file)], SweepOptions(post=PostOptions(fit_on="nope.txt")))
    assert e.value.param == "fit_on"


@pytest.mark.reliability("9.10", "sweep: a grid k above the distinct fit vectors is refused")
def test_sweep_refuses_k_above_the_distinct_fit_vectors(wt_data):
    fit, pairs = wt_data
    few = np.repeat(fit[:5], 40, axis=0)  # 200 rows, 5 distinct vectors
    with pytest.raises(ConfigError, match=r"up to k=12 directions but the fit vectors hold only "
                                          r"5 distinct ones \(of 200\).*k values <= 5") as e:
        sweep_vectors(RunningMoments.of(few), pairs, SweepOptions(k=[2, "all"]))
    assert e.value.param == "k"
    res = sweep_vectors(RunningMoments.of(few), pairs, SweepOptions(beta=[0], gamma=[0], k=[4]))
    assert len(res["settings"]) == 1  # within the fit's rank: scored
    assert np.isnan(res["classic"]["report"]) and "not scored" in res["classic"]["note"]


def test_sweep_figure_says_what_it_shows(wt_data):
    """The plot's artists: both splits side by side, colour = gamma and line style = beta in
    the legends, the raw line apart, the chosen setting starred, k=all labelled."""
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from embedkit.reports.sweep_plots import RAW_STYLE, sweep_figure

    fit, pairs = wt_data
    r = sweep_vectors(RunningMoments.of(fit), pairs,
                      SweepOptions(beta=(0.0, 1.0), gamma=(0.0, 0.5, 1.0), k=(4, "all")))
    rec = {"settings": {"select_on": "valid", "report_on": "test"}, "model": {"name": "toy"},
           "results": {"T": {"cls": r}}}
    fig = sweep_figure(rec, "T", "cls")
    try:
        select_ax, report_ax = fig.axes
        assert select_ax.get_title() == "selection split: valid"
        assert report_ax.get_title() == "report split: test"
        legends = {leg.get_title().get_text(): [t.get_text() for t in leg.get_texts()]
                   for leg in fig.legends}
        assert legends["colour = gamma"] == ["gamma=0", "gamma=0.5", "gamma=1"]
        assert legends["line style = beta"] == ["beta=0", "beta=1"]
        best = r["best"]
        raw_text, chosen_text = legends["baseline and choice"]
        assert raw_text.startswith("raw (no postprocessing)")
        assert f"{100 * r['raw']['report']:.2f} test" in raw_text
        assert chosen_text == (f"chosen on valid\nbeta={best['beta']:g}, gamma={best['gamma']:g},"
                               f" k={best['k']}")
        for ax, role in ((select_ax, "select"), (report_ax, "report")):
            lines = {ln.get_label(): ln for ln in ax.get_lines()}
            raw = lines["raw"]
            assert raw.get_color() == RAW_STYLE["color"] and raw.get_linewidth() == 2.5
            assert raw.get_ydata()[0] == pytest.approx(100 * r["raw"][role])
            star = lines["chosen"]
            assert star.get_marker() == "*"
            assert (star.get_xdata()[0], star.get_ydata()[0]) == pytest.approx(
                (best["k_dim"], 100 * best[role]))
            # one colour per gamma, one style per beta
            b0g0, b1g0 = lines["beta=0, gamma=0"], lines["beta=1, gamma=0"]
            assert b0g0.get_color() == b1g0.get_color()
            assert b0g0.get_linestyle() != b1g0.get_linestyle()
            assert lines["beta=0, gamma=0"].get_color() != lines["beta=0, gamma=1"].get_color()
            assert [t.get_text() for t in ax.get_xticklabels()] == ["4", "all (d=12)"]
    finally:
        plt.close(fig)


def test_sweep_classify_equals_a_direct_computation(wt_encoder, wt_binary_spec_file,
                                                   wt_spec_file):
    """``classify``: the best setting's pair classification on a binary task equals
    embedkit.evaluation.classification on that setting's vectors (thresholds from valid,
    metrics on test); the graded task gets none, nor does a sweep without ``classify``."""
    from embedkit.data import load_task
    from embedkit.data.registry import get_task
    from embedkit.evaluation.classification import calibrated_scores, pair_similarities
    from embedkit.postprocess import WhiteningFamily
    from embedkit.reports.bench import sweep_classification_rows

    opts = SweepOptions(beta=[0.0, 1.0], gamma=[0.5, 1.0], k=[8, "all"], classify=True)
    tasks = [str(wt_binary_spec_file), str(wt_spec_file)]
    rec = run_sweep(wt_encoder, ["last-avg"], tasks, opts)
    best = rec["results"]["wt-pairs"]["last-avg"]["best"]
    got = best["classification"]
    assert "classification" not in rec["results"]["wt-sts"]["last-avg"]["best"]
    assert rec["settings"]["classify"] is True

    splits = load_task(get_task(str(wt_binary_spec_file)), ["valid", "test"])
    fit = [t for s in splits.values() for t in (*s.sentences1, *s.sentences2)]
    fam = WhiteningFamily.fit(wt_encoder.encode(fit, "last-avg"), best["beta"])
    m = fam.map(best["gamma"], best["k_dim"])

    def cosines(split):
        s = splits[split]
        e1, e2 = (m.apply(wt_encoder.encode(x, "last-avg")) for x in (s.sentences1, s.sentences2))
        return pair_similarities(e1, e2)["cosine"], s.labels

    want = calibrated_scores(cosines("valid"), cosines("test"))
    c = got["cosine"]
    for key in ("accuracy", "f1", "precision", "recall", "ap"):
        assert c[key] == pytest.approx(want[key], abs=1e-9), key
        assert c["oracle"][key] == pytest.approx(want["oracle"][key], abs=1e-9), key
    for key in ("accuracy_threshold", "f1_threshold"):
        assert c[key] == pytest.approx(want[key], abs=1e-5), key
    assert 0 < c["accuracy"] <= 1 and 0 < c["ap"] <= 1
    assert got["selection"]["split"] == "valid" and got["selected_on"] == "valid (20 pairs)"

    header, rows = sweep_classification_rows(rec)
    assert header[:4] == ["task", "pooling", "setting", "acc"]
    assert rows == [["wt-pairs", "last-avg", best["post"], f"{100 * c['accuracy']:.2f}",
                     f"{c['accuracy_threshold']:.4f}", f"{100 * c['f1']:.2f}",
                     f"{100 * c['precision']:.2f}", f"{100 * c['recall']:.2f}",
                     f"{c['f1_threshold']:.4f}", f"{100 * c['ap']:.2f}",
                     f"{100 * c['oracle']['accuracy']:.2f}", "valid (20 pairs)"]]
    assert "## Pair classification x 100" in sweep_markdown(rec)

    plain = run_sweep(wt_encoder, ["last-avg"], [str(wt_binary_spec_file)],
                      SweepOptions(beta=[0.0, 1.0], gamma=[0.5, 1.0], k=[8, "all"]))
    assert "classification" not in plain["results"]["wt-pairs"]["last-avg"]["best"]
    assert sweep_classification_rows(plain)[1] == []
    assert "Pair classification" not in sweep_markdown(plain)
