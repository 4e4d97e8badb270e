"""Every diagnostic of one embedding set at once, and its table columns.

:func:`profile` runs anisotropy, spectrum, hubness, sparsity and Johnson-Lindenstrauss on one
``(n, d)`` array (the first four on a seeded sample of rows when ``sample`` is given, so large
corpora stay fast; JL samples its own pairs from all rows) and returns one JSON-ready dict that
holds what the plots need (the eigenvalues and the N_k histogram). :func:`profile_columns`
flattens it into the numbers a report table shows.

>>> import numpy as np
>>> x = np.random.default_rng(0).normal(size=(300, 16))
>>> p = profile(x, k=5, jl_dims=(8,), n_pairs=500)
>>> p["n_vectors"], p["n_sample"], p["hubness"]["k"], sum(p["hubness"]["nk_histogram"])
(300, 300, 5, 300)
>>> c = profile_columns(p)
>>> abs(c["mean_cosine"]) < 0.1, 0.8 < c["isoscore"] <= 1.0, c["dim"]
(True, True, 16)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from embedkit.diagnostics._common import as_matrix, check_seed
from embedkit.diagnostics.anisotropy import anisotropy
from embedkit.diagnostics.hubness import hubness_from_occurrence, k_occurrence
from embedkit.diagnostics.jl import jl_distortion, practical_min_dim
from embedkit.diagnostics.sparsity import sparsity
from embedkit.diagnostics.spectrum import spectrum
from embedkit.errors import ConfigError, check_int

#: target dimensions of the measured JL distortion by default (the practical 8.33 ln N is added)
DEFAULT_JL_DIMS = (32, 64, 128, 256)

#: (key, header, digits) of the columns :func:`profile_columns` returns, in table order
COLUMNS = (
    ("dim", "dim", 0),
    ("mean_cosine", "mean cos", 3),
    ("mean_norm_ratio", "norm(mu)/norm(x)", 3),
    ("effective_rank", "eff. rank", 1),
    ("isoscore", "IsoScore", 3),
    ("dims_90", "d90%", 0),
    ("dims_95", "d95%", 0),
    ("dims_99", "d99%", 0),
    ("nk_skewness", "N_k skew", 2),
    ("robinhood", "Robin Hood", 3),
    ("antihub_rate", "antihubs", 3),
    ("top_share", "top-1% share", 3),
    ("l1_l2", "l1/l2", 3),
    ("hoyer", "Hoyer", 3),
)


def sample_rows(n: int, sample: int | None, seed: int = 0) -> np.ndarray | None:
    """Sorted row indices of a seeded sample of ``sample`` rows out of ``n`` (without
    replacement), or None when ``sample`` is None or not smaller than ``n``.

    >>> sample_rows(10, 3, seed=0).tolist(), sample_rows(10, 20)
    ([5, 6, 9], None)
    """
    if sample is None:
        return None
    size = check_int(sample, "sample", minimum=2)
    if size >= n:
        return None
    rng = np.random.default_rng(check_seed(seed))
    return np.sort(rng.choice(n, size=size, replace=False))


def profile(x: ArrayLike, *, k: int = 10, sample: int | None = None, seed: int = 0,
            n_pairs: int = 10000, jl_dims: Sequence[int] = DEFAULT_JL_DIMS,
            jl_eps: Sequence[float] = (0.1, 0.2, 0.5)) -> dict[str, Any]:
    """Anisotropy, spectrum, hubness at ``k``, sparsity and JL distortion of ``x``.

    ``anisotropy``, ``spectrum``, ``hubness`` and ``sparsity`` are computed on
    :func:`sample_rows` (``sample`` rows drawn with ``seed``; all rows when None); ``jl`` on all
    rows (:func:`~embedkit.diagnostics.jl_distortion` projects only the rows of its ``n_pairs``
    seeded pairs), at ``jl_dims`` plus the practical dimension ``ceil(8.33 ln n)``. The
    spectrum keeps its eigenvalues (descending) and drops the curves derived from them; the
    hubness dict gains ``nk_histogram`` (``[#points with N_k = 0, = 1, ...]``).
    """
    arr = as_matrix(x, min_rows=3)
    k = check_int(k, "k")
    n = int(arr.shape[0])
    rows = sample_rows(n, sample, seed)
    sub = arr if rows is None else arr[rows]
    if k > sub.shape[0] - 1:
        raise ConfigError(f"k must be < the number of vectors diagnosed ({sub.shape[0]}); got {k}",
                          param="k")
    spec = spectrum(sub)
    for key in ("explained_variance_ratio", "cumulative_explained_variance"):
        spec.pop(key)
    occurrence = k_occurrence(sub, k)
    hub = hubness_from_occurrence(occurrence, k)
    hub.update(n_queries=int(sub.shape[0]), self_search=True,
               nk_histogram=np.bincount(occurrence).astype(int).tolist())
    dims = sorted({check_int(m, "each entry of jl_dims", param="jl_dims") for m in jl_dims}
                  | {practical_min_dim(n)})
    return {
        "n_vectors": n,
        "n_sample": int(sub.shape[0]),
        "dim": int(arr.shape[1]),
        "seed": check_seed(seed),
        "anisotropy": anisotropy(sub, n_pairs=n_pairs, seed=seed),
        "spectrum": spec,
        "hubness": hub,
        "sparsity": sparsity(sub),
        "jl": jl_distortion(arr, dims, n_pairs=n_pairs, eps=jl_eps, seed=seed),
    }


def jl_at(p: dict[str, Any], dim: int, key: str = "distance_p99") -> float | None:
    """The measured JL distortion ``key`` of profile ``p`` at target dimension ``dim`` (None
    when it was not measured there)."""
    for proj in p["jl"]["projections"]:
        if proj["dim"] == dim:
            value = proj.get(key)
            return None if value is None else float(value)
    return None


def profile_columns(p: dict[str, Any]) -> dict[str, float | int | None]:
    """The numbers of :data:`COLUMNS` from a :func:`profile` dict (None where undefined)."""
    spec, hub, sp = p["spectrum"], p["hubness"], p["sparsity"]["vectors"]
    dims = spec["dims_for_variance"]
    return {
        "dim": p["dim"],
        "mean_cosine": p["anisotropy"]["mean_cosine"],
        "mean_norm_ratio": p["anisotropy"]["mean_vector_norm_ratio"],
        "effective_rank": spec["effective_rank"],
        "isoscore": spec["isoscore"],
        "dims_90": dims.get("0.9"),
        "dims_95": dims.get("0.95"),
        "dims_99": dims.get("0.99"),
        "nk_skewness": hub["skewness"],
        "robinhood": hub["robinhood_index"],
        "antihub_rate": hub["antihub_rate"],
        "top_share": hub["top_share"],
        "l1_l2": sp["l1_l2_ratio"]["mean"] if sp["l1_l2_ratio"] else None,
        "hoyer": sp["hoyer"]["mean"] if sp["hoyer"] else None,
    }
