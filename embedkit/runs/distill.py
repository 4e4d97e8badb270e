"""A static (attention-free) encoder distilled from any embedkit encoder, by the model2vec method:
the teacher's pooled output for each vocabulary token alone, reduced by embedkit's own
post-processing chain (``pca:k=DIM`` by default, or any post chain such as
``whiten:k=256``), weighted by the token's estimated frequency, and written as a
sentence-transformers folder (``StaticEmbedding`` + ``Normalize``) that
``SentenceTransformer(folder)`` and embedkit (:class:`~embedkit.encoders.static.StaticEncoder`)
both load.

Why not the ``model2vec`` library: its ``distill`` extra pins ``transformers<5.4`` (this project
runs transformers 5.x), it loads the teacher itself from a hub name or transformers objects
(no ONNX / OpenVINO backend, no sentence-transformers folder's modules after the pooling, no
embedkit prompt or pooling), and it runs its own PCA. The method is small, so it is written
here over embedkit's encoder (:meth:`TokenizedEncoder._forward` and ``_finish``: the teacher's
forward pass, pooling and folder modules, on any backend) and embedkit's estimators.

What model2vec does and this does too: each token id ``t`` is run as ``[CLS] t [SEP]`` (the
tokenizer's own special tokens around it), mean-pooled (``last-avg``) by default over all three
positions as model2vec's ``mean`` is, whatever pooling the teacher declares (the choice is
recorded; ``pooling=`` takes another); special and ``[unused]`` tokens are left out (their rows stay zero,
so a sentence's direction ignores them); the reduced vectors are multiplied by the SIF weight
``a / (a + p(t))`` with ``p`` Zipf's law over the token's rank in the vocabulary's id order
(``a = 1e-4``), the weighting model2vec applies when no counts are given. The teacher's prompt,
if it has one, is not put before the tokens (the recipe records it).
"""

from __future__ import annotations

import copy
import logging
import re
import time
from pathlib import Path
from typing import Any, cast

import numpy as np

from embedkit import provenance
from embedkit.encoders.base import TokenizedEncoder, tokenize_ids
from embedkit.encoders.config import EncoderConfig
from embedkit.encoders.pooling import Pooling
from embedkit.encoders.protocol import SentenceEncoder
from embedkit.encoders.st_folder import write_static_folder
from embedkit.errors import ConfigError
from embedkit.io.atomic import atomic_dir

logger = logging.getLogger(__name__)

RECIPE_FILE = "embedkit_distill.json"
SIF_COEFFICIENT = 1e-4
_UNUSED = re.compile(r"^(\[unused\d+\]|<unused\d+>|\[unused_\d+\])$")


def vocabulary(tokenizer: Any) -> tuple[np.ndarray, int]:
    """The token ids distilled (sorted; special and unused tokens left out) and the number of
    rows the embedding needs (the largest id + 1)."""
    vocab = tokenizer.get_vocab()
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    ids = sorted(i for tok, i in vocab.items() if i not in special and not _UNUSED.match(tok))
    return np.asarray(ids, dtype=np.int64), max(vocab.values()) + 1


def _around(encoder: TokenizedEncoder) -> tuple[list[int], list[int]]:
    """The special tokens the teacher's tokenizer puts before and after a text."""
    empty = tokenize_ids(encoder.tokenizer, [""], 16, encoder.eos_id)[0]
    tok = encoder.tokenizer
    lead = {getattr(tok, "cls_token_id", None), getattr(tok, "bos_token_id", None)} - {None}
    n = 1 if empty and empty[0] in lead else 0
    return list(empty[:n]), list(empty[n:])


def token_vectors(encoder: TokenizedEncoder, ids: np.ndarray, pooling: Pooling,
                  batch_size: int) -> np.ndarray:
    """The teacher's pooled output of each token alone (``[CLS] t [SEP]``), ``(len(ids), d)``."""
    encoder.check_pooling(pooling)
    before, after = _around(encoder)
    out = np.empty((len(ids), encoder.dim), np.float32)
    for start in range(0, len(ids), batch_size):
        chunk = ids[start:start + batch_size]
        input_ids = np.array([[*before, int(t), *after] for t in chunk], dtype=np.int64)
        mask = np.ones_like(input_ids)
        pooled = encoder._finish(encoder._forward(input_ids, mask, [pooling]))
        out[start:start + len(chunk)] = pooled[str(pooling)]
    return out


def sif_weights(n: int, coefficient: float = SIF_COEFFICIENT) -> np.ndarray:
    """model2vec's weights without counts: Zipf's law over ranks 1..n, then SIF.

    >>> sif_weights(3).round(6).tolist()  # the most frequent token weighs least
    [0.000217, 0.000325, 0.000433]
    """
    inv_rank = 1.0 / np.arange(2, n + 2)
    p = inv_rank / inv_rank.sum()
    return coefficient / (coefficient + p)


def _teacher(config: EncoderConfig) -> TokenizedEncoder:
    enc = config.build_model()
    if not isinstance(enc, TokenizedEncoder):
        raise ConfigError(f"{config.model} is not a transformer model embedkit can run token by "
                          "token (a static model cannot be distilled again)", param="model")
    return enc


def _reduce(vectors: np.ndarray, dim: int, post: str | None) -> tuple[np.ndarray, str]:
    from embedkit.postprocess.checks import check_post_chain
    from embedkit.postprocess.spec import parse_post

    n, d = vectors.shape
    if dim > d or dim > n:
        raise ConfigError(f"dim {dim} is more than the teacher's {d} dimensions or its {n} "
                          f"distilled tokens; choose at most {min(n, d)}", param="dim")
    spec = post or f"pca:k={dim}"
    pipe = parse_post(spec)
    width = check_post_chain(pipe, d, n)
    if width is not None and width != dim:
        raise ConfigError(f"post {spec!r} gives {width} dimensions, not dim {dim}; make them "
                          "agree", param="post")
    reduced = np.asarray(pipe.fit_transform(vectors.astype(np.float64)), dtype=np.float32)
    if reduced.shape[1] != dim:
        raise ConfigError(f"post {spec!r} gives {reduced.shape[1]} dimensions, not dim {dim}; "
                          "make them agree", param="post")
    return reduced, spec


def distill(config: EncoderConfig, dim: int, out: str | Path, *, post: str | None = None,
            pooling: str | None = None, batch_size: int = 256,
            sif_coefficient: float | None = SIF_COEFFICIENT) -> dict[str, Any]:
    """Distil ``config``'s model into a StaticEmbedding folder at ``out`` (written atomically,
    replacing it whole) and return its recipe (also written as ``embedkit_distill.json``)."""
    if dim < 1:
        raise ConfigError(f"dim must be at least 1, not {dim}", param="dim")
    if sif_coefficient is not None and not 0 < sif_coefficient < 1:
        raise ConfigError(f"the SIF coefficient must be in (0, 1), not {sif_coefficient}",
                          param="sif")
    t0 = time.perf_counter()
    teacher = _teacher(config)
    pool = Pooling(pooling or "last-avg")  # model2vec's mean, whatever the teacher declares
    ids, rows = vocabulary(teacher.tokenizer)
    if teacher.dim < dim:
        raise ConfigError(f"dim {dim} is more than the teacher's {teacher.dim} dimensions",
                          param="dim")
    vectors = token_vectors(teacher, ids, pool, batch_size)
    encode_s = time.perf_counter() - t0
    reduced, spec = _reduce(vectors, dim, post)
    if sif_coefficient is not None:
        reduced *= sif_weights(len(ids), sif_coefficient)[:, None].astype(np.float32)
    weights = np.zeros((rows, dim), np.float32)
    weights[ids] = reduced
    recipe = {"method": "model2vec (token outputs, embedkit post-processing, SIF weights)",
              "teacher": config.model, "teacher_identity": cast(SentenceEncoder, teacher).identity,
              "teacher_dim": teacher.dim, "pooling": str(pool), "post": spec, "dim": dim,
              "vocab_size": int(len(ids)), "embedding_rows": rows,
              "skipped_tokens": int(rows - len(ids)),
              "weighting": None if sif_coefficient is None else
              {"kind": "sif-zipf-rank", "coefficient": sif_coefficient},
              "normalize": True, "prompt": teacher.prompt or None,
              "encode_seconds": round(encode_s, 3),
              "versions": provenance.library_versions()}
    card = _card(recipe)
    tokenizer = copy.deepcopy(teacher.tokenizer.backend_tokenizer)
    tokenizer.no_truncation()  # the teacher's calls leave their truncation on its tokenizer,
    tokenizer.no_padding()     # and sentence-transformers keeps a saved one
    with atomic_dir(out) as tmp:
        write_static_folder(tmp, tokenizer, weights, normalize=True,
                            json_files={RECIPE_FILE: recipe}, card=card)
    logger.info("distilled %s into %s (%d tokens x %d)", config.model, out, len(ids), dim)
    return {**recipe, "out": str(out), "seconds": round(time.perf_counter() - t0, 3)}


def _card(r: dict[str, Any]) -> str:
    return (f"# Static encoder distilled from {r['teacher']}\n\n"
            "Made by `embedkit distill` (the model2vec method): the teacher's "
            f"`{r['pooling']}` output of each of {r['vocab_size']} vocabulary tokens alone, "
            f"reduced by `{r['post']}` to {r['dim']} dimensions, weighted by SIF over Zipf "
            "ranks. Load it with `SentenceTransformer(folder)`, or give the folder to embedkit "
            f"as the model.\n\nTeacher identity: `{r['teacher_identity']}`.\n")
