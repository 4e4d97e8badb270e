"""The vector quantisers (int8, uint8, binary, ubinary): scikit-learn estimators, fitted ranges
(one sentence quantises as within a batch), saved and reloaded bit-identical, chained after any
step, and scored by the one STS path (cosine of the dequantised vectors; Hamming similarity)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import check_param_validation, parametrize_with_checks

from embedkit.data import PairSplit
from embedkit.errors import ConfigError
from embedkit.evaluation import STSEvaluator, lookup
from embedkit.evaluation.metrics import hamming_scores, similarity_scores, spearman
from embedkit.postprocess import (
    AffineMap,
    BinaryQuantizer,
    ScalarQuantizer,
    bytes_per_vector,
    describe_post,
    load_transform,
    parse_post,
    quantizer_of,
    resolve_post,
    save_quantized,
)
from embedkit.postprocess.quantize import scored_output
from embedkit.postprocess.spec import PostOptions

QUANTIZERS = [ScalarQuantizer(), ScalarQuantizer("uint8", clip=0.99), BinaryQuantizer(),
              BinaryQuantizer(unsigned=True)]


def _data(n=200, d=12, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) * np.linspace(0.5, 3.0, d) + 0.3


@parametrize_with_checks(QUANTIZERS)
def test_sklearn_check_estimator(estimator, check):
    check(estimator)


@pytest.mark.parametrize("estimator", QUANTIZERS, ids=repr)
def test_parameter_constraints_cover_every_parameter(estimator):
    check_param_validation(type(estimator).__name__, estimator)


def test_int8_codes_match_numpy_by_hand():
    X = _data()
    q = ScalarQuantizer("int8").fit(X)
    lo, hi = X.min(0), X.max(0)
    step = (hi - lo) / 255
    Y = _data(seed=1)
    expected = (np.clip(np.rint((Y - lo) / step), 0, 255) - 128).astype(np.int8)
    np.testing.assert_array_equal(q.transform(Y), expected)
    np.testing.assert_array_equal(q.low_, lo)
    # dequantised within half a step of the input inside the range
    inside = (Y >= lo) & (Y <= hi)
    err = np.abs(q.inverse_transform(q.transform(Y)) - Y)
    assert np.all(err[inside] <= step[np.nonzero(inside)[1]] / 2 + 1e-12)
    assert q.bytes_per_vector_ == 12 and q.transform(Y).dtype == np.int8


def test_uint8_clip_uses_quantiles_and_clips_outliers():
    X = _data()
    q = ScalarQuantizer("uint8", clip=0.95).fit(X)
    np.testing.assert_array_equal(q.low_, np.quantile(X, 1 - 0.95, axis=0))
    np.testing.assert_array_equal(q.high_, np.quantile(X, 0.95, axis=0))
    codes = q.transform(np.vstack([X.max(0) + 10, X.min(0) - 10]))
    assert codes.dtype == np.uint8
    assert codes[0].tolist() == [255] * 12 and codes[1].tolist() == [0] * 12


def test_constant_dimension_quantises_without_nan():
    X = np.c_[np.ones(5), np.arange(5.0)]
    q = ScalarQuantizer().fit(X)
    assert q.transform(X)[:, 0].tolist() == [-128] * 5
    np.testing.assert_array_equal(q.decode(q.transform(X))[:, 0], np.ones(5))


def test_binary_packs_sign_bits_as_sentence_transformers_does():
    X = _data(d=13) - 0.3
    bits = np.packbits(X > 0, axis=1)
    np.testing.assert_array_equal(BinaryQuantizer(unsigned=True).fit(X).transform(X), bits)
    signed = BinaryQuantizer().fit(X).transform(X)
    np.testing.assert_array_equal(signed, (bits.astype(int) - 128).astype(np.int8))
    b = BinaryQuantizer().fit(X)
    assert b.bytes_per_vector_ == 2
    np.testing.assert_array_equal(b.decode(signed), np.where(X > 0, 1.0, -1.0))


@pytest.mark.parametrize("spec", ["int8", "uint8:clip=0.99", "binary", "ubinary",
                                  "whiten:k=6,int8"])
def test_one_sentence_quantises_as_within_the_batch(spec):
    X = _data()
    p = parse_post(spec).fit(X)
    batch = p.transform(X[:50])
    for i in (0, 17, 49):
        np.testing.assert_array_equal(p.transform(X[i:i + 1])[0], batch[i])


def test_sentence_transformers_int8_depends_on_the_batch_ours_does_not():
    """sentence-transformers #2837: ranges from the batch being quantised make one sentence all
    zeros (6.x refuses it instead) and a row's codes change with the rows beside it."""
    from sentence_transformers.util.quantization import quantize_embeddings

    X = _data().astype(np.float32)
    try:
        theirs_one = quantize_embeddings(X[:1], precision="int8")
    except ValueError as exc:  # sentence-transformers >= 6: "from a single embedding"
        assert "single embedding" in str(exc)
    else:
        assert not np.any(theirs_one)  # older releases: all zeros
    theirs = [quantize_embeddings(X[:n], precision="int8")[0] for n in (2, 200)]
    assert not np.array_equal(theirs[0], theirs[1])  # the same sentence, other codes
    q = ScalarQuantizer().fit(X)
    ours = q.transform(X[:1])
    assert len(np.unique(ours)) > 3
    np.testing.assert_array_equal(ours, q.transform(X[:2])[:1])
    np.testing.assert_array_equal(ours, q.transform(X)[:1])
    # given the same calibration ranges, ours and theirs agree within one level (they truncate)
    theirs_cal = quantize_embeddings(X[:1], precision="int8", calibration_embeddings=X)
    assert np.abs(ours.astype(int) - theirs_cal.astype(int)).max() <= 1


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
@pytest.mark.parametrize("spec", ["whiten:k=6,int8", "uint8:clip=0.9", "pca:k=5,norm,ubinary"])
def test_saved_quantiser_reloads_bit_identical(tmp_path, suffix, spec):
    X = _data()
    p = parse_post(spec).fit(X)
    path = tmp_path / f"q{suffix}"
    save_quantized(path, p, {"model": "m"})
    meta = load_transform(path).metadata
    assert meta["quantize"]["kind"] == describe_post(p).rsplit(",", 1)[-1].split(":")[0]
    again = resolve_post(str(path))
    assert [n for n, _ in again.steps][-1] == meta["quantize"]["kind"]
    again.fit(X[:3])  # nothing is refitted: the ranges are the file's
    Y = _data(seed=5)
    np.testing.assert_array_equal(again.transform(Y), p.transform(Y))
    q, r = quantizer_of(p), quantizer_of(again)
    if isinstance(q, ScalarQuantizer):
        assert r.low_.tobytes() == q.low_.tobytes() and r.high_.tobytes() == q.high_.tobytes()
        assert describe_post(again).endswith(f"ranges={path}")
    # the reloaded chain stays a chain a later run reparses
    np.testing.assert_array_equal(parse_post(describe_post(again)).fit(X).transform(Y),
                                  p.transform(Y))


def test_saving_refuses_faiss_and_a_chain_without_quantiser(tmp_path):
    X = _data()
    with pytest.raises(ConfigError, match="FAISS transform cannot hold a quantiser"):
        save_quantized(tmp_path / "q.faiss", parse_post("int8").fit(X))
    with pytest.raises(ConfigError, match="does not end in a quantiser"):
        save_quantized(tmp_path / "q.npz", parse_post("pca").fit(X))


def test_ranges_of_another_kind_or_dimension_are_refused(tmp_path):
    X = _data()
    path = tmp_path / "q.safetensors"
    save_quantized(path, parse_post("int8").fit(X))
    with pytest.raises(ConfigError, match="holds a int8 quantiser, not uint8"):
        ScalarQuantizer("uint8", ranges=str(path)).fit(X)
    with pytest.raises(ConfigError, match="ranges have 12 dimensions but .* have 4"):
        ScalarQuantizer(ranges=str(path)).fit(X[:, :4])


def test_chains_parse_and_print_back():
    p = parse_post("whiten:k=256,int8")
    assert [n for n, _ in p.steps] == ["whiten", "int8"]
    assert describe_post(parse_post("uint8:clip=0.99")) == "uint8:clip=0.99"
    assert describe_post(parse_post("pca:k=8+binary")) == "pca:k=8,binary"
    assert describe_post(parse_post("ubinary")) == "ubinary"
    assert parse_post("int8").steps[0][1].get_params()["dtype"] == "int8"
    assert isinstance(clone(parse_post("ubinary").steps[0][1]), BinaryQuantizer)


@pytest.mark.parametrize("spec,message", [
    ("int8,whiten", "the quantiser 'int8' must be the last step"),
    ("binary,norm", "the quantiser 'binary' must be the last step"),
    ("int8:clip=1.5", "bad value '1.5' for int8 key 'clip'"),
    ("uint8:clip=0.2", "expected a number in [0.5, 1]"),
    ("binary:clip=0.9", "unknown key 'clip' for step 'binary'"),
    ("int4", "unknown step 'int4'"),
])
def test_bad_specs_are_one_line_config_errors(spec, message):
    with pytest.raises(ConfigError) as e:
        parse_post(spec)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_quantiser_is_no_linear_map():
    p = parse_post("whiten,int8").fit(_data())
    with pytest.raises(ConfigError, match="ScalarQuantizer is a quantiser, not a linear map"):
        AffineMap.from_pipeline(p)


def test_bytes_per_vector():
    X = _data(d=20)
    sizes = {s: bytes_per_vector(parse_post(s).fit(X), 20)
             for s in ("norm", "whiten:k=8", "whiten:k=8,int8", "uint8", "binary", "pca:k=9,ubinary")}
    assert sizes == {"norm": 80, "whiten:k=8": 32, "whiten:k=8,int8": 8, "uint8": 20,
                     "binary": 3, "pca:k=9,ubinary": 2}


def test_hamming_similarity_by_hand():
    a = np.array([[1.0, -1, 1, 1, -1], [1, 1, 1, 1, 1]])
    b = np.array([[1.0, 1, 1, -1, -1], [-1, -1, -1, -1, -1]])
    assert hamming_scores(a, b).tolist() == [0.6, 0.0]
    assert similarity_scores(a, b, "hamming").tolist() == [0.6, 0.0]


def _evaluator(X1, X2, labels):
    sents1 = [f"a{i}" for i in range(len(X1))]
    sents2 = [f"b{i}" for i in range(len(X2))]
    split = PairSplit("T", "test", "t.tsv", "0" * 64, sents1, sents2,
                      np.asarray(labels, dtype=np.float64))
    ev = STSEvaluator.from_splits({"T": {"test": split}}, [_spec()])
    return ev, lookup(sents1 + sents2, np.vstack([X1, X2]))


def _spec():
    from embedkit.data.spec import TaskSpec

    return TaskSpec(name="T", files={"test": "t.tsv"})


@pytest.mark.parametrize("spec", ["int8", "whiten:k=6,uint8:clip=0.98", "binary",
                                  "pca:k=10,ubinary", "whiten:k=6"])
def test_score_task_scores_quantised_chains_against_numpy(spec):
    rng = np.random.default_rng(3)
    X1, X2 = _data(60, seed=1), _data(60, seed=2)
    labels = rng.uniform(0, 5, size=60)
    p = parse_post(spec).fit(_data())
    ev, embed = _evaluator(X1, X2, labels)
    got = ev.score_task("T", embed, p.transform)["test"]
    c1, c2 = p.transform(X1), p.transform(X2)
    q = quantizer_of(p)
    if isinstance(q, BinaryQuantizer):  # Hamming similarity of the unpacked bits, by hand
        u1 = np.unpackbits(c1.view(np.uint8) if q.unsigned else (c1.astype(int) + 128)
                           .astype(np.uint8), axis=1)[:, :q.n_bits_]
        u2 = np.unpackbits(c2.view(np.uint8) if q.unsigned else (c2.astype(int) + 128)
                           .astype(np.uint8), axis=1)[:, :q.n_bits_]
        scores = 1 - (u1 != u2).sum(1) / q.n_bits_
    else:  # cosine of the dequantised vectors (or of the float output), by hand
        if q is not None:
            off = 128 if q.dtype == "int8" else 0
            c1 = q.low_ + (c1.astype(float) + off) * (q.high_ - q.low_) / 255
            c2 = q.low_ + (c2.astype(float) + off) * (q.high_ - q.low_) / 255
        scores = (c1 * c2).sum(1) / np.linalg.norm(c1, axis=1) / np.linalg.norm(c2, axis=1)
    assert got["spearman"] == pytest.approx(spearman(scores, labels), abs=1e-12)
    # the same through a fitted pipeline passed as the transform
    assert ev.score_task("T", embed, p)["test"]["spearman"] == got["spearman"]


def test_scored_output_gives_the_vectors_scores_are_computed_on():
    X = _data()
    p = parse_post("int8").fit(X)
    x, sim = scored_output(p, X)
    assert sim == "cosine"
    np.testing.assert_array_equal(x, quantizer_of(p).decode(p.transform(X)))
    x, sim = scored_output(parse_post("pca:k=3").fit(X), X)
    assert sim is None and x.shape == (200, 3)


@pytest.mark.parametrize("chain", ["whiten:k=16,int8", "whiten:k=16,binary"])
def test_bench_and_diagnose_score_a_quantised_chain_alike(tiny_encoder, spec_file, chain):
    """bench and diagnose give the quantised row the score computed by hand from the codes."""
    from embedkit.data import load_task
    from embedkit.runs.bench import run_bench
    from embedkit.runs.diagnose import DiagnoseOptions, run_diagnose

    rec = run_bench(tiny_encoder, ["cls"], [str(spec_file)], post=[chain])
    label = describe_post(parse_post(chain))
    bench_score = rec["results"][f"cls + {label}"]["tiny-sts"]["test"]["spearman"]
    split = load_task(str(spec_file), ["test"])["test"]
    # bench fits on the task's sentences, every occurrence
    p = parse_post(chain).fit(tiny_encoder.encode([*split.sentences1, *split.sentences2], "cls"))
    q = quantizer_of(p)
    d1 = q.decode(p.transform(tiny_encoder.encode(split.sentences1, "cls")))
    d2 = q.decode(p.transform(tiny_encoder.encode(split.sentences2, "cls")))
    if q.similarity == "hamming":
        by_hand = (d1 == d2).mean(1)
    else:
        by_hand = (d1 * d2).sum(1) / np.linalg.norm(d1, axis=1) / np.linalg.norm(d2, axis=1)
    assert bench_score == pytest.approx(spearman(np.round(by_hand, 12), split.labels), abs=1e-9)
    assert bench_score != rec["results"]["cls"]["tiny-sts"]["test"]["spearman"]
    assert rec["bytes_per_vector"] == {"cls": 4 * tiny_encoder.dim, f"cls + {label}":
                                       16 if q.similarity == "cosine" else 2}
    opts = DiagnoseOptions(tasks=(str(spec_file),), post=PostOptions(chains=(chain,)), k=5, n_pairs=300,
                           jl_dims=(8,))
    rows = {r["row"]: r for r in run_diagnose(tiny_encoder, opts, ["cls"])["rows"]}
    row = rows[f"cls + {label}"]
    assert row["spearman"]["test"]["spearman"] == pytest.approx(bench_score, abs=1e-9)
    assert row["bytes_per_vector"] == (16 if q.similarity == "cosine" else 2)
    assert row["similarity"] == q.similarity


@pytest.mark.parametrize("quantize", ["int8", "uint8:clip=0.98", "binary"])
def test_sweep_scores_each_setting_followed_by_the_quantiser(quantize):
    """A sweep setting with ``quantize`` scores what bench scores for ``whiten:...,<quantize>``
    fitted on the same vectors."""
    from embedkit.evaluation import pair_scores
    from embedkit.postprocess import RunningMoments
    from embedkit.runs.sweep import SweepOptions, sweep_vectors

    rng = np.random.default_rng(4)
    fit = _data(300)
    X1 = _data(80, seed=7)
    X2 = X1 + rng.normal(size=X1.shape)
    y = -np.linalg.norm(X1 - X2, axis=1)
    pairs = {"valid": (X1[:40], X2[:40], y[:40]), "test": (X1[40:], X2[40:], y[40:])}
    opts = SweepOptions(beta=[1.0], gamma=[0.5, 1.0], k=[4, "all"], quantize_vectors=quantize)
    res = sweep_vectors(RunningMoments.of(fit), pairs, opts, fit)
    for s in res["settings"]:
        p = parse_post(s["post"]).fit(fit)
        q = quantizer_of(p)
        ref = pair_scores(q.decode(p.transform(X1[40:])), q.decode(p.transform(X2[40:])),
                          y[40:], q.similarity)["spearman"]
        assert s["report"] == pytest.approx(ref, abs=1e-9)
        assert s["bytes_per_vector"] == bytes_per_vector(p, 12)
    assert res["classic"]["post"].endswith("," + quantize)
    with pytest.raises(ConfigError, match="quantiser's ranges are fitted on the fit vectors"):
        sweep_vectors(RunningMoments.of(fit), pairs, opts)


def test_sweep_quantize_option_is_checked():
    from embedkit.runs.sweep import SweepOptions

    assert SweepOptions(quantize_vectors="int8:clip=0.990").quantize_vectors == "int8:clip=0.99"
    with pytest.raises(ConfigError, match="expected one quantiser step"):
        SweepOptions(quantize_vectors="pca")
    with pytest.raises(ConfigError, match="unknown step 'int4'"):
        SweepOptions(quantize_vectors="int4")


def test_a_quantised_file_as_a_file_step_is_refused_not_dropped(tmp_path):
    X = _data()
    path = tmp_path / "q.safetensors"
    save_quantized(path, parse_post("whiten:k=4,binary").fit(X))
    with pytest.raises(ConfigError, match="holds a chain ending in a quantiser .binary."):
        parse_post(f"file:{path}").fit(X)
    assert [n for n, _ in resolve_post(str(path)).steps] == ["file", "binary"]


def test_cli_bench_scores_a_quantised_chain_and_refuses_a_bad_one(tiny_model_dir, spec_file,
                                                                   capsys):
    from embedkit.cli.main import main
    from tests.conftest import cli_error

    argv = ["bench", "--model", str(tiny_model_dir), "--tasks", str(spec_file), "--pooling",
            "cls", "--no-cache"]
    assert main([*argv, "--post", "whiten:k=16,int8"]) == 0
    assert "cls + whiten:beta=1,gamma=1,k=16,int8" in capsys.readouterr().out
    line = cli_error(capsys, [*argv, "--post", "int8,whiten"])
    assert "the quantiser 'int8' must be the last step" in line


def test_cli_index_build_refuses_a_quantised_post_in_one_line(tiny_model_dir, tmp_path, capsys):
    """Quantised indexes are another step (issue 22 item 3): a quantiser is no index post."""
    from tests.conftest import cli_error

    sents = tmp_path / "s.txt"
    sents.write_text("你好\n再见\n一个人在弹吉他。\n", encoding="utf-8")
    line = cli_error(capsys, ["index", "build", "--model", str(tiny_model_dir), "--pooling",
                              "cls", "--corpus", str(sents), "--out", str(tmp_path / "idx"),
                              "--post", "int8", "--no-cache"], before=None)
    assert "is a quantiser, not a linear map" in line


def test_bench_intervals_of_a_quantised_row_are_about_its_decoded_scores(tiny_encoder,
                                                                         spec_file):
    """bench's extras (intervals, classification) compare the decoded codes, not raw codes."""
    from embedkit.runs.bench import run_bench
    from embedkit.runs.pair_extras import PairExtras

    rec = run_bench(tiny_encoder, ["cls"], [str(spec_file)], post=["whiten:k=16,binary"],
                    extras=PairExtras(ci=20))
    test = rec["results"]["cls + whiten:beta=1,gamma=1,k=16,binary"]["tiny-sts"]["test"]
    # cosine of the +-1 sign vectors is 2 s - 1 of the Hamming similarity s: the same ranks
    assert test["ci"]["spearman"]["value"] == pytest.approx(test["spearman"], abs=1e-9)


def test_pq_is_a_quantiser_step_scored_on_its_reconstructions(tmp_path):
    """``pq:m=M`` ends a chain like int8: M bytes a vector (8-bit codes, faiss' code size),
    scored by the cosine of the decoded vectors, refused in one line where its codebooks would
    have to be saved."""
    from embedkit.postprocess import ProductQuantizer

    X = _data()
    pipe = parse_post("pca:k=8,pq:m=4").fit(np.vstack([X] * 20))
    assert describe_post(pipe).endswith(",pq:m=4")
    assert bytes_per_vector(pipe, X.shape[1]) == 4
    q = quantizer_of(pipe)
    assert isinstance(q, ProductQuantizer) and q.similarity == "cosine"
    codes = pipe.transform(X)
    assert codes.dtype == np.uint8 and codes.shape == (len(X), 4)
    assert q.decode(codes).shape == (len(X), 8)
    with pytest.raises(ConfigError, match="codebooks are not saved"):
        save_quantized(tmp_path / "pq.safetensors", pipe)
    with pytest.raises(ConfigError, match="pq:m=5 does not divide"):
        parse_post("pq:m=5").fit(np.vstack([X] * 20))
