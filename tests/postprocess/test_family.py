"""The whitening family: maps derived from one eigen-decomposition per beta equal fresh fits, and
the fast grid scoring equals scoring each transformed setting."""

from __future__ import annotations

import numpy as np
import pytest

from embedkit.evaluation import pair_scores, quantize_cosines, spearman
from embedkit.postprocess import Whitening, WhiteningFamily, score_grid

pytestmark = pytest.mark.filterwarnings("ignore::embedkit.postprocess.RankDeficientWarning")


def spearman_of_cosines(cos, labels):
    return spearman(quantize_cosines(cos), labels)


@pytest.mark.parametrize("beta,gamma,k", [(1, 1, "all"), (0, 0.5, 5), (0.5, 0.25, 12),
                                          (1, 0, 3), (0.3, 2.0, 7)])
def test_family_kernels_equal_fresh_whitening(wt_data, beta, gamma, k):
    fit, _ = wt_data
    stats = Whitening().partial_fit(fit[:100]).partial_fit(fit[100:]).moments_
    fam = WhiteningFamily.from_stats(stats, beta)
    m = fam.map(gamma, k)
    w = Whitening(beta=beta, gamma=gamma, n_components=None if k == "all" else k).fit(fit)
    np.testing.assert_allclose(m.kernel, w.kernel_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(m.bias, w.bias_, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(fam.kernel(gamma, k), m.kernel)


def test_fast_scores_equal_transformed_scores(wt_data):
    fit, pairs = wt_data
    gammas, ks = [0.0, 0.5, 1.0], [3, 8, 12]
    for beta in (0.0, 1.0):
        scores = score_grid(WhiteningFamily.fit(fit, beta), gammas, ks, pairs,
                            spearman_of_cosines)
        for gi, gamma in enumerate(gammas):
            for ki, k in enumerate(ks):
                w = Whitening(beta=beta, gamma=gamma, n_components=k).fit(fit)
                for name, (x1, x2, y) in pairs.items():
                    ref = pair_scores(w.transform(x1), w.transform(x2), y)["spearman"]
                    assert scores[name][gi, ki] == pytest.approx(ref, abs=1e-9)
