"""Index settings checked before any encoding: FAISS factory strings are built once, empty,
on the dimension the index will hold (the encoder's, or what the post-processor leaves).

>>> check_index_settings(["Flat", "IVF4,Flat"], "pca:k=8", dim=32)
8
>>> check_index_settings(["IVF4,PQ7"], None, dim=32)
Traceback (most recent call last):
embedkit.errors.ConfigError: FAISS cannot build factory 'IVF4,PQ7' for dimension 32: ... should be a multiple of the number of subquantizers (M)
"""

from __future__ import annotations

from collections.abc import Iterable

from embedkit.retrieval.faiss_ops import check_metric, make_faiss_index
from embedkit.retrieval.quantized import make_quantized, parse_spec
from embedkit.store.fitted import post_output_dim


def check_index_settings(factories: Iterable[str], post: str | None, *, dim: int,
                         metric: str = "cosine") -> int:
    """Check the post value against ``dim`` and every factory on the dimension it leaves (a
    throwaway ``index_factory``); returns that dimension. Errors are :class:`ConfigError`
    (``param`` ``post`` or ``factory``)."""
    metric = check_metric(metric)
    out = post_output_dim(post, int(dim))
    for factory in factories:
        spec = parse_spec(factory)  # hook: quantised specs (BHNSW32+rescore4x, SQ8+rescore4x)
        if spec is not None:
            make_quantized(out, spec[0], metric, None, vectors=spec[1], rescore=0)
            continue
        make_faiss_index(out, factory, metric, None)
    return out
