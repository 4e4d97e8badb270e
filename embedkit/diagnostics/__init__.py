"""Diagnostics of an embedding space: pure functions from a matrix of vectors to JSON-ready dicts.

- :mod:`~embedkit.diagnostics.anisotropy`: mean cosine of random pairs (Ethayarajh 2019) and
  the mean-vector norm ratio.
- :mod:`~embedkit.diagnostics.spectrum`: covariance eigenvalues, explained variance, effective
  rank (Roy & Vetterli 2007), IsoScore (Rudman et al. 2022).
- :mod:`~embedkit.diagnostics.hubness`: k-occurrence, skewness (Radovanovic et al. 2010), Robin
  Hood index (Feldbauer et al. 2018), antihubs, exact FAISS search in row blocks.
- :mod:`~embedkit.diagnostics.sparsity`: l1/l2 ratio and Hoyer sparseness of vectors and spectrum.
- :mod:`~embedkit.diagnostics.jl`: Johnson-Lindenstrauss distortion of random projections.
- :mod:`~embedkit.diagnostics.hubness_reduction`: CSLS reranking (Conneau et al. 2018).
- :mod:`~embedkit.diagnostics.profile`: all of the above on one set (with a seeded row sample),
  and the numbers a report table shows.
- :mod:`~embedkit.diagnostics.plots`: spectrum, N_k histogram and JL figures (matplotlib).

Functions that sample take a ``seed`` (default 0, ``numpy.random.default_rng``) and report it;
all work in bounded memory, ``block_rows`` rows at a time, never an ``n x n`` matrix.

>>> import numpy as np
>>> x = np.random.default_rng(0).normal(size=(2000, 8))
>>> abs(anisotropy(x)["mean_cosine"]) < 0.05, isoscore(x) > 0.9, round(effective_rank(x))
(True, True, 8)
>>> h = hubness(x, k=5)
>>> h["k"], h["n_corpus"], h["mean_occurrence"]
(5, 2000, 5.0)
>>> sparsity(np.eye(4))["vectors"]["hoyer"]["mean"]
1.0
"""

from embedkit.diagnostics.anisotropy import anisotropy, mean_vector_norm_ratio, pair_cosines
from embedkit.diagnostics.hubness import (
    cosine_knn,
    hubness,
    hubness_from_occurrence,
    k_occurrence,
)
from embedkit.diagnostics.hubness_reduction import corpus_hub_penalty, csls_rerank, csls_search
from embedkit.diagnostics.jl import jl_distortion, practical_min_dim
from embedkit.diagnostics.profile import (
    COLUMNS,
    DEFAULT_JL_DIMS,
    jl_at,
    profile,
    profile_columns,
    sample_rows,
)
from embedkit.diagnostics.sparsity import hoyer, l1_l2_ratio, sparsity
from embedkit.diagnostics.spectrum import (
    covariance_eigenvalues,
    dims_for_variance,
    effective_rank,
    effective_rank_from_eigenvalues,
    isoscore,
    isoscore_from_eigenvalues,
    spectrum,
)

__all__ = [
    "anisotropy",
    "mean_vector_norm_ratio",
    "pair_cosines",
    "covariance_eigenvalues",
    "spectrum",
    "effective_rank",
    "effective_rank_from_eigenvalues",
    "isoscore",
    "isoscore_from_eigenvalues",
    "dims_for_variance",
    "cosine_knn",
    "k_occurrence",
    "hubness",
    "hubness_from_occurrence",
    "l1_l2_ratio",
    "hoyer",
    "sparsity",
    "jl_distortion",
    "practical_min_dim",
    "corpus_hub_penalty",
    "csls_rerank",
    "csls_search",
    "COLUMNS",
    "DEFAULT_JL_DIMS",
    "jl_at",
    "profile",
    "profile_columns",
    "sample_rows",
]
