"""Post-processing of sentence embeddings: whitening, PCA, random projection, truncation,
normalisation, and the quantisers that may end a chain (int8, uint8, binary, ubinary).

Every step is a scikit-learn transformer (``clone``, ``Pipeline``, ``GridSearchCV`` work) whose
fitted linear map is ``transform(X) == (X + bias_) @ kernel_``. :func:`parse_post` reads the
spec language (steps registered with :func:`register_step`), :func:`resolve_post` decides once
whether a value is a saved file or a chain, :meth:`AffineMap.from_pipeline` folds a fitted
pipeline into one map and :func:`save_transform` writes it to safetensors / npz / FAISS.

This package imports only numpy, scipy, scikit-learn, safetensors and (lazily) faiss, plus
``embedkit.errors``, ``embedkit.provenance`` and ``embedkit.io``; its public names load on first
use (:func:`~embedkit.lazy_exports`), so that a run without postprocessors imports no
scikit-learn (:class:`~embedkit.postprocess.options.PostOptions` is light).

>>> from embedkit.postprocess import AffineMap, parse_post
>>> import numpy as np
>>> X = np.random.default_rng(0).normal(size=(100, 8))
>>> p = parse_post("whiten:k=4,norm").fit(X)
>>> p.transform(X).shape, AffineMap.from_pipeline(p)
((100, 4), AffineMap(d=8, k=4, normalize=True))
"""

from typing import TYPE_CHECKING

from embedkit import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from embedkit.postprocess._base import (
        InvalidPostParameterError,
        LinearStep,
        PostprocessError,
        RankDeficientWarning,
        check_params,
    )
    from embedkit.postprocess.affine import AffineMap
    from embedkit.postprocess.checks import check_chain_files
    from embedkit.postprocess.family import WhiteningFamily, score_grid
    from embedkit.postprocess.files import (
        CompatibilityWarning,
        FixedTransform,
        TransformFile,
        check_compatible,
        load_faiss_transform,
        load_transform,
        save_faiss_transform,
        save_transform,
    )
    from embedkit.postprocess.moments import RunningMoments
    from embedkit.postprocess.projection import PCA, Normalize, RandomProjection, Truncate
    from embedkit.postprocess.quantize import (
        BinaryQuantizer,
        ProductQuantizer,
        ScalarQuantizer,
        bytes_per_vector,
        quantizer_of,
        save_quantized,
    )
    from embedkit.postprocess.spec import (
        Key,
        describe_post,
        parse_post,
        pipeline_learns,
        random_seeds,
        register_step,
        resolve_post,
        step_names,
        unregister_step,
    )
    from embedkit.postprocess.whitening import Whitening

_LAZY = {
    "InvalidPostParameterError": "embedkit.postprocess._base",
    "LinearStep": "embedkit.postprocess._base",
    "PostprocessError": "embedkit.postprocess._base",
    "RankDeficientWarning": "embedkit.postprocess._base",
    "check_params": "embedkit.postprocess._base",
    "AffineMap": "embedkit.postprocess.affine",
    "check_chain_files": "embedkit.postprocess.checks",
    "WhiteningFamily": "embedkit.postprocess.family",
    "score_grid": "embedkit.postprocess.family",
    "CompatibilityWarning": "embedkit.postprocess.files",
    "FixedTransform": "embedkit.postprocess.files",
    "TransformFile": "embedkit.postprocess.files",
    "check_compatible": "embedkit.postprocess.files",
    "load_faiss_transform": "embedkit.postprocess.files",
    "load_transform": "embedkit.postprocess.files",
    "save_faiss_transform": "embedkit.postprocess.files",
    "save_transform": "embedkit.postprocess.files",
    "RunningMoments": "embedkit.postprocess.moments",
    "PCA": "embedkit.postprocess.projection",
    "Normalize": "embedkit.postprocess.projection",
    "RandomProjection": "embedkit.postprocess.projection",
    "Truncate": "embedkit.postprocess.projection",
    "BinaryQuantizer": "embedkit.postprocess.quantize",
    "ProductQuantizer": "embedkit.postprocess.quantize",
    "ScalarQuantizer": "embedkit.postprocess.quantize",
    "bytes_per_vector": "embedkit.postprocess.quantize",
    "quantizer_of": "embedkit.postprocess.quantize",
    "save_quantized": "embedkit.postprocess.quantize",
    "Key": "embedkit.postprocess.spec",
    "describe_post": "embedkit.postprocess.spec",
    "parse_post": "embedkit.postprocess.spec",
    "pipeline_learns": "embedkit.postprocess.spec",
    "random_seeds": "embedkit.postprocess.spec",
    "register_step": "embedkit.postprocess.spec",
    "resolve_post": "embedkit.postprocess.spec",
    "step_names": "embedkit.postprocess.spec",
    "unregister_step": "embedkit.postprocess.spec",
    "Whitening": "embedkit.postprocess.whitening",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = [
    "AffineMap",
    "BinaryQuantizer",
    "CompatibilityWarning",
    "FixedTransform",
    "InvalidPostParameterError",
    "Key",
    "LinearStep",
    "Normalize",
    "PCA",
    "PostprocessError",
    "RandomProjection",
    "RankDeficientWarning",
    "RunningMoments",
    "ProductQuantizer",
    "ScalarQuantizer",
    "TransformFile",
    "Truncate",
    "Whitening",
    "WhiteningFamily",
    "bytes_per_vector",
    "check_chain_files",
    "check_compatible",
    "check_params",
    "describe_post",
    "load_faiss_transform",
    "load_transform",
    "parse_post",
    "pipeline_learns",
    "quantizer_of",
    "random_seeds",
    "register_step",
    "resolve_post",
    "save_faiss_transform",
    "save_quantized",
    "save_transform",
    "score_grid",
    "step_names",
    "unregister_step",
]
