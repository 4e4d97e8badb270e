"""profile(): every diagnostic of one set, the same numbers as the functions it combines; its
table columns; the plots drawn from it."""

from __future__ import annotations

import numpy as np
import pytest

from embedkit.diagnostics import (
    COLUMNS,
    anisotropy,
    hubness,
    jl_at,
    jl_distortion,
    practical_min_dim,
    profile,
    profile_columns,
    sample_rows,
    sparsity,
    spectrum,
)
from embedkit.errors import ConfigError


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.normal(size=(400, 12)) @ rng.normal(size=(12, 12)) + 2.0


def test_profile_is_the_functions_it_combines(x):
    p = profile(x, k=7, n_pairs=800, jl_dims=(4, 8), seed=3)
    assert (p["n_vectors"], p["n_sample"], p["dim"], p["seed"]) == (400, 400, 12, 3)
    assert p["anisotropy"] == anisotropy(x, n_pairs=800, seed=3)
    spec = spectrum(x)
    assert p["spectrum"]["eigenvalues"] == spec["eigenvalues"]
    assert p["spectrum"]["isoscore"] == spec["isoscore"]
    assert "explained_variance_ratio" not in p["spectrum"]
    hub = p["hubness"]
    ref = hubness(x, k=7)
    assert {key: hub[key] for key in ref} == ref
    assert sum(hub["nk_histogram"]) == 400
    assert sum(i * c for i, c in enumerate(hub["nk_histogram"])) == 400 * 7
    assert p["sparsity"] == sparsity(x)
    dims = sorted({4, 8, practical_min_dim(400)})
    assert p["jl"] == jl_distortion(x, dims, n_pairs=800, seed=3)
    assert jl_at(p, 8) == p["jl"]["projections"][dims.index(8)]["distance_p99"]
    assert jl_at(p, 999) is None


def test_sample_diagnoses_a_seeded_subset(x):
    p = profile(x, k=5, sample=100, seed=1, n_pairs=300, jl_dims=(4,))
    rows = sample_rows(400, 100, seed=1)
    assert p["n_sample"] == 100 and p["n_vectors"] == 400
    assert p["spectrum"]["eigenvalues"] == spectrum(x[rows])["eigenvalues"]
    assert p["hubness"]["n_corpus"] == 100
    assert p["jl"]["n_vectors"] == 400  # JL samples its pairs from every row
    assert np.array_equal(rows, sample_rows(400, 100, seed=1))
    assert len(set(rows.tolist())) == 100 and list(rows) == sorted(rows)
    assert sample_rows(400, 400) is None and sample_rows(400, None) is None
    with pytest.raises(ConfigError, match="sample"):
        sample_rows(400, 1)


def test_profile_checks_k(x):
    with pytest.raises(ConfigError) as e:
        profile(x[:5], k=5)
    assert e.value.param == "k"


def test_columns(x):
    c = profile_columns(profile(x, k=5, n_pairs=300, jl_dims=(4,)))
    assert list(c) == [key for key, _, _ in COLUMNS]
    assert c["dim"] == 12 and c["dims_90"] <= c["dims_95"] <= c["dims_99"] <= 12
    assert c["mean_cosine"] > 0.1  # shifted by +2: a common direction
    assert all(np.isfinite(v) for v in c.values())


def test_isotropic_and_anisotropic_columns():
    rng = np.random.default_rng(0)
    iso = profile_columns(profile(rng.normal(size=(2000, 8)), k=5, n_pairs=2000, jl_dims=(4,)))
    assert abs(iso["mean_cosine"]) < 0.05 and iso["isoscore"] > 0.9
    line = np.outer(rng.normal(size=500), np.ones(8)) + 1e-6 * rng.normal(size=(500, 8))
    flat = profile_columns(profile(line, k=5, n_pairs=500, jl_dims=(4,)))
    assert flat["isoscore"] < 0.01 and flat["dims_99"] == 1


def test_plots_are_written(x, tmp_path):
    pytest.importorskip("matplotlib")
    from embedkit.diagnostics.plots import plot_jl, plot_occurrence, plot_spectra

    profs = {"raw": profile(x, k=5, n_pairs=300, jl_dims=(4, 8)),
             "centred": profile(x - x.mean(axis=0), k=5, n_pairs=300, jl_dims=(4, 8))}
    for fn, name in ((plot_spectra, "s.png"), (plot_occurrence, "h.png"), (plot_jl, "j.png")):
        path = fn(tmp_path / "sub" / name, "title", profs)
        assert path.read_bytes()[:4] == b"\x89PNG"
