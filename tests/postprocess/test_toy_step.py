"""A new postprocessor in one file: a toy "center" step (subtract the mean: kernel_ = I,
bias_ = -mean_) defined and registered here only, then used through the spec language, folded
into an AffineMap, saved, and run in a bench row."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.utils.validation import validate_data

from embedkit.postprocess import (
    AffineMap,
    LinearStep,
    describe_post,
    parse_post,
    pipeline_learns,
    register_step,
    step_names,
    unregister_step,
)


class Center(LinearStep):
    """Subtract the mean of the fitted rows: ``(x - mean_) @ I``."""

    _parameter_constraints: dict = {}

    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        self.mean_ = np.asarray(X, dtype=np.float64).mean(axis=0)
        self.kernel_ = np.eye(X.shape[1])
        self.bias_ = -self.mean_
        return self


@pytest.fixture
def center_step():
    register_step("center", Center)
    yield
    unregister_step("center")
    assert "center" not in step_names()


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(50, 6)) + 3.0


def test_spec_language_and_affine_map(center_step):
    X = _data()
    p = parse_post("center,norm")
    assert [name for name, _ in p.steps] == ["center", "norm"] and pipeline_learns(p)
    assert describe_post(p) == "center,norm"
    Y = p.fit(X).transform(X)
    Z = X - X.mean(0)
    np.testing.assert_allclose(Y, Z / np.linalg.norm(Z, axis=1, keepdims=True))
    m = AffineMap.from_pipeline(p)
    assert m.normalize and (m.d, m.k) == (6, 6)
    np.testing.assert_allclose(m.bias, -X.mean(0))
    np.testing.assert_allclose(m.apply(X), Y)
    # composes with the built-in steps
    q = parse_post("center,whiten:k=3").fit(X)
    np.testing.assert_allclose(AffineMap.from_pipeline(q).apply(X), q.transform(X), atol=1e-9)
    assert Center().fit_transform(X.astype(np.float32)).dtype == np.float32


def test_used_in_a_bench_row(center_step, tiny_encoder, spec_file):
    from embedkit.data import get_task, load_task
    from embedkit.data.selection import collect_fit_sentences
    from embedkit.evaluation import pair_scores
    from embedkit.runs.bench import run_bench

    rec = run_bench(tiny_encoder, ["cls"], [str(spec_file)], post=["center"])
    got = rec["results"]["cls + center"]["tiny-sts"]["test"]["spearman"]
    data = load_task(str(spec_file))
    fit = collect_fit_sentences("task", get_task(str(spec_file)), data)
    mean = tiny_encoder.encode(fit.sentences, "cls").astype(np.float64).mean(0)
    test = data["test"]
    want = pair_scores(tiny_encoder.encode(test.sentences1, "cls") - mean,
                       tiny_encoder.encode(test.sentences2, "cls") - mean, test.labels)
    assert got == pytest.approx(want["spearman"], abs=1e-9)
