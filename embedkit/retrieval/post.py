"""The post-processor baked into an index: :class:`~embedkit.store.fitted.FittedPost`, made by
:func:`~embedkit.store.fitted.prepare_post` and compared by
:func:`~embedkit.store.fitted.same_post`.

Their home is :mod:`embedkit.store.fitted`; the names are re-exported here (``IndexPost`` is
``FittedPost``) so that the index builders' imports resolve until they import from there.

>>> IndexPost is FittedPost
True
"""

from __future__ import annotations

from embedkit.store.fitted import (
    FitData,
    FittedPost,
    check_fitted_on,
    is_none,
    post_output_dim,
    prepare_post,
    same_post,
)

#: the index builders' name for :class:`~embedkit.store.fitted.FittedPost`
IndexPost = FittedPost

__all__ = ["FitData", "FittedPost", "IndexPost", "check_fitted_on", "is_none",
           "post_output_dim", "prepare_post", "same_post"]
