"""What every post-processing estimator shares: its errors, input validation, declarative
parameter validation and the linear-step base ``transform(X) == (X + bias_) @ kernel_``.

>>> issubclass(PostprocessError, ValueError) and issubclass(PostprocessError, ConfigError)
True
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.validation import check_is_fitted, validate_data

from embedkit.errors import ConfigError

__all__ = ["PostprocessError", "InvalidPostParameterError", "RankDeficientWarning",
           "LinearStep", "check_params"]

_FLOAT_DTYPES = [np.float64, np.float32]
_Fit = TypeVar("_Fit", bound=Callable[..., Any])


def fit_context(method: _Fit) -> _Fit:
    """scikit-learn's ``_fit_context(prefer_skip_nested_validation=True)`` (the declared
    parameters checked before ``fit`` runs), typed: the method keeps its signature."""
    return cast(_Fit, _fit_context(prefer_skip_nested_validation=True)(method))


class PostprocessError(ConfigError, ValueError):
    """A bad post-processing setting or input; both a :class:`ConfigError` and a ``ValueError``.

    The CLI prints it as one line (it is an ``EmbedkitError``); scikit-learn code that expects
    ``ValueError`` from estimators (``GridSearchCV`` and the estimator checks) still gets one.

    >>> issubclass(PostprocessError, ValueError) and issubclass(PostprocessError, ConfigError)
    True
    """


class InvalidPostParameterError(PostprocessError, InvalidParameterError):  # type: ignore[misc]  # sklearn: no stubs
    """A constructor parameter outside its declared constraints (``_parameter_constraints``):
    scikit-learn's ``InvalidParameterError`` that is also a :class:`PostprocessError`, with
    ``param`` naming the parameter.

    >>> from embedkit.postprocess import Whitening
    >>> try:
    ...     Whitening(eps=2.0).fit([[0.0], [1.0]])
    ... except InvalidPostParameterError as e:
    ...     print(e.param, "|", e)
    eps | Whitening: The 'eps' parameter of Whitening must be a float in the range (0.0, 1.0). Got 2.0 instead.
    """


class RankDeficientWarning(UserWarning):
    """Some kept directions had (near-)zero variance and their eigenvalue was clamped.

    >>> issubclass(RankDeficientWarning, UserWarning)
    True
    """


_PARAM_NAME = re.compile(r"The '(\w+)' parameter")


class _Validated(BaseEstimator):  # type: ignore[misc]  # sklearn: no stubs
    """Declarative parameter validation whose failures are :class:`InvalidPostParameterError`."""

    _parameter_constraints: dict[str, list[Any]] = {}

    def _validate_params(self) -> None:
        try:
            super()._validate_params()
        except InvalidParameterError as exc:
            found = _PARAM_NAME.search(str(exc))
            raise InvalidPostParameterError(f"{type(self).__name__}: {exc}",
                                            param=found.group(1) if found else None) from None


def check_params(estimator: BaseEstimator) -> BaseEstimator:
    """Validate ``estimator``'s parameters now (before any data is read); returns it.

    >>> from embedkit.postprocess import Whitening
    >>> check_params(Whitening(gamma=float("nan")))
    Traceback (most recent call last):
    ...
    embedkit.postprocess._base.InvalidPostParameterError: Whitening: The 'gamma' parameter of Whitening must be a float in the range (-inf, inf). Got nan instead.
    """
    validate = getattr(estimator, "_validate_params", None)
    if validate is not None:
        validate()
    return estimator


def validate_float_matrix(est: BaseEstimator, X: Any, *, reset: bool) -> np.ndarray:
    """``validate_data`` for a float matrix, turning sklearn's ValueError into PostprocessError."""
    try:
        return np.asarray(validate_data(est, X, reset=reset, dtype=_FLOAT_DTYPES, ensure_2d=True))
    except PostprocessError:
        raise
    except ValueError as exc:
        raise PostprocessError(f"{type(est).__name__}: {exc}") from exc


class LinearStep(TransformerMixin, _Validated):  # type: ignore[misc]  # sklearn: no stubs
    """Base of the linear steps: once fitted, ``transform(X) == (X + bias_) @ kernel_``.

    Subclasses learn ``kernel_`` (d x k) and ``bias_`` (d) in ``fit`` (they may be properties)
    and inherit ``transform`` (float64 arithmetic, output in the input's float dtype),
    ``get_feature_names_out`` (``<classname>0 ..``) and the dtype tags;
    :meth:`~embedkit.postprocess.AffineMap.from_pipeline` folds any of them.

    >>> class Double(LinearStep):
    ...     def fit(self, X, y=None):
    ...         X = validate_float_matrix(self, X, reset=True)
    ...         self.kernel_, self.bias_ = 2 * np.eye(X.shape[1]), np.zeros(X.shape[1])
    ...         return self
    >>> Double().fit_transform(np.ones((1, 2))).tolist()
    [[2.0, 2.0]]
    """

    def transform(self, X: Any) -> np.ndarray:
        """Return ``(X + bias_) @ kernel_`` in the input's float dtype (computed in float64)."""
        check_is_fitted(self)
        kernel, bias = self.kernel_, self.bias_
        X = validate_float_matrix(self, X, reset=False)
        out: np.ndarray = (np.asarray(X, dtype=np.float64) + bias) @ kernel
        with np.errstate(over="ignore"):
            out = out.astype(X.dtype, copy=False)
        if not np.all(np.isfinite(out)):
            raise PostprocessError(
                f"{type(self).__name__}: the transformed vectors overflow {X.dtype} (largest "
                f"kernel entry {np.abs(kernel).max():.3g}); use a map with smaller entries (a "
                "whitening: a smaller gamma or a larger eps)")
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Output names ``<classname>0 .. <classname>{k-1}``."""
        check_is_fitted(self)
        prefix = type(self).__name__.lower()
        k = int(np.asarray(self.kernel_).shape[1])
        return np.asarray([f"{prefix}{i}" for i in range(k)], dtype=object)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
