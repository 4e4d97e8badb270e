"""benchmarks/report_compression.py (and its _frontier.py): the Pareto front, bytes per vector of every method,
selection on valid, the PQ step and the searches, and the whole report on a tiny model."""

from __future__ import annotations

import json

import _frontier as fr
import numpy as np
import pytest
import report_compression as rc

from embedkit.errors import ConfigError
from embedkit.postprocess import ProductQuantizer, bytes_per_vector, parse_post


def _row(label, family, nbytes, valid, test):
    return {"label": label, "family": family, "bytes": nbytes, "method": {"rescore": 0},
            "valid": {"m": valid}, "test": {"m": test}}


def test_pareto_front_of_a_hand_example():
    """Fewer bytes and no less quality dominates; equal points keep the first; the front is
    in increasing bytes."""
    pts = [(2048, .80), (512, .79), (64, .60), (64, .70), (128, .65), (256, .79), (32, .50),
           (1024, .79)]
    assert fr.pareto_front(pts) == [6, 3, 5, 0]
    assert [pts[i] for i in fr.pareto_front(pts)] == [(32, .5), (64, .7), (256, .79), (2048, .8)]
    assert fr.pareto_front([]) == []


@pytest.mark.parametrize(("linear", "quant", "expected"), [
    ("", "", 2048), ("pca:k=128", "", 512), ("truncate:k=64", "", 256), ("", "int8", 512),
    ("pca:k=128", "int8", 128), ("whiten:beta=1,gamma=1,k=256", "int8", 256),
    ("", "binary", 64), ("whiten:beta=0,gamma=0,k=256", "binary", 32),
    ("rp:k=64,seed=0", "", 256)])
def test_bytes_per_vector_of_each_method_agree_with_the_library(linear, quant, expected):
    """The driver's bytes (retrieval rows) equal the fitted chain's bytes_per_vector (what
    bench records for the STS rows) on 512-dimensional vectors."""
    X = np.random.default_rng(0).normal(size=(600, 512))
    m = rc.Method("x", linear, quant)
    k = parse_post(linear).fit(X).transform(X[:1]).shape[1] if linear else 512
    assert rc.method_bytes(m, k) == expected
    assert bytes_per_vector(parse_post(m.chain or "norm").fit(X), 512) == expected


@pytest.mark.parametrize("chain", ["whiten:beta=0,gamma=0.5,k=8", "whiten:beta=1,gamma=1,k=all",
                                   "pca:k=8", "rp:k=8,seed=0", "truncate:k=8"])
@pytest.mark.parametrize("quant", ["", "int8", "binary"])
def test_fit_method_is_the_chain_fitted_once_per_beta(chain, quant):
    """The whitening / PCA maps derived from one eigen-decomposition per beta transform as the
    spec language's own fitted chain does (so the grid is the chains it names)."""
    X = np.random.default_rng(4).normal(size=(200, 16)) * np.linspace(0.5, 3, 16)
    m = rc.Method("x", chain, quant)
    fams: dict = {}
    got = rc.fit_method(m, X, fams)
    want = parse_post(m.chain).fit(X)
    a, b = got.transform(X[:50]), want.transform(X[:50])  # float32 maps vs the float64 chain
    if quant:
        assert (a == b).mean() > 0.98 and np.abs(a.astype(int) - b.astype(int)).max() <= (
            1 if quant == "int8" else 255)
    else:
        assert np.allclose(a, b, rtol=1e-4, atol=1e-4)
    assert len(fams) == (1 if chain.startswith(("whiten", "pca")) else 0)
    assert rc.fit_method(rc.Method("float32"), X, fams) is None


def test_pq_bytes_and_step():
    """pq:m=M is M bytes (8 bits per code), as faiss's code size; the step decodes close to the
    input; too few fit vectors is one ConfigError naming the fix."""
    X = np.random.default_rng(1).normal(size=(400, 16)).astype("float32")
    pipe = parse_post("pq:m=4,nbits=4").fit(X)
    assert bytes_per_vector(pipe, 16) == 2 == rc.method_bytes(rc.Method("pq", quant="pq:m=4,nbits=4"), 16)
    assert rc.method_bytes(rc.Method("pq", quant="pq:m=64"), 512) == 64
    codes = pipe.transform(X)
    assert codes.dtype == np.uint8 and codes.shape == (400, 2)
    err = np.mean((pipe.steps[-1][1].decode(codes) - X) ** 2)
    assert err < 0.8 * np.mean(X ** 2)
    with pytest.raises(ConfigError, match="256 centroids per sub-vector on 100 fit vectors"):
        ProductQuantizer(m=4).fit(X[:100])


def test_the_grid_names_every_family_and_sizes():
    grid = rc.methods(512)
    fams = {m.family for m in grid}
    assert {"float32", "whiten", "pca", "rp", "truncate", "int8", "binary", "pq",
            "whiten x int8", "whiten x binary", "pca x int8", "truncate x binary"} <= fams
    sizes = {rc.method_bytes(m, 512 if "k=" not in m.linear or "k=all" in m.linear else
                             int(m.linear.split("k=")[1].split(",")[0])) for m in grid}
    assert {64, 128, 256} <= sizes


def test_selection_is_made_on_valid_even_when_test_disagrees():
    """Per (family, bytes) the valid-best setting is chosen and its (worse) test reported; the
    best within a budget is chosen the same way, rescored rows left out."""
    rows = [_row("w-a", "whiten", 64, .90, .50), _row("w-b", "whiten", 64, .80, .95),
            _row("p", "pca", 64, .85, .99), _row("big", "whiten", 512, .99, .99)]
    chosen = fr.choose(rows, "m")
    assert [(r["label"], r["test"]["m"]) for r in chosen] == [("p", .99), ("w-a", .5),
                                                              ("big", .99)]
    assert fr.best_within(rows, 64, "m")["label"] == "w-a"
    assert fr.best_within(rows, 32, "m") is None
    resc = {**_row("r", "binary + rescore 4x", 8, .95, .95), "method": {"rescore": 4}}
    assert fr.best_within([*rows, resc], 64, "m",
                          skip=lambda r: bool(r["method"]["rescore"]))["label"] == "w-a"


def test_headline_is_float32_int8_binary_rescore_and_budgets():
    rows = [_row("float32", "float32", 2048, .9, .9), _row("int8", "int8", 512, .89, .88),
            _row("binary", "binary", 64, .7, .72), _row("pca:k=16", "pca", 64, .75, .70),
            _row("pca:k=32", "pca", 128, .80, .82),
            {**_row("binary + rescore 4x", "binary + rescore 4x", 64, .95, .91),
             "method": {"rescore": 4}}]
    for r in rows:
        r["test"]["recall@10"] = r["test"]["m"]
        r["valid"]["recall@10"] = r["valid"]["m"]
    rec = {"retrieval": rows, "settings": {"budgets": [64, 128, 256]}}
    got = [(name, label) for name, label, _, _ in fr.headline(rec)]
    assert got == [("float32", "float32"), ("int8", "int8"), ("binary", "binary"),
                   ("binary + rescore 4x", "binary + rescore 4x"),
                   ("best at <= 64 bytes", "pca:k=16"), ("best at <= 128 bytes", "pca:k=32"),
                   ("best at <= 256 bytes", "pca:k=32")]


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_binary_rescore_and_sq8_agree_with_numpy():
    """Binary + 4x rescoring and SQ8 return the ids of the same search done by brute force in
    numpy (Hamming candidates, then exact cosine; cosine of the SQ8-decoded vectors)."""
    import faiss

    rng = np.random.default_rng(3)
    corpus = _unit(rng.normal(size=(300, 64)).astype("float32"))
    queries = _unit(rng.normal(size=(20, 64)).astype("float32"))
    _, ids = rc.search(rc.Method("b", quant="binary", rescore=4), corpus, queries, 5)
    neg, cand = rc.search(rc.Method("b", quant="binary"), corpus, queries, 20)
    ham = (queries[:, None, :] > 0) != (corpus[None, :, :] > 0)
    assert np.array_equal(-neg, np.take_along_axis(ham.sum(-1), cand, 1))  # Hamming top-20
    assert np.array_equal(np.sort(-neg, axis=1), np.sort(ham.sum(-1), axis=1)[:, :20])
    exact = np.einsum("qd,qcd->qc", queries, corpus[cand])
    want = np.take_along_axis(cand, np.argsort(-exact, axis=1, kind="stable")[:, :5], 1)
    assert np.array_equal(ids, want)
    _, sq = rc.search(rc.Method("i", quant="int8"), corpus, queries, 5)
    index = faiss.index_factory(64, "SQ8", faiss.METRIC_INNER_PRODUCT)
    index.train(corpus)
    dec = index.sa_decode(index.sa_encode(corpus))
    want = np.argsort(-(queries @ dec.T), axis=1, kind="stable")[:, :5]
    assert (sq == want).mean() > 0.98


@pytest.mark.slow
def test_the_report_on_a_tiny_model(wt_model_dir, wt_binary_spec_file, tmp_path, capsys):
    """The whole driver on a tiny model and task: every family measured on valid and test, the
    headline table, the plot, and --from-record giving the same Markdown."""
    out = tmp_path / "compression.md"
    argv = ["--model", str(wt_model_dir), "--tasks", str(wt_binary_spec_file),
            "--retrieval-task", str(wt_binary_spec_file), "--runs-dir", str(tmp_path / "runs"),
            "--static-dim", "8", "--speed-sentences", "10", "--pq-m", "8", "--pq-nbits", "2",
            "--plots", str(tmp_path / "plots"), "--out", str(out)]
    assert rc.main(argv) == 0
    md = out.read_text(encoding="utf-8")
    rec = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert md.startswith("# Compression frontier")
    assert "python benchmarks/report_compression.py --model" in md
    assert (tmp_path / "plots" / "frontier.png").stat().st_size > 10_000
    fams = {r["family"] for r in rec["sts"]}
    assert {"float32", "whiten", "int8", "binary", "pq", "whiten x binary"} <= fams
    assert {"binary + rescore 4x"} <= {r["family"] for r in rec["retrieval"]}
    assert all(0 <= r["test"]["recall@10"] <= 1 for r in rec["retrieval"])
    assert {r["bytes"] for r in rec["sts"]} >= {128, 32, 4, 2}
    for name in ("| float32 | `float32` | 128 |", "| int8 | `int8` | 32 |",
                 "| binary | `binary` | 4 |", "| binary + rescore 4x |", "| best at <= 64 bytes"):
        assert name in md
    assert rec["static"]["sentences_per_second"] > 0
    again = tmp_path / "again.md"
    assert rc.main(["--from-record", str(out.with_suffix(".json")), "--out", str(again),
                    "--plots", str(tmp_path / "plots2")]) == 0
    assert again.read_text(encoding="utf-8") == md
