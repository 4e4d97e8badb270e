"""The postprocessors are scikit-learn estimators: the standard estimator checks pass, and their
parameters are validated declaratively (``_parameter_constraints``)."""

from __future__ import annotations

import pytest
from sklearn.utils.estimator_checks import check_param_validation, parametrize_with_checks

from embedkit.errors import ConfigError
from embedkit.postprocess import (
    PCA,
    InvalidPostParameterError,
    Normalize,
    RandomProjection,
    Whitening,
)

ESTIMATORS = [Whitening(), PCA(), RandomProjection(n_components=2, random_state=0), Normalize()]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_parameter_constraints_cover_every_parameter(estimator):
    check_param_validation(type(estimator).__name__, estimator)


@pytest.mark.parametrize("estimator,param", [
    (Whitening(beta=float("inf")), "beta"),
    (Whitening(n_components=0), "n_components"),
    (PCA(whiten="yes"), "whiten"),
    (RandomProjection(kind="dense"), "kind"),
    (RandomProjection(eps=1.5), "eps"),
])
def test_invalid_parameters_are_config_errors_naming_the_parameter(estimator, param):
    import numpy as np

    with pytest.raises(InvalidPostParameterError) as e:
        estimator.fit(np.ones((4, 3)))
    assert isinstance(e.value, ConfigError) and isinstance(e.value, ValueError)
    assert e.value.param == param and f"'{param}' parameter" in str(e.value)
