"""Index folders end to end: texts (or an encode folder's vectors) in, encoder + postprocessor +
FAISS, hits out. :func:`build_index` is the one builder, over a vector source.

An index folder holds what :class:`~embedkit.retrieval.index.EmbeddingIndex` saves --
``index.faiss``, ``texts.jsonl``, ``index.json`` -- and, when built with a postprocessor,
``post.safetensors``: the fitted map ``y = (x + bias) @ kernel`` that is also baked into
``index.faiss`` (exported for other tools; its sha256 is checked on load like the other files).
``index.json``'s ``recipe`` (:class:`~embedkit.store.recipe.Recipe`) says how queries must
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
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from embedkit.aliases import StrPath
from embedkit.encoders import EncoderConfig, Pooling, SentenceEncoder, as_encoder
from embedkit.encoders.models import is_local, model_identity, resolve_model_path
from embedkit.errors import ConfigError
from embedkit.io.atomic import LOCK_TIMEOUT, folder_lock
from embedkit.io.textfile import read_lines
from embedkit.postprocess.spec import PostOptions
from embedkit.provenance import sha256_text
from embedkit.retrieval.budget import IndexCodes
from embedkit.retrieval.checks import check_index_settings
from embedkit.retrieval.faiss_ops import (
    as_matrix,
    check_metric,
    make_faiss_index,
    metric_for_similarity,
)
from embedkit.retrieval.index import EmbeddingIndex, as_affine_map
from embedkit.retrieval.persistence import IVFDATA_FILE, META_FILE
from embedkit.retrieval.quantized import make_index
from embedkit.retrieval.shards import (
    ArraySource,
    Prepared,
    check_on_disk,
    dedupe_rows,
    fill_index,
    folder_source,
)
from embedkit.store.encode_folder import EncodeFolder, draw_rows, write_post_file
from embedkit.store.fitted import (
    FitData,
    is_none,
    post_output_dim,
    prepare_post,
    same_post,
)
from embedkit.store.recipe import (
    POST_FILE,
    Recipe,
    RecipeConflict,
    RecipeConflictError,
    make_recipe,
)

__all__ = ["POST_FILE", "IndexSearcher", "add_to_index", "build_index", "search"]

logger = logging.getLogger(__name__)

#: from this many texts the FAISS adding shows a progress bar on a terminal
PROGRESS_MIN = 2000

_EncoderArg = SentenceEncoder | EncoderConfig


# --------------------------------------------------------------------------------------------
# build: one builder over a vector source (texts encoded here, or an encode folder's shards)


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or (
            any(out_dir.iterdir()) and not (out_dir / "index.json").is_file())):
        raise ConfigError(f"{out_dir} exists and is not an index folder; the output folder is "
                          "replaced whole, so give a new path or an existing index folder",
                          param="out_dir")


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


@dataclass
class _TextOptions:
    pooling: str | None
    post: str | None
    metric: str | None
    max_length: int
    fitting: PostOptions  # what the post is fitted on, and force
    query_prompt: str | None
    factory: str
    on_disk: bool


def _text_source(texts: Sequence[str], ids: Sequence[str | None] | None,
                 encoder: _EncoderArg | None, corpus_info: dict[str, Any] | None,
                 o: _TextOptions) -> Prepared:
    """Texts encoded in memory (each once), the post-processor checked or fitted first."""
    if o.metric is not None:
        check_metric(o.metric)
    if int(o.max_length) < 3:
        raise ConfigError("max_length must be at least 3 ([CLS], one token, [SEP])",
                          param="max_length")
    if encoder is None:
        raise ConfigError("texts need an encoder to encode them", param="encoder")
    enc = as_encoder(encoder)
    metric = o.metric or metric_for_similarity(str(enc.describe().get("similarity") or "cosine"))
    pool, max_length = Pooling(o.pooling or enc.default_pooling), int(o.max_length)
    check_index_settings([o.factory], o.post, dim=int(enc.dim), metric=metric)  # before encoding
    if o.on_disk:
        check_on_disk(make_faiss_index(post_output_dim(o.post, int(enc.dim)), o.factory, metric,
                                       None), o.factory)
    texts = list(texts)
    _, uniq, uniq_ids = dedupe_rows(texts, ids, ())
    encoded: dict[str, np.ndarray] = {}

    def corpus_vectors() -> np.ndarray:
        if "x" not in encoded:
            logger.info("encoding %d texts with %s (%s, max length %d)", len(uniq), enc.name,
                        pool, max_length)
            encoded["x"] = enc.encode(uniq, pool, max_length=max_length)
        return encoded["x"]

    # a transform file is checked before any encoding; a chain is fitted when it needs to be
    fitted = prepare_post(o.post, encoder=enc, pooling=pool, dim=int(enc.dim), metric=metric,
                          force=o.fitting.force, fit_data=_fit_data(o.fitting.fit_on, enc, pool, max_length,
                                                            uniq, corpus_vectors))
    vectors = as_matrix(corpus_vectors())
    recipe = make_recipe(enc, pool, max_length, fitted, {
        **(corpus_info or {"source": "python"}), "n_texts": len(texts)}, o.query_prompt)
    return Prepared(ArraySource(vectors, uniq, uniq_ids), recipe, metric,
                     as_affine_map(fitted.map, vectors.shape[1], metric) if fitted else None,
                     post=fitted)


def build_index(
    out_dir: StrPath,
    source: Sequence[str] | EncodeFolder | os.PathLike,
    encoder: _EncoderArg | None = None,
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
    on_disk: bool = False,
    force: bool = False,
    progress: bool | None = None,
    lock_timeout: float | None = LOCK_TIMEOUT,
    query_prompt: str | None = None,
    index_codes: IndexCodes | None = None,
) -> EmbeddingIndex:
    """Build an index folder at ``out_dir`` from a vector source; the index as loaded back.

    ``source`` is texts, encoded here with ``encoder`` (``pooling``, ``max_length``; its prompt
    is the passages', ``query_prompt`` (default: the same) is stored for searches; ``ids``
    their user ids, ``corpus_info`` the recipe's corpus entry), or an encode folder
    (:class:`~embedkit.store.encode_folder.EncodeFolder` or its ``Path``), whose manifest gives the
    recipe and whose shards' ids are the user ids. Either way it is one path: each text is
    indexed once (its first row), an index that needs training is trained on a seeded sample
    of the rows (``train_size``; default
    :func:`~embedkit.retrieval.faiss_ops.train_sample_size`), the rows are added a batch at a
    time (``on_disk``, IVF factories: into inverted lists kept in ``lists.ivfdata`` inside the
    folder, memory-mapped when searched), an IVF or HNSW index gets its default search setting
    (:mod:`embedkit.retrieval.tuning`), and the recipe is written.

    ``post`` is a chain (for texts: fitted on ``fit_on``, "corpus" or a file of sentences) or
    a saved transform file (checked against the model before anything is encoded, and for an
    encode folder against its vectors; ``force`` uses one fitted for other ones); an encode
    folder's own post-processor is baked in as it is. ``metric`` None: for texts the one the
    model folder's declared similarity means (dot -> ip, euclidean -> l2), else cosine.
    ``progress`` shows FAISS's adding of texts (None: for large corpora on a terminal). An
    existing index folder at ``out_dir`` is replaced whole, under its lock (another process
    writing it is waited for up to ``lock_timeout`` seconds). ``index_codes``
    (:class:`~embedkit.retrieval.budget.IndexCodes`): quantised codes and their rescoring, or
    a budget choosing factory and codes on a sample of the source (the choice and why kept in
    the recipe as ``index_choice``).
    """
    out = Path(out_dir)
    _check_out_dir(out)
    codes = index_codes or IndexCodes()
    codes.check(factory)  # before encoding
    if isinstance(source, (EncodeFolder, os.PathLike)):
        if encoder is not None:
            raise ConfigError("an encode folder holds vectors already; give no encoder",
                              param="encoder")
        prepared = folder_source(source, post=post, metric=metric, force=force)
    else:
        options = _TextOptions(pooling, post, metric, max_length,
                               PostOptions(fit_on=fit_on, force=force), query_prompt, factory,
                               on_disk)
        prepared = _text_source(source, ids, encoder, corpus_info, options)
        prepared.progress = _show_progress(progress, prepared.source.total_rows)
    return _write_index(out, prepared, codes, factory=factory, train_size=train_size,
                        seed=seed, on_disk=on_disk, lock_timeout=lock_timeout)


def _write_index(out: Path, prepared: Prepared, codes: IndexCodes, *, factory: str,
                 train_size: int | None, seed: int, on_disk: bool,
                 lock_timeout: float | None) -> EmbeddingIndex:
    """Choose (under a budget), train, fill and tune the index over the source, then save the
    folder with its recipe (and ``post.safetensors``)."""
    src, amap, metric = prepared.source, prepared.amap, prepared.metric
    factory, codes, chosen = codes.choose(
        lambda n, s: src.rows(draw_rows(src.total_rows, n, s)), src.total_rows, metric=metric,
        transform=amap, seed=seed, factory=factory)
    logger.info("building FAISS %r (%s; training if it needs it, then adding) over %d vectors%s",
                factory, metric, src.total_rows, f", post -> {amap.k} dims" if amap else "")
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    # blocks of on-disk lists beside the folder (the merged file is moved in); otherwise the
    # system's temporary folder (a kill leaves nothing beside the index)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.blocks.", dir=out.parent if (
            on_disk or codes.codes != "float") else None) as tmp:
        work = Path(tmp)
        index = make_index(src.dim, factory, metric, amap, store_dir=work,
                           **codes.build_kwargs())
        filled = fill_index(index, src, factory, metric, amap, train_size=train_size,
                            seed=seed, progress=prepared.progress,
                            on_disk=work if on_disk else None, lists_at=out / IVFDATA_FILE)
        corpus = {**prepared.recipe.corpus[0], "n_indexed": len(filled.texts)}
        settings = getattr(index, "settings", None)  # a quantised index's codes
        recipe = dataclasses.replace(prepared.recipe, corpus=(corpus,),
                                     search_defaults=filled.search_defaults, extra={
                                         **prepared.recipe.extra, **chosen, **(
                                             {"vectors": settings.to_dict()} if settings else {})})
        extra: dict[str, Path] = {} if filled.ivfdata is None else {IVFDATA_FILE: filled.ivfdata}
        if prepared.post_file is not None:
            extra[POST_FILE] = prepared.post_file
        if prepared.post is not None:
            recipe = write_post_file(work, prepared.post, recipe)
            extra[POST_FILE] = work / POST_FILE
        built = EmbeddingIndex(
            index, filled.texts, filled.user_ids, factory=getattr(index, "factory", factory),
            metric=metric, dim_in=src.dim, dim=amap.k if amap is not None else src.dim,
            recipe=recipe.to_dict(), build_seconds=filled.seconds,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            extra={"seed": int(seed), "train_size": filled.trained_on,
                   "transform": amap is not None, "on_disk": bool(on_disk),
                   **({"quantized": settings.to_dict()} if settings else {})})
        built.save(out, extra_files=extra, lock_timeout=lock_timeout)
        del index, built
    return EmbeddingIndex.load(out)


def _show_progress(progress: bool | None, n: int) -> bool:
    return bool(progress if progress is not None else n >= PROGRESS_MIN and sys.stderr.isatty())


# --------------------------------------------------------------------------------------------
# the encoder of an existing folder


def load_index_folder(index_dir: StrPath) -> tuple[EmbeddingIndex, Recipe]:
    """The index of a folder made by :func:`build_index` and its typed recipe."""
    index = EmbeddingIndex.load(index_dir)
    recipe = Recipe.from_dict(index.recipe, where=str(Path(index_dir) / META_FILE))
    if recipe.post_file and recipe.post_file not in index.extra_files:
        raise ConfigError(f"{index_dir}: the recipe names {recipe.post_file} but index.json "
                          "records no checksum for it; rebuild the index")
    return index, recipe


def _identity_check(encoder: SentenceEncoder, recipe: Recipe, model: str, force: bool) -> None:
    d = encoder.describe()
    identity = str(d.get("identity") or encoder.identity)
    calibration = recipe.calibration or {}
    built = calibration.get("digest")
    now = (d.get("calibration") or {}).get("digest") if built else None
    if identity == recipe.model_identity and now == built:
        return
    msg = (f"model {model} is now {identity} but the index was built with "
           f"{recipe.model_identity} (its weights changed)" if identity != recipe.model_identity
           else f"the index was built with int8-static calibrated on "
                f"{calibration.get('source')} (calibration={built}), this encoder's is "
                f"calibration={now}; give the calibration the index was built with")
    if not force:
        raise ConfigError(msg + "; rebuild the index or use force=True", param="force")
    warnings.warn(msg + " (continuing: forced)", stacklevel=3)


def _recipe_encoder(recipe: Recipe, encoder: _EncoderArg | None = None, *,
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
                                 calibration=(recipe.calibration or {}).get("given"),
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
    index_dir: StrPath,
    texts: Sequence[str],
    encoder: _EncoderArg | None = None,
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
        enc = _recipe_encoder(recipe, encoder, force=force)
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
    differs from the recipe is refused (:class:`~embedkit.store.recipe.RecipeConflictError`,
    whose ``conflicts`` list them) unless ``force``, which uses the given model / pooling /
    max length (the postprocessor is baked into the index and cannot change: the index's own
    is used). The model's identity is checked against the recipe too.
    """

    def __init__(
        self,
        index_dir: StrPath,
        encoder: _EncoderArg | None = None,
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
        self.encoder = _recipe_encoder(recipe, encoder, model=model, pooling=self.pooling,
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


def search(index_dir: StrPath, queries: str | Sequence[str], k: int = 10, *,
           encoder: _EncoderArg | None = None, nprobe: int | None = None,
           ef_search: int | None = None, **overrides: Any) -> list[dict[str, Any]]:
    """Search an index folder with its own recipe; ``overrides`` (model, pooling, post,
    max_length, force) as :class:`IndexSearcher` takes them.

    Returns one ``{"query": ..., "hits": [{"id", "text", "score"}, ...]}`` per query (hits best
    first; ``score`` is the cosine / inner product, or the squared L2 distance for ``l2``).
    """
    return IndexSearcher(index_dir, encoder, **overrides).search(queries, k, nprobe=nprobe,
                                                                 ef_search=ef_search)
