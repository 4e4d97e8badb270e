"""Post-processing of sentence embeddings: whitening, PCA, random projection, normalisation.

Every step is a scikit-learn transformer (``clone``, ``Pipeline``, ``GridSearchCV`` work) whose
fitted linear map is ``transform(X) == (X + bias_) @ kernel_``. :func:`parse_post` reads the
CLI's ``--post`` spec, :func:`affine_of` folds a fitted pipeline into one map and
:func:`save_transform` writes it to safetensors / npz (or FAISS with save_faiss_transform).

>>> import numpy as np
>>> X = np.random.default_rng(0).normal(size=(100, 8))
>>> p = parse_post("whiten:k=4,norm").fit(X)
>>> p.transform(X).shape
(100, 4)
"""

from embedkit.postprocess.chain import STEP_NAMES, affine_of, describe_post, parse_post
from embedkit.postprocess.export import (
    CompatibilityWarning,
    FixedTransform,
    TransformFile,
    check_compatible,
    load_faiss_transform,
    load_transform,
    save_faiss_transform,
    save_transform,
)
from embedkit.postprocess.projection import PCA, Normalize, RandomProjection
from embedkit.postprocess.whitening import PostprocessError, RankDeficientWarning, Whitening

__all__ = [
    "Whitening",
    "PCA",
    "RandomProjection",
    "Normalize",
    "FixedTransform",
    "PostprocessError",
    "RankDeficientWarning",
    "CompatibilityWarning",
    "parse_post",
    "describe_post",
    "affine_of",
    "STEP_NAMES",
    "TransformFile",
    "save_transform",
    "load_transform",
    "check_compatible",
    "save_faiss_transform",
    "load_faiss_transform",
]
