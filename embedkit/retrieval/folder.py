"""Index folders end to end: texts in, encoder + postprocessor + FAISS, hits out.

An index folder holds what :class:`~embedkit.retrieval.index.EmbeddingIndex` saves --
``index.faiss``, ``texts.jsonl``, ``index.json`` -- and, when built with a postprocessor,
``post.safetensors``: the fitted map ``y = (x + bias) @ kernel`` that is also baked into
``index.faiss`` (exported for other tools; its sha256 is checked on load like the other files).
``index.json``'s ``recipe`` (:class:`~embedkit.retrieval.recipe.Recipe`) says how queries must
be encoded; :func:`add_to_index` and :class:`IndexSearcher` rebuild the encoder from it.

Every function takes the encoder as a ready
:class:`~embedkit.encoders.SentenceEncoder` or an :class:`~embedkit.encoders.EncoderConfig`.
For an existing folder a config only says how to run (device, batch size, cache, progress):
the model, dtype and casing come from the recipe.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedkit.encoders import EncoderConfig, Pooling, SentenceEncoder, as_encoder
from embedkit.encoders.models import is_local, model_identity, resolve_model_path
from embedkit.errors import ConfigError
from embedkit.io.atomic import LOCK_TIMEOUT, folder_lock
from embedkit.io.textfile import read_lines
from embedkit.postprocess import save_transform
from embedkit.provenance import sha256_file, sha256_text
from embedkit.retrieval.checks import check_index_settings
from embedkit.retrieval.faiss_ops import check_metric, metric_for_similarity
from embedkit.retrieval.index import EmbeddingIndex
from embedkit.retrieval.persistence import META_FILE
from embedkit.retrieval.post import FitData, IndexPost, is_none, prepare_post, same_post
from embedkit.retrieval.recipe import Recipe, RecipeConflict, RecipeConflictError

__all__ = ["POST_FILE", "IndexSearcher", "add_to_index", "build_index", "search"]

logger = logging.getLogger(__name__)

POST_FILE = "post.safetensors"
#: from this many texts the FAISS adding shows a progress bar on a terminal
PROGRESS_MIN = 2000

EncoderArg = SentenceEncoder | EncoderConfig


# --------------------------------------------------------------------------------------------
# build


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or (
            any(out_dir.iterdir()) and not (out_dir / "index.json").is_file())):
        raise ConfigError(f"{out_dir} exists and is not an index folder; the output folder is "
                          "replaced whole, so give a new path or an existing index folder")


def _unique(texts: list[str], ids: Sequence[str | None] | None
            ) -> tuple[list[str], list[str | None] | None]:
    """Each text once (its first occurrence and that one's id)."""
    if ids is not None and len(ids) != len(texts):
        raise ConfigError(f"got {len(texts)} texts but {len(ids)} ids", param="ids")
    first: dict[str, int] = {}
    for i, t in enumerate(texts):
        first.setdefault(t, i)
    keep = list(first.values())
    return [texts[i] for i in keep], None if ids is None else [ids[i] for i in keep]


def _fit_data(fit_on: str, encoder: SentenceEncoder, pooling: Pooling, max_length: int,
              corpus: list[str], corpus_vectors: Callable[[], np.ndarray]) -> FitData:
    """What a chain is fitted on: the corpus (its vectors) or a file of sentences."""
    def fit_data() -> tuple[np.ndarray, dict[str, Any]]:
        if fit_on == "corpus":
            return corpus_vectors(), {"on": "corpus", "n_sentences": len(corpus),
                                         "sha256": sha256_text("\n".join(corpus))}
        path = Path(fit_on)
        if not path.is_file():
            raise ConfigError(f"fit_on {fit_on!r} is neither 'corpus' nor an existing file",
                              param="fit_on")
        sents = list(dict.fromkeys(t for t in read_lines(path, "fit") if t.strip()))
        x = encoder.encode(sents, pooling, max_length=max_length)
        return x, {"on": f"file:{path.resolve()}", "n_sentences": len(sents),
                   "sha256": sha256_text("\n".join(sents))}

    return fit_data


def _make_recipe(encoder: SentenceEncoder, pooling: Pooling, max_length: int,
                 post: IndexPost | None, corpus: dict[str, Any],
                 query_prompt: str | None = None) -> Recipe:
    d = encoder.describe()
    prompt = str(d.get("prompt") or "")
    return Recipe(
        model=encoder.name, model_path=d.get("path", getattr(encoder, "path", None)),
        model_identity=str(d.get("identity") or encoder.identity), pooling=str(pooling),
        max_length=int(max_length), dtype=str(d.get("dtype", "float32")),
        lowercase=bool(d.get("lowercase", False)), backend=str(d.get("backend", "torch")),
        quantize=str(d.get("quantize", "none")), prompt=prompt,
        query_prompt=prompt if query_prompt is None else query_prompt,
        post=post.spec if post else None, post_file=POST_FILE if post else None,
        post_sources=post.sources if post else (), fit=post.fit if post else None,
        corpus=(corpus,))


def _post_metadata(post: IndexPost, recipe: Recipe) -> dict[str, Any]:
    fit = post.fit or {}
    return {"model": recipe.model_identity, "model_identity": recipe.model_identity,
            "model_name": recipe.model, "pooling": recipe.pooling,
            "max_length": recipe.max_length, "spec": post.spec, "normalize": post.map.normalize,
            "fit_on": fit.get("on"), "n_samples": fit.get("n_sentences"),
            "fit_data_sha256": fit.get("sha256")}


def _save(index: EmbeddingIndex, out_dir: Path, post: IndexPost | None, recipe: Recipe,
          lock_timeout: float | None) -> None:
    """Save the folder; with a post-processor, its map as ``post.safetensors`` too."""
    if post is None:
        index.save(out_dir, lock_timeout=lock_timeout)
        return
    # made in the system's temporary folder (a kill leaves nothing beside the index), then
    # copied into the new folder with the index's files
    with tempfile.TemporaryDirectory(prefix="embedkit-post-") as tmp:
        path = Path(tmp) / POST_FILE
        save_transform(path, post.map, _post_metadata(post, recipe))
        if "vectors" in index.recipe:  # hook: a quantised index's codes and search defaults
            recipe = dataclasses.replace(recipe, search_defaults=index.recipe.get(
                "search_defaults"), extra={**recipe.extra, "vectors": index.recipe["vectors"]})
        index.recipe = dataclasses.replace(recipe, post_sha256=sha256_file(path)).to_dict()
        index.save(out_dir, extra_files={POST_FILE: path}, lock_timeout=lock_timeout)


def _show_progress(progress: bool | None, n: int) -> bool:
    return bool(progress if progress is not None else n >= PROGRESS_MIN and sys.stderr.isatty())


def build_index(
    out_dir: str | os.PathLike,
    texts: Sequence[str],
    encoder: EncoderArg,
    *,
    pooling: str | None = None,
    post: str | None = None,
    ids: Sequence[str | None] | None = None,
    corpus_info: dict[str, Any] | None = None,
    factory: str = "Flat",
    metric: str | None = None,
    max_length: int = 64,
    fit_on: str = "corpus",
    train_size: int | None = None,
    seed: int = 0,
    force: bool = False,
    progress: bool | None = None,
    lock_timeout: float | None = LOCK_TIMEOUT,
    query_prompt: str | None = None,
    index_codes: Any = None,
) -> EmbeddingIndex:
    """Encode ``texts``, fit/check the postprocessor, build, save to ``out_dir``; the index.
    ``index_codes``: an :class:`~embedkit.retrieval.budget.IndexCodes` (quantised codes, or a
    budget choosing the index: the choice and why kept in the recipe as ``index_choice``).
    The encoder's prompt is the passages' one; ``query_prompt`` (default: the same) is stored
    in the recipe for searches.

    ``post`` is a chain (fitted on ``fit_on``: "corpus" or a file of sentences) or a saved
    transform file (checked against the encoder before anything is encoded; ``force`` uses one
    fitted for another model or pooling). Duplicate texts are indexed once (first occurrence
    and its id). ``progress`` shows FAISS's adding (None: for large corpora on a terminal).
    An existing index folder at ``out_dir`` is replaced whole, under its lock (another process
    writing it is waited for up to ``lock_timeout`` seconds). ``metric`` None: the one the
    model folder's declared similarity means (dot -> ip, euclidean -> l2), else cosine.
    """
    if metric is not None:
        check_metric(metric)
    if int(max_length) < 3:
        raise ConfigError("max_length must be at least 3 ([CLS], one token, [SEP])",
                          param="max_length")
    enc = as_encoder(encoder)
    metric = metric or metric_for_similarity(str(enc.describe().get("similarity") or "cosine"))
    pool = Pooling(pooling or enc.default_pooling)
    out = Path(out_dir)
    _check_out_dir(out)
    check_index_settings([factory], post, dim=int(enc.dim), metric=metric)  # before encoding
    from embedkit.retrieval.budget import IndexCodes, matrix_sampler  # hook: quantised codes
    (codes := index_codes or IndexCodes()).check(factory)
    texts = list(texts)
    uniq, uniq_ids = _unique(texts, ids)
    encoded: dict[str, np.ndarray] = {}

    def corpus_vectors() -> np.ndarray:
        if "x" not in encoded:
            logger.info("encoding %d texts with %s (%s, max length %d)", len(uniq), enc.name,
                        pool, int(max_length))
            encoded["x"] = enc.encode(uniq, pool, max_length=int(max_length))
        return encoded["x"]

    # a transform file is checked before any encoding; a chain is fitted when it needs to be
    fitted = prepare_post(post, encoder=enc, pooling=pool, dim=int(enc.dim), metric=metric,
                          force=force, fit_data=_fit_data(fit_on, enc, pool, int(max_length),
                                                          uniq, corpus_vectors))
    vectors = corpus_vectors()
    recipe = _make_recipe(enc, pool, int(max_length), fitted, {
        **(corpus_info or {"source": "python"}), "n_texts": len(texts), "n_indexed": len(uniq)},
        query_prompt)
    factory, codes, chosen = codes.choose(  # hook: index choice under a budget
        matrix_sampler(vectors), len(uniq), metric=metric, seed=seed, factory=factory,
        transform=fitted.map if fitted else None)
    recipe = dataclasses.replace(recipe, extra={**recipe.extra, **chosen})
    logger.info("building FAISS %r (%s; training if it needs it, then adding) over %d vectors%s",
                factory, metric, len(uniq),
                f", post {fitted.spec} -> {fitted.map.k} dims" if fitted else "")
    index = EmbeddingIndex.build(
        vectors, uniq, factory=factory, metric=metric, transform=fitted.map if fitted else None,
        ids=uniq_ids, recipe=recipe, train_size=train_size, seed=seed,
        progress=_show_progress(progress, len(uniq)), **codes.build_kwargs())
    _save(index, out, fitted, recipe, lock_timeout)
    return index


# --------------------------------------------------------------------------------------------
# the encoder of an existing folder


def load_index_folder(index_dir: str | os.PathLike) -> tuple[EmbeddingIndex, Recipe]:
    """The index of a folder made by :func:`build_index` and its typed recipe."""
    index = EmbeddingIndex.load(index_dir)
    recipe = Recipe.from_dict(index.recipe, where=str(Path(index_dir) / META_FILE))
    if recipe.post_file and recipe.post_file not in index.extra_files:
        raise ConfigError(f"{index_dir}: the recipe names {recipe.post_file} but index.json "
                          "records no checksum for it; rebuild the index")
    return index, recipe


def _identity_check(encoder: SentenceEncoder, recipe: Recipe, model: str, force: bool) -> None:
    identity = str(encoder.describe().get("identity") or encoder.identity)
    if identity == recipe.model_identity:
        return
    msg = (f"model {model} is now {identity} but the index was built with "
           f"{recipe.model_identity} (its weights changed)")
    if not force:
        raise ConfigError(msg + "; rebuild the index or use force=True", param="force")
    warnings.warn(msg + " (continuing: forced)", stacklevel=3)


def recipe_encoder(recipe: Recipe, encoder: EncoderArg | None = None, *,
                   model: str | None = None, pooling: str | None = None,
                   force: bool = False, side: str = "passage") -> SentenceEncoder:
    """The encoder the recipe describes, its identity checked (``force``: only warned).

    A ready encoder is used as it is; a config (default: ``EncoderConfig()``) gives the run
    settings, the recipe the model (``model`` overrides it), dtype, casing, backend,
    quantisation and the prompt of ``side`` (``query`` for searches, ``passage`` to add texts).
    """
    if isinstance(encoder, SentenceEncoder) and not isinstance(encoder, EncoderConfig):
        _identity_check(encoder, recipe, model or recipe.model, force)
        return encoder
    if model is None:
        path = recipe.model_path
        model = path if path and Path(path).is_dir() else recipe.model
    config = dataclasses.replace(encoder or EncoderConfig(), model=model, dtype=recipe.dtype,
                                 lowercase=recipe.lowercase, backend=recipe.backend,
                                 quantize=recipe.quantize,
                                 prompt=recipe.query_prompt if side == "query" else recipe.prompt,
                                 pooling=pooling or recipe.pooling)
    built = config.build()
    _identity_check(built, recipe, model, force)
    return built


# --------------------------------------------------------------------------------------------
# add


def _new_rows(index: EmbeddingIndex, texts: list[str]) -> list[int]:
    """Rows of texts not yet indexed (each new text once)."""
    new: list[int] = []
    batch: set[str] = set()
    for i, t in enumerate(texts):
        if index.position(t) is None and t not in batch:
            batch.add(t)
            new.append(i)
    return new


def add_to_index(
    index_dir: str | os.PathLike,
    texts: Sequence[str],
    encoder: EncoderArg | None = None,
    *,
    ids: Sequence[str | None] | None = None,
    corpus_info: dict[str, Any] | None = None,
    force: bool = False,
    lock_timeout: float | None = LOCK_TIMEOUT,
) -> dict[str, int]:
    """Encode with the index's recipe and append texts not yet indexed; saves the folder.

    The folder's lock is held from reading it to saving it, so two adds at once both land (the
    second waits up to ``lock_timeout`` seconds for the first, then
    :class:`~embedkit.io.atomic.FolderLockedError`). Returns ``{"added", "skipped", "ntotal"}``
    (skipped: already indexed or repeated).
    """
    index_dir = Path(index_dir)
    texts = list(texts)
    if ids is not None and len(ids) != len(texts):
        raise ConfigError(f"got {len(texts)} texts but {len(ids)} ids", param="ids")
    if not index_dir.parent.is_dir():  # nothing to lock, nothing to put back: say it is missing
        load_index_folder(index_dir)
    with folder_lock(index_dir, timeout=lock_timeout, what="index folder"):
        index, recipe = load_index_folder(index_dir)
        new = _new_rows(index, texts)
        result = {"added": len(new), "skipped": len(texts) - len(new), "ntotal": index.ntotal}
        if not new:
            return result
        enc = recipe_encoder(recipe, encoder, force=force)
        new_texts = [texts[i] for i in new]
        vectors = enc.encode(new_texts, recipe.pooling, max_length=recipe.max_length)
        added = index.add(vectors, new_texts, None if ids is None else [ids[i] for i in new])
        index.recipe = recipe.with_corpus({**(corpus_info or {"source": "python"}),
                                           "n_texts": len(texts), "n_indexed": added}).to_dict()
        extra = {name: (index_dir / name).read_bytes() for name in index.extra_files}
        index.save(index_dir, extra_files=extra)
    result.update(added=added, skipped=len(texts) - added, ntotal=index.ntotal)
    return result


# --------------------------------------------------------------------------------------------
# search


def _same_model(value: str, recipe: Recipe) -> bool:
    if value in (recipe.model, recipe.model_path):
        return True
    path = resolve_model_path(value)
    if path == recipe.model_path:
        return True
    return is_local(path) and model_identity(path) == recipe.model_identity


def _requested(recipe: Recipe, model: str | None, pooling: str | None, post: str | None,
               max_length: int | None) -> dict[str, Any]:
    """The overrides as recipe values; one that names the recipe's own setting becomes it."""
    same_post_value = post is not None and same_post(
        post, recipe.post, post_sha256=recipe.post_sha256, sources=recipe.post_sources)
    return {
        "model": recipe.model if model is not None and _same_model(model, recipe) else model,
        "pooling": str(Pooling(pooling)) if pooling is not None else None,
        "max_length": int(max_length) if max_length is not None else None,
        "post": recipe.post if same_post_value else (
            None if post is None else "none" if is_none(post) else str(post)),
    }


def _settle_conflicts(conflicts: list[RecipeConflict], recipe: Recipe, force: bool) -> None:
    if not conflicts:
        return
    if not force:
        raise RecipeConflictError(conflicts)
    warnings.warn("; ".join(c.describe() for c in conflicts) + " (continuing: forced)",
                  stacklevel=3)
    if any(c.key == "post" for c in conflicts):
        warnings.warn("the postprocessor is baked into the index; its own "
                      f"({recipe.post or 'none'}) is used", stacklevel=3)


class IndexSearcher:
    """A loaded index folder and the encoder its recipe names; :meth:`search` texts.

    ``model``, ``pooling``, ``post`` and ``max_length`` are optional overrides: each one that
    differs from the recipe is refused (:class:`~embedkit.retrieval.recipe.RecipeConflictError`,
    whose ``conflicts`` list them) unless ``force``, which uses the given model / pooling /
    max length (the postprocessor is baked into the index and cannot change: the index's own
    is used). The model's identity is checked against the recipe too.
    """

    def __init__(
        self,
        index_dir: str | os.PathLike,
        encoder: EncoderArg | None = None,
        *,
        model: str | None = None,
        pooling: str | None = None,
        post: str | None = None,
        max_length: int | None = None,
        force: bool = False,
    ):
        self.index_dir = Path(index_dir)
        self.index, recipe = load_index_folder(self.index_dir)
        requested = _requested(recipe, model, pooling, post, max_length)
        self.conflicts = self.index.check_recipe(requested)
        _settle_conflicts(self.conflicts, recipe, force)
        self.pooling = requested["pooling"] or recipe.pooling
        self.max_length = requested["max_length"] or recipe.max_length
        self.encoder = recipe_encoder(recipe, encoder, model=model, pooling=self.pooling,
                                      force=force, side="query")

    @property
    def recipe(self) -> Recipe:
        """The recipe the index was built with."""
        return Recipe.from_dict(self.index.recipe, where=str(self.index_dir / META_FILE))

    def encode(self, queries: list[str]) -> np.ndarray:
        return self.encoder.encode(queries, self.pooling, max_length=self.max_length)

    def search(self, queries: str | Sequence[str], k: int = 10, *, nprobe: int | None = None,
               ef_search: int | None = None) -> list[dict[str, Any]]:
        """``[{"query", "hits": [{"id", "text", "score"(, "user_id")}]}]``, one per query.

        A blank query is refused (:class:`ConfigError`): it would still return the texts
        nearest to whatever [CLS] [SEP] encodes to.
        """
        queries = [queries] if isinstance(queries, str) else list(queries)
        blank = [i for i, q in enumerate(queries, 1) if not isinstance(q, str) or not q.strip()]
        if blank:
            raise ConfigError(f"query {blank[0]} of {len(queries)} is empty or not a text; "
                              "give text to search for")
        hits = self.index.search_texts(queries, self.encode, k, nprobe=nprobe,
                                       ef_search=ef_search)
        out = []
        for q, row in zip(queries, hits, strict=True):
            items = []
            for h in row:
                d: dict[str, Any] = {"id": h.id, "text": h.text, "score": h.score}
                if h.user_id is not None:
                    d["user_id"] = h.user_id
                items.append(d)
            out.append({"query": q, "hits": items})
        return out


def search(index_dir: str | os.PathLike, queries: str | Sequence[str], k: int = 10, *,
           encoder: EncoderArg | None = None, nprobe: int | None = None,
           ef_search: int | None = None, **overrides: Any) -> list[dict[str, Any]]:
    """Search an index folder with its own recipe; ``overrides`` (model, pooling, post,
    max_length, force) as :class:`IndexSearcher` takes them.

    Returns one ``{"query": ..., "hits": [{"id", "text", "score"}, ...]}`` per query (hits best
    first; ``score`` is the cosine / inner product, or the squared L2 distance for ``l2``).
    """
    return IndexSearcher(index_dir, encoder, **overrides).search(queries, k, nprobe=nprobe,
                                                                 ef_search=ef_search)
