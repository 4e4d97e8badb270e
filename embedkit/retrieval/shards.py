"""Encode folders (what ``embedkit encode`` writes) and FAISS indexes built from them.

The folder's format (shards, the sealed ``manifest.json``, their checks) is
:mod:`embedkit.retrieval.encode_folder`'s; its names are importable from here too.

:class:`EncodeFolder` reads a folder (checking its manifest and every shard) and streams
its vectors a shard at a time; :func:`build_index_from_shards` trains a FAISS index on a seeded
sample, adds the shards in bounded memory (optionally into on-disk inverted lists, as faiss's
``contrib.ondisk.merge_ondisk`` does) and writes an index folder that ``search``, ``add`` and
``eval`` read as one built from text.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from embedkit.encoders import Pooling, SentenceEncoder
from embedkit.errors import ConfigError
from embedkit.postprocess import AffineMap, load_transform, save_transform
from embedkit.provenance import sha256_file
from embedkit.retrieval.encode_folder import (
    MANIFEST,
    MANIFEST_FORMAT,
    VECTOR_DTYPES,
    folder_key,
    read_manifest,
    read_shard,
    shard_name,
    shard_problem,
    write_manifest,
    write_shard,
)
from embedkit.retrieval.faiss_ops import (
    check_metric,
    faiss,
    ivf_nlist,
    make_faiss_index,
    train_index,
    tunable_parameters,
)
from embedkit.retrieval.folder import POST_FILE, _make_recipe, _post_metadata
from embedkit.retrieval.index import EmbeddingIndex
from embedkit.retrieval.persistence import IVFDATA_FILE
from embedkit.retrieval.post import IndexPost
from embedkit.retrieval.recipe import Recipe
from embedkit.retrieval.tuning import TUNE_QUERIES, RecallProbe, sample_rows

__all__ = ["IVFDATA_FILE", "MANIFEST", "MANIFEST_FORMAT", "VECTOR_DTYPES", "EncodeFolder",
           "build_index_from_shards", "encode_recipe", "read_manifest", "read_shard",
           "shard_name", "shard_problem", "train_sample_size", "write_manifest",
           "write_post_file", "write_shard"]

logger = logging.getLogger(__name__)

#: faiss k-means: it warns below 39 points per centroid and subsamples above 256
MIN_POINTS_PER_CENTROID = 39
MAX_POINTS_PER_CENTROID = 256
#: training vectors for non-IVF trained factories (PQ/SQ codebooks, PCA): ~39 * 256
MIN_TRAIN = 10000


def encode_recipe(encoder: SentenceEncoder, pooling: str, max_length: int,
                  post: IndexPost | None, corpus: dict[str, Any]) -> Recipe:
    """The recipe an index built from these vectors records (the same code as
    :func:`~embedkit.retrieval.folder.build_index`)."""
    return _make_recipe(encoder, Pooling(pooling), int(max_length), post, corpus)


def write_post_file(folder: Path, post: IndexPost, recipe: Recipe) -> Recipe:
    """Write ``post.safetensors`` (as an index folder holds it); the recipe with its sha256."""
    path = folder / POST_FILE
    save_transform(path, post.map, _post_metadata(post, recipe))
    return replace(recipe, post_sha256=sha256_file(path))


@dataclass
class EncodeFolder:
    """A complete encode folder: its manifest, recipe, and shards (validated on open)."""

    path: Path
    manifest: dict[str, Any]
    recipe: Recipe

    @classmethod
    def open(cls, path: str | os.PathLike, *, verify: bool = True) -> EncodeFolder:
        """Read ``path`` (its manifest checked by
        :func:`~embedkit.retrieval.encode_folder.read_manifest`); refuses an unfinished folder,
        and with ``verify`` any shard whose sha256, row count, row range, ids or folder differ
        from the manifest."""
        folder = Path(path)
        manifest = read_manifest(folder)
        if not manifest.get("complete"):
            raise ConfigError(f"{folder}: the encoding is not finished; rerun `embedkit encode` "
                              "with the same settings to resume it", param="embeddings")
        if verify:
            key = folder_key(manifest)
            for entry in manifest["shards"]:
                problem = shard_problem(folder, entry, key)
                if problem:
                    raise ConfigError(problem + "; rerun `embedkit encode` to re-encode it",
                                      param="embeddings")
        recipe = Recipe.from_dict(manifest["recipe"], where=str(folder / MANIFEST))
        return cls(folder, manifest, recipe)

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def vectors(self) -> dict[str, Any]:
        """How the vectors are stored: ``{"dtype", "normalized"}`` (older folders: float32,
        raw)."""
        stored = self.manifest.get("vectors") or {}
        return {"dtype": str(stored.get("dtype", "float32")),
                "normalized": bool(stored.get("normalized", False))}

    @property
    def total_rows(self) -> int:
        return int(self.manifest["total_rows"])

    @property
    def shard_files(self) -> list[Path]:
        return [self.path / str(e["file"]) for e in self.manifest["shards"]]

    def post_map(self) -> AffineMap | None:
        """The post-processor's map (checked against the recipe's sha256), or None."""
        if not self.recipe.post:
            return None
        path = self.path / POST_FILE
        if not path.is_file() or sha256_file(path) != self.recipe.post_sha256:
            raise ConfigError(f"{path}: missing or changed since it was encoded",
                              param="embeddings")
        return load_transform(path).map

    def shards(self, *, texts: bool = True) -> Iterator[tuple[list[str], list[str], np.ndarray]]:
        """``(ids, texts, vectors)`` one shard at a time (memory: one shard)."""
        for path in self.shard_files:
            yield read_shard(path, texts=texts)

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """``n`` rows drawn without replacement with ``seed`` (all rows when ``n`` >= total),
        in row order; reads one shard at a time."""
        total = self.total_rows
        if n >= total:
            rows = np.arange(total)
        else:
            rows = np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))
        parts = []
        start = 0
        for entry, path in zip(self.manifest["shards"], self.shard_files, strict=True):
            stop = start + int(entry["rows"])
            lo, hi = np.searchsorted(rows, [start, stop])
            if hi > lo:
                parts.append(read_shard(path, texts=False)[2][rows[lo:hi] - start])
            start = stop
        return np.ascontiguousarray(np.concatenate(parts) if parts else
                                    np.zeros((0, self.dim), np.float32))


def train_sample_size(index: Any, total: int, train_size: int | None = None) -> int:
    """Training vectors for ``index`` out of ``total``: ``train_size`` if given, else faiss's
    points-per-centroid rule for IVF (64 per list, within [39, 256] per list, at least
    :data:`MIN_TRAIN` for codebooks), at most ``total``.

    >>> train_sample_size(make_faiss_index(8, "IVF100,Flat", "cosine", None), 10**6)
    10000
    >>> train_sample_size(make_faiss_index(8, "IVF1000,Flat", "cosine", None), 10**6)
    64000
    """
    if train_size is not None:
        return min(int(train_size), total)
    nlist = ivf_nlist(index) or 0
    size = min(max(64 * nlist, MIN_TRAIN), total)
    if nlist and size < MIN_POINTS_PER_CENTROID * nlist:
        logger.warning("training IVF%d on %d vectors: faiss wants at least %d (%d per list)",
                       nlist, size, MIN_POINTS_PER_CENTROID * nlist, MIN_POINTS_PER_CENTROID)
    return size


# --------------------------------------------------------------------------------------------
# an index folder from an encode folder


def _check_out_dir(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (
            any(out.iterdir()) and not (out / "index.json").is_file())):
        raise ConfigError(f"{out} exists and is not an index folder; the output folder is "
                          "replaced whole, so give a new path or an existing index folder",
                          param="out_dir")


class _Rows:
    """Texts and ids kept so far (each text once: its first row, as ``build_index`` does)."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.user_ids: list[str | None] = []
        self.seen: set[str] = set()

    def keep(self, ids: list[str], texts: list[str]) -> list[int]:
        rows = []
        for i, t in enumerate(texts):
            if t not in self.seen:
                self.seen.add(t)
                rows.append(i)
                self.texts.append(t)
                self.user_ids.append(ids[i])
        return rows


class _ShardProbe:
    """A :class:`~embedkit.retrieval.tuning.RecallProbe` fed shard by shard: its queries are
    a seeded sample of the folder's rows, their labels learnt as the rows are kept."""

    def __init__(self, folder: EncodeFolder, metric: str, amap: AffineMap | None,
                 seed: int) -> None:
        self.rows = sample_rows(folder.total_rows, TUNE_QUERIES, seed)
        queries = folder.sample(len(self.rows), seed + 1)  # the same rows (same draw)
        self.probe = RecallProbe(queries, np.full(len(self.rows), -1), metric, amap,
                                 seed=seed)
        self.start = 0  # the folder row of the next shard's first row

    def see(self, x: np.ndarray, keep: list[int], first_label: int) -> None:
        """A shard's rows ``x`` of which ``keep`` were indexed from label ``first_label``."""
        if keep:
            self.probe.observe(np.ascontiguousarray(x[keep]), first_label)
            kept = self.start + np.asarray(keep, dtype=np.int64)
            pos = np.searchsorted(self.rows, kept)
            hit = pos < len(self.rows)
            hit[hit] = self.rows[pos[hit]] == kept[hit]
            self.probe.query_labels[pos[hit]] = first_label + np.flatnonzero(hit)
        self.start += x.shape[0]


def _add_in_memory(index: Any, folder: EncodeFolder, rows: _Rows,
                   probe: _ShardProbe | None = None) -> None:
    for n, (ids, texts, x) in enumerate(folder.shards(), 1):
        first = len(rows.texts)
        keep = rows.keep(ids, texts)
        if probe is not None:
            probe.see(x, keep, first)
        if keep:
            index.add(np.ascontiguousarray(x[keep]))
        logger.info("added shard %d/%d (%d vectors in all)", n, len(folder.shard_files),
                    index.ntotal)


def _add_on_disk(index: Any, folder: EncodeFolder, rows: _Rows, work: Path,
                 probe: _ShardProbe | None = None) -> Path:
    """Fill a copy of the trained index per shard, then merge their lists into on-disk ones
    (``faiss.contrib.ondisk.merge_ondisk``); returns the ``.ivfdata`` file."""
    from faiss.contrib.ondisk import merge_ondisk

    trained = faiss.serialize_index(index)  # clone_index cannot copy the normalisation step
    blocks = []
    for n, (ids, texts, x) in enumerate(folder.shards(), 1):
        start = len(rows.texts)
        keep = rows.keep(ids, texts)
        if probe is not None:
            probe.see(x, keep, start)
        if not keep:
            continue
        block = faiss.deserialize_index(trained)
        block.add_with_ids(np.ascontiguousarray(x[keep]),
                           np.arange(start, start + len(keep), dtype=np.int64))
        blocks.append(str(work / f"block-{n:05d}.index"))
        faiss.write_index(block, blocks[-1])
        del block
    data = work / IVFDATA_FILE
    if blocks:
        merge_ondisk(index, blocks, str(data))
    else:  # an empty corpus: empty on-disk lists
        ivf = faiss.extract_index_ivf(index)
        lists = faiss.OnDiskInvertedLists(ivf.nlist, ivf.code_size, str(data))
        ivf.replace_invlists(lists, True)
        lists.this.disown()
    return data


def _on_disk_check(index: Any, factory: str) -> None:
    if ivf_nlist(index) is None:
        raise ConfigError(f"on-disk inverted lists need an IVF factory, not {factory!r}",
                          param="on_disk")
    if isinstance(faiss.downcast_index(faiss.extract_index_ivf(index)), faiss.IndexIVFPQR):
        raise ConfigError("IVF...PQR indexes cannot keep their lists on disk", param="on_disk")


def _index_recipe(folder: EncodeFolder, n_indexed: int,
                  extra: dict[str, Any] | None = None) -> Recipe:
    """The manifest's recipe, its corpus entry saying which encode folder was indexed (and
    ``extra`` keys: a budget's ``index_choice``)."""
    base = dict(folder.recipe.corpus[0]) if folder.recipe.corpus else {}
    entry = {**base, "embeddings": str(folder.path.resolve()),
             "manifest_sha256": sha256_file(folder.path / MANIFEST),
             "n_texts": folder.total_rows, "n_indexed": n_indexed}
    return replace(folder.recipe, corpus=(entry,),
                   extra={**folder.recipe.extra, **(extra or {})})


def _train(index: Any, folder: EncodeFolder, factory: str, train_size: int | None,
           seed: int) -> int | None:
    if index.is_trained:
        return None
    size = train_sample_size(index, folder.total_rows, train_size)
    sample = folder.sample(size, seed)
    logger.info("training %r on %d sampled vectors (seed %d)", factory, sample.shape[0], seed)
    train_index(index, sample, factory, sample.shape[0], seed)
    return int(sample.shape[0])


class _FolderModel:
    """The model of an encode folder's recipe, as :func:`~embedkit.retrieval.post.prepare_post`
    checks a transform file against it (``identity``: the file's own when its weights are the
    folder's, the settings around them checked by :func:`_check_fitted_on`)."""

    def __init__(self, recipe: Recipe, identity: str) -> None:
        self.name, self.path, self.identity = recipe.model, recipe.model_path, identity

    def describe(self) -> dict[str, Any]:
        return {"identity": self.identity, "path": self.path}


def _check_fitted_on(meta: dict[str, Any], where: str, folder: EncodeFolder,
                     force: bool) -> str | None:
    """Refuse a transform file fitted on other vectors than the folder's, naming each setting
    that differs (max length, dtype, casing, raw or L2-normalised; model, pooling and dimension
    are :func:`prepare_post`'s); the file's model identity when its weights are the folder's."""
    import warnings

    from embedkit.postprocess import CompatibilityWarning

    r = folder.recipe
    normalized = bool((meta.get("fit_vectors") or {}).get("normalized", False))
    checks = [("max_length", meta.get("max_length"), r.max_length),
              ("dtype", meta.get("dtype"), r.dtype),
              ("lowercase", meta.get("lowercase"), r.lowercase),
              ("vectors", "L2-normalised" if normalized else "raw",
               "L2-normalised" if folder.vectors["normalized"] else "raw")]
    problems = [f"{key}={fitted} but the shards of {folder.path} hold {key}={have}"
                for key, fitted, have in checks if fitted is not None and str(fitted) != str(have)]
    if problems:
        message = f"{where}: transform file was fitted on vectors with " + "; and ".join(problems)
        if not force:
            raise ConfigError(message + "; fit it on these shards (embedkit whiten with the "
                              "folder as embeddings) or use force=True", param="post")
        warnings.warn(message + " (used anyway: force=True)", CompatibilityWarning, stacklevel=3)
    stored = str(meta.get("model_identity") or meta.get("model") or "")
    return stored if stored.split(";")[0] == r.model_identity else None


def folder_post(folder: EncodeFolder, value: str | None, *, metric: str,
                force: bool = False) -> IndexPost | None:
    """The post-processor an index built from ``folder`` bakes in when ``value`` is given: its
    transform files (and ``norm`` steps), each checked against the folder's vectors (model,
    pooling, dimension, max length, dtype, casing, raw or L2-normalised; ``force`` warns
    instead). Nothing is fitted here: a chain to fit is refused."""
    from embedkit.postprocess import FixedTransform, pipeline_learns, resolve_post
    from embedkit.retrieval.post import is_none, prepare_post

    if is_none(value):
        return None
    value = str(value).strip()
    if folder.recipe.post:
        raise ConfigError(f"{folder.path} was encoded with post {folder.recipe.post!r}, which "
                          "its indexes apply; encode it without one to choose the post-processor"
                          " when indexing", param="post")
    if folder.vectors["normalized"]:
        raise ConfigError(f"{folder.path} holds L2-normalised vectors but queries are encoded "
                          "raw, and a post-processor maps both before the cosine normalises: "
                          "encode without normalize to index with one", param="post")
    pipe = resolve_post(value)
    if pipeline_learns(pipe):
        raise ConfigError(f"post {value!r} has steps to fit, and an index built from shards "
                          "fits nothing: give a transform file fitted on them (embedkit whiten "
                          f"with {folder.path} as embeddings)", param="post")
    identity = folder.recipe.model_identity
    for _, step in pipe.steps:
        if isinstance(step, FixedTransform):
            step.fit(None)
            identity = _check_fitted_on(step.metadata_, str(step.path), folder,
                                        force) or identity
    return prepare_post(value, encoder=_FolderModel(folder.recipe, identity),
                        pooling=folder.recipe.pooling, dim=folder.dim, metric=metric,
                        force=force)


def build_index_from_shards(
    out_dir: str | os.PathLike,
    embeddings: str | os.PathLike,
    *,
    factory: str = "Flat",
    metric: str | None = "cosine",
    train_size: int | None = None,
    seed: int = 0,
    on_disk: bool = False,
    lock_timeout: float | None = None,
    post: str | None = None,
    force: bool = False,
    index_codes: Any = None,
) -> EmbeddingIndex:
    """Build an index folder at ``out_dir`` from the encode folder ``embeddings``.

    The recipe (and ``post.safetensors``, baked into the index as ``build_index`` does) come
    from the manifest; texts are indexed once (first row), with the shards' ids as user ids.
    Indexes that need training are trained on a seeded sample (:func:`train_sample_size`);
    shards are added one at a time. ``on_disk`` (IVF factories) keeps the inverted lists in
    ``lists.ivfdata`` inside the folder, memory-mapped when searched (from the folder being
    loaded: a copied or moved folder reads its own). ``lock_timeout``: how long to wait for
    another writer of the folder (None: the default). ``post``: a transform file fitted on
    these shards (``run_whiten_shards``), baked in as the folder's own would be
    (:func:`folder_post`; ``force`` uses one fitted on other vectors). ``index_codes``: as
    :func:`~embedkit.retrieval.folder.build_index` takes it. Returns the index as loaded back.
    """
    # None (the command line's default): cosine, as the encode folder records no declared
    # similarity of its model
    metric = check_metric(metric or "cosine")
    out = Path(out_dir).resolve()
    _check_out_dir(out)
    folder = EncodeFolder.open(embeddings)
    if folder.vectors["normalized"] and metric != "cosine":
        raise ConfigError(
            f"{folder.path} holds L2-normalised vectors but queries are encoded raw: only the "
            f"cosine metric (which normalises both) searches them as they were stored, not "
            f"{metric}; use metric cosine or encode without normalize", param="metric")
    given = folder_post(folder, post, metric=metric, force=force)
    amap = given.map if given is not None else folder.post_map()
    factory, codes, choice = _index_codes(index_codes, folder, factory, metric, amap, seed)
    if codes.codes != "float":  # hook: quantised indexes (retrieval/quantized.py)
        return _build_quantized_from_shards(out, folder, factory, metric, amap, given, codes,
                                            train_size, seed, lock_timeout, on_disk, choice)
    index = make_faiss_index(folder.dim, factory, metric, amap)
    if on_disk:
        _on_disk_check(index, factory)
    start = time.perf_counter()
    trained_on = _train(index, folder, factory, train_size, seed)
    rows = _Rows()
    probe = (_ShardProbe(folder, metric, amap, seed)
             if {"nprobe", "efSearch"} & tunable_parameters(index) else None)
    extra: dict[str, Any] = {}
    if folder.recipe.post_file:
        extra[POST_FILE] = folder.path / POST_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.blocks.", dir=out.parent) as work:
        if on_disk:
            extra[IVFDATA_FILE] = _add_on_disk(index, folder, rows, Path(work), probe)
            lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists)
            lists.filename = str(out / IVFDATA_FILE)  # where the folder will hold it
        else:
            _add_in_memory(index, folder, rows, probe)
        recipe = replace(_index_recipe(folder, len(rows.texts), choice), search_defaults=(
            probe.probe.choose(index, factory) if probe is not None else None))
        if given is not None:  # the post.safetensors of the map given, as build_index writes
            recipe = write_post_file(Path(work), given, replace(
                recipe, post=given.spec, post_file=POST_FILE, post_sources=given.sources))
            extra[POST_FILE] = Path(work) / POST_FILE
        built = EmbeddingIndex(
            index, rows.texts, rows.user_ids, factory=factory, metric=metric,
            dim_in=folder.dim, dim=amap.k if amap is not None else folder.dim,
            recipe=recipe.to_dict(), build_seconds=time.perf_counter() - start,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            extra={"seed": int(seed), "train_size": trained_on, "transform": amap is not None,
                   "on_disk": bool(on_disk)})
        options = {} if lock_timeout is None else {"lock_timeout": lock_timeout}
        built.save(out, extra_files=extra, **options)
        del index, built
    return EmbeddingIndex.load(out)


def _index_codes(index_codes: Any, folder: EncodeFolder, factory: str, metric: str,
                 amap: AffineMap | None, seed: int) -> tuple[str, Any, dict[str, Any]]:
    """The hook of :func:`build_index_from_shards`: the factory and
    :class:`~embedkit.retrieval.budget.IndexCodes` to build (a budget's choice measured on a
    sample of the shards) and the recipe keys saying why."""
    from embedkit.retrieval.budget import IndexCodes

    codes = index_codes or IndexCodes()
    codes.check(factory)
    return codes.choose(folder.sample, folder.total_rows, metric=metric, transform=amap,
                        seed=seed, factory=factory)


def _build_quantized_from_shards(out: Path, folder: EncodeFolder, factory: str, metric: str,
                                 amap: AffineMap | None, given: IndexPost | None,
                                 index_codes: Any, train_size: int | None, seed: int,
                                 lock_timeout: float | None, on_disk: bool,
                                 recipe_extra: dict[str, Any]) -> EmbeddingIndex:
    """A quantised index (:mod:`embedkit.retrieval.quantized`) from the shards, one shard in
    memory at a time; its rescoring store is written beside the folder, then moved in."""
    from embedkit.retrieval.quantized import RescoreStore, make_quantized, tune_quantized

    codes, rescore, rescore_with = (index_codes.codes, index_codes.rescore,
                                    index_codes.rescore_with)
    if on_disk:
        raise ConfigError("on-disk inverted lists are for float IVF indexes; a quantised index "
                          "keeps its rescoring vectors on disk already", param="on_disk")
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.store.", dir=out.parent) as work:
        dim = amap.k if amap is not None else folder.dim
        store = RescoreStore(Path(work) / "store", dim, rescore_with) if rescore else None
        index = make_quantized(folder.dim, factory, metric, amap, vectors=codes,
                               rescore=rescore, rescore_with=rescore_with, store=store)
        size = train_sample_size(index.base if codes == "int8" else _probe_ivf(index),
                                 folder.total_rows, train_size)
        sample = folder.sample(size, seed)
        index.train(sample, seed=seed, train_size=sample.shape[0])
        rows = _Rows()
        probe = _ShardProbe(folder, metric, amap, seed)
        for ids, texts, x in folder.shards():
            first = len(rows.texts)
            keep = rows.keep(ids, texts)
            probe.see(x, keep, first)
            if keep:
                index.add(np.ascontiguousarray(x[keep]))
        recipe = _index_recipe(folder, len(rows.texts), recipe_extra)
        defaults = tune_quantized(index, None, amap, seed=seed, probe=probe.probe)
        extra: dict[str, Any] = {}
        if folder.recipe.post_file:
            extra[POST_FILE] = folder.path / POST_FILE
        if given is not None:
            recipe = write_post_file(Path(work), given, replace(
                recipe, post=given.spec, post_file=POST_FILE, post_sources=given.sources))
            extra[POST_FILE] = Path(work) / POST_FILE
        recipe = replace(recipe, search_defaults=defaults,
            extra={**recipe.extra, "vectors": index.settings.to_dict()})
        built = EmbeddingIndex(
            index, rows.texts, rows.user_ids, factory=index.factory, metric=metric,
            dim_in=folder.dim, dim=dim, recipe=recipe.to_dict(),
            build_seconds=time.perf_counter() - start,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            extra={"seed": int(seed), "train_size": int(sample.shape[0]),
                   "transform": amap is not None, "quantized": index.settings.to_dict()})
        options = {} if lock_timeout is None else {"lock_timeout": lock_timeout}
        built.save(out, extra_files=extra, **options)
        del index, built
    return EmbeddingIndex.load(out)


def _probe_ivf(index: Any) -> Any:
    """An index whose IVF list count is the binary index's, for :func:`train_sample_size`."""
    nlist = getattr(faiss.downcast_IndexBinary(index.base), "nlist", 0)
    return make_faiss_index(8, f"IVF{nlist},Flat" if nlist else "Flat", "l2", None)
