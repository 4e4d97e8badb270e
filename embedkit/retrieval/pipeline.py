"""Index folders end to end: texts in, encoder + postprocessor + FAISS, hits out.

An index folder (``embedkit index build``) holds what :class:`EmbeddingIndex` saves --
``index.faiss``, ``texts.jsonl``, ``index.json`` -- and, when built with a postprocessor,
``post.safetensors``: the fitted map ``y = (x + bias) @ kernel`` that is also baked into
``index.faiss`` (exported for other tools; its sha256 is checked on load like the other files).
``index.json``'s ``recipe`` says how queries must be encoded:

=================== ==========================================================================
``model``           the model as given (hub id, alias or folder); ``model_path`` its resolved
                    folder or id, ``model_identity`` what its weights are (checked at search)
``pooling``         canonical pooling name
``max_length``      tokens per text, counting [CLS] and [SEP]
``dtype``,          encoder settings that change vectors
``lowercase``
``post``            canonical ``--post`` spec (``file:PATH`` for a transform file), or null
``post_file``,      ``post.safetensors`` and its sha256 (null without a postprocessor)
``post_sha256``
``post_sources``    transform files used: ``[{"path", "sha256"}]``
``fit``             what a chain was fitted on: ``{"on", "n_sentences", "sha256"}`` or null
``corpus``          where the texts came from, one entry per build / add
=================== ==========================================================================

Corpus files hold one text a line (a trailing ``\\r`` is dropped; blank lines are skipped). An
optional ids file holds one id a line, aligned line by line with the corpus file (same number of
lines; a blank text line drops its id too); ids are kept as ``user_id`` and printed with hits.

>>> read_lines_aligned(["a", "", "b"], ["1", "2", "3"])
(['a', 'b'], ['1', '3'])
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embedkit.encoders.cache import EmbeddingCache
from embedkit.io.textfile import read_lines
from embedkit.errors import ConfigError
from embedkit.provenance import sha256_file, sha256_text

__all__ = [
    "POST_FILE",
    "FittedPost",
    "IndexSearcher",
    "add_to_index",
    "build_index",
    "corpus_from_tasks",
    "prepare_post",
    "read_corpus",
    "read_lines_aligned",
    "search",
]

POST_FILE = "post.safetensors"
_TRANSFORM_SUFFIXES = (".safetensors", ".npz")


def _log(message: str) -> None:
    print(f"embedkit: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# reading texts


def read_lines_aligned(
    texts: Sequence[str], ids: Sequence[str] | None = None
) -> tuple[list[str], list[str] | None]:
    """Drop blank text lines (and their ids); an empty id becomes None."""
    if ids is not None and len(ids) != len(texts):
        raise ConfigError(
            f"the ids file has {len(ids)} lines but the corpus file {len(texts)}; they must be "
            "aligned line by line"
        )
    keep = [i for i, t in enumerate(texts) if t.strip()]
    out_ids = None if ids is None else [ids[i].strip() or None for i in keep]
    return [texts[i] for i in keep], out_ids


def read_corpus(
    path: str | os.PathLike, ids_path: str | os.PathLike | None = None
) -> tuple[list[str], list[str | None] | None, dict[str, Any]]:
    """Texts (one a line), their ids (or None) and a description of the source."""
    lines = read_lines(path, "corpus")
    ids = read_lines(ids_path, "ids") if ids_path is not None else None
    texts, user_ids = read_lines_aligned(lines, ids)
    info = {
        "source": f"file:{Path(path).resolve()}",
        "sha256": sha256_file(path),
        "n_texts": len(texts),
    }
    if ids_path is not None:
        info["ids_sha256"] = sha256_file(ids_path)
    return texts, user_ids, info


def _split_task_arg(item: str) -> tuple[str, str | None]:
    """``LCQMC:test`` -> (LCQMC, test); a spec path keeps its colons unless a split follows."""
    name, sep, split = item.rpartition(":")
    if not sep or not name or "/" in split or "\\" in split or split.endswith(".json"):
        return item, None
    return name, split


def corpus_from_tasks(
    arg: str | Sequence[str],
    *,
    data_dir: str | os.PathLike | None = None,
    source: str = "auto",
    skip_invalid: bool = False,
) -> tuple[list[str], dict[str, Any]]:
    """The unique sentences (both columns, first-seen order) of ``TASK[:SPLIT],...``.

    Without ``:SPLIT`` a task contributes its default splits. Returns the texts and a record
    ``{"source": "tasks", "tasks": {task: {split: {source, sha256, n_pairs}}}, ...}``.
    """
    from embedkit.data import get_task, load_split

    items = [arg] if isinstance(arg, str) else list(arg)
    parts = [t.strip() for item in items for t in item.split(",") if t.strip()]
    if not parts:
        raise ConfigError("no task given; use e.g. LCQMC:test,BQ:test")
    texts: dict[str, None] = {}
    record: dict[str, dict[str, Any]] = {}
    for part in parts:
        name, split = _split_task_arg(part)
        spec = get_task(name)
        for s in [split] if split else list(spec.default_splits):
            data = load_split(spec, s, data_dir=data_dir, source=source, skip_invalid=skip_invalid)
            record.setdefault(spec.name, {})[data.split] = {
                "source": data.source,
                "sha256": data.sha256,
                "n_pairs": data.n_pairs,
                "skipped": data.skipped,
            }
            texts.update(dict.fromkeys(data.unique_sentences()))
    out = list(texts)
    return out, {"source": "tasks", "tasks": record, "n_texts": len(out),
                 "sha256": sha256_text("\n".join(out))}


# --------------------------------------------------------------------------------------------
# encoders and postprocessors


def _make_cache(cache: EmbeddingCache | bool | str | os.PathLike | None) -> EmbeddingCache | None:
    if cache is True:
        return EmbeddingCache()
    if cache is False or cache is None:
        return None
    if isinstance(cache, EmbeddingCache):
        return cache
    return EmbeddingCache(cache)


def make_encoder(
    model: str,
    pooling: str | None = None,
    *,
    cache: EmbeddingCache | bool | str | None = True,
    device: str | None = "cpu",
    dtype: str = "float32",
    batch_size: int = 64,
    lowercase: bool = False,
    progress: bool | None = None,
):
    from embedkit.encoders import Encoder

    return Encoder(model, pooling, device=device, dtype=dtype, lowercase=lowercase,
                   cache=_make_cache(cache), batch_size=batch_size, progress=progress)


@dataclass
class FittedPost:
    """A postprocessor ready to bake: ``y = (x + bias) @ kernel`` (then L2 if ``normalize``)."""

    spec: str
    kernel: np.ndarray
    bias: np.ndarray
    normalize: bool = False
    fit: dict[str, Any] | None = None
    sources: list[dict[str, str]] = field(default_factory=list)

    @property
    def transform(self) -> tuple[np.ndarray, np.ndarray]:
        return (np.asarray(self.kernel, np.float32), np.asarray(self.bias, np.float32))

    def apply(self, x: np.ndarray) -> np.ndarray:
        y = (np.asarray(x, np.float64) + self.bias) @ np.asarray(self.kernel, np.float64)
        if self.normalize:
            n = np.linalg.norm(y, axis=1, keepdims=True)
            y = y / np.where(n == 0, 1.0, n)
        return y


def is_transform_file(value: str) -> bool:
    """True when ``--post`` names a transform file rather than a chain spec."""
    p = Path(value)
    return p.suffix.lower() in _TRANSFORM_SUFFIXES or p.is_file()


def _check_file_meta(metadata: dict, where: str, *, encoder, pooling: str, dim: int,
                     force: bool) -> None:
    """check_compatible against the encoder's identity (or name / path for older files)."""
    from embedkit.encoders.models import resolve_model_path
    from embedkit.postprocess import check_compatible

    meta = dict(metadata)
    if meta.get("model_identity") is not None:
        meta["model"] = meta["model_identity"]
    elif meta.get("model") is not None:
        stored = str(meta["model"])
        if stored in (encoder.name, encoder.path, encoder.identity) or (
            resolve_model_path(stored) == encoder.path
        ):
            meta["model"] = encoder.identity
    try:
        check_compatible(meta, model=encoder.identity, pooling=pooling, dim=dim, force=force)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def prepare_post(
    value: str | None,
    *,
    encoder,
    pooling: str,
    dim: int,
    fit_data: Callable[[], tuple[np.ndarray, dict[str, Any]]] | None = None,
    metric: str = "cosine",
    force: bool = False,
) -> FittedPost | None:
    """Turn ``--post`` (a chain spec or a transform file) into a :class:`FittedPost`.

    A file (``.safetensors`` / ``.npz``, or any existing file) is loaded and checked with
    ``check_compatible`` against the encoder's identity, ``pooling`` and ``dim`` (``force``
    turns a mismatch into a warning); so are ``file:`` steps of a chain. A chain with steps to
    fit (whiten, pca, rp) is fitted on ``fit_data()`` -> (vectors, description).
    """
    if value is None or str(value).strip().lower() in ("", "none"):
        return None
    from embedkit.postprocess import (
        FixedTransform,
        Normalize,
        affine_of,
        describe_post,
        load_transform,
        parse_post,
    )

    value = str(value).strip()
    if is_transform_file(value) and not value.lower().startswith("file:"):
        t = load_transform(value)
        _check_file_meta(t.metadata, value, encoder=encoder, pooling=pooling, dim=dim, force=force)
        if t.d != dim and force:
            raise ConfigError(f"{value}: the transform takes d={t.d} but the vectors have d={dim}; "
                              "--force cannot fix a dimension mismatch")
        normalize = bool(t.metadata.get("normalize", False))
        if normalize and metric != "cosine":
            raise ConfigError(f"{value}: the map is meant to be followed by L2 normalisation "
                              f"(metadata normalize=true), which an index applies only with "
                              f"--metric cosine (given: {metric})")
        path = str(Path(value).resolve())
        return FittedPost(spec=f"file:{path}", kernel=np.asarray(t.kernel, np.float64),
                          bias=np.asarray(t.bias, np.float64), normalize=normalize,
                          sources=[{"path": path, "sha256": sha256_file(path)}])
    pipe = parse_post(value)
    steps = [est for _, est in pipe.steps]
    needs_fit = any(not isinstance(e, (FixedTransform, Normalize)) for e in steps)
    fit_info = None
    if needs_fit:
        if fit_data is None:
            raise ConfigError(f"--post {value!r} must be fitted but no fit data was given")
        x, fit_info = fit_data()
        if x.shape[0] < 2:
            raise ConfigError(
                f"--post {value!r}: {x.shape[0]} sentence(s) to fit on ({fit_info.get('on')}); "
                "a postprocessor needs at least 2 (give --fit-on FILE or a file postprocessor)"
            )
    else:
        x = np.random.default_rng(0).standard_normal((2, dim))
    pipe.fit(np.asarray(x, np.float64))
    sources = []
    for est in steps:
        if isinstance(est, FixedTransform):
            where = str(est.path)
            _check_file_meta(est.metadata_, where, encoder=encoder, pooling=pooling, dim=dim,
                             force=force)
            sources.append({"path": str(Path(where).resolve()), "sha256": sha256_file(where)})
    kernel, bias, normalize = affine_of(pipe)
    if normalize and metric != "cosine":
        raise ConfigError(f"--post {value!r} ends with 'norm', which an index can only apply with "
                          f"--metric cosine (given: {metric})")
    return FittedPost(spec=describe_post(pipe), kernel=np.asarray(kernel, np.float64),
                      bias=np.asarray(bias, np.float64), normalize=normalize, fit=fit_info,
                      sources=sources)


def _fit_data_fn(fit_on: str, encoder, pooling: str, max_length: int, corpus_texts: list[str],
                 corpus_vectors: np.ndarray) -> Callable[[], tuple[np.ndarray, dict[str, Any]]]:
    def fit_data() -> tuple[np.ndarray, dict[str, Any]]:
        if fit_on == "corpus":
            return corpus_vectors, {"on": "corpus", "n_sentences": len(corpus_texts),
                                    "sha256": sha256_text("\n".join(corpus_texts))}
        path = Path(fit_on)
        if not path.is_file():
            raise ConfigError(f"--fit-on {fit_on!r} is neither 'corpus' nor an existing file")
        sents = list(dict.fromkeys(t for t in read_lines(path, "fit") if t.strip()))
        x = encoder.encode(sents, pooling, max_length=max_length)
        return x, {"on": f"file:{path.resolve()}", "n_sentences": len(sents),
                   "sha256": sha256_text("\n".join(sents))}

    return fit_data


def _write_post(folder: Path, post: FittedPost, recipe: dict[str, Any]) -> Path:
    from embedkit.postprocess import save_transform

    path = folder / POST_FILE
    save_transform(path, post.kernel, post.bias, {
        "model": recipe["model_identity"],
        "model_identity": recipe["model_identity"],
        "model_name": recipe["model"],
        "pooling": recipe["pooling"],
        "max_length": recipe["max_length"],
        "spec": post.spec,
        "normalize": post.normalize,
        "fit_on": (post.fit or {}).get("on"),
        "n_samples": (post.fit or {}).get("n_sentences"),
        "fit_data_sha256": (post.fit or {}).get("sha256"),
    })
    return path


# --------------------------------------------------------------------------------------------
# build / add


def build_index(
    out_dir: str | os.PathLike,
    texts: Sequence[str],
    *,
    model: str | None = None,
    encoder=None,
    pooling: str | None = None,
    post: str | None = None,
    ids: Sequence[str | None] | None = None,
    corpus_info: dict[str, Any] | None = None,
    factory: str = "Flat",
    metric: str = "cosine",
    max_length: int = 64,
    fit_on: str = "corpus",
    train_size: int | None = None,
    seed: int = 0,
    force: bool = False,
    cache: EmbeddingCache | bool | str | None = True,
    device: str | None = "cpu",
    dtype: str = "float32",
    batch_size: int = 64,
    lowercase: bool = False,
    progress: bool | None = None,
    verbose: bool = False,
):
    """Encode ``texts``, fit/check the postprocessor, build, save to ``out_dir``; the index.

    Give ``model`` (an Encoder is made with the other encoder settings) or a ready ``encoder``.
    Duplicate texts are indexed once (first occurrence and its id).
    """
    from embedkit.encoders import parse_pooling
    from embedkit.retrieval.index import EmbeddingIndex, _check_metric

    metric = _check_metric(metric)
    if int(max_length) < 3:
        raise ConfigError("--max-length must be at least 3 ([CLS], one token, [SEP])")
    if encoder is None:
        if model is None:
            raise ConfigError("build_index needs a model or an encoder")
        encoder = make_encoder(model, pooling, cache=cache, device=device, dtype=dtype,
                               batch_size=batch_size, lowercase=lowercase, progress=progress)
    pooling = parse_pooling(pooling or encoder.default_pooling)
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or (
            any(out_dir.iterdir()) and not (out_dir / "index.json").is_file())):
        raise ConfigError(f"{out_dir} exists and is not an index folder; the output folder is "
                          "replaced whole, so give a new path or an existing index folder")
    texts = list(texts)
    if ids is not None and len(ids) != len(texts):
        raise ConfigError(f"got {len(texts)} texts but {len(ids)} ids")
    seen: dict[str, int] = {}
    for i, t in enumerate(texts):
        seen.setdefault(t, i)
    keep = list(seen.values())
    uniq = [texts[i] for i in keep]
    uniq_ids = None if ids is None else [ids[i] for i in keep]
    hidden = int(getattr(encoder.model.config, "hidden_size", 0) or 0)
    fitted = None
    early = post is not None and hidden > 0 and is_transform_file(str(post)) and not str(
        post).lower().startswith("file:")
    if early:  # a transform file: check it before spending time on encoding
        fitted = prepare_post(post, encoder=encoder, pooling=pooling, dim=hidden, metric=metric,
                              force=force)
    if verbose:
        _log(f"encoding {len(uniq)} texts with {encoder.name} ({pooling}, max length "
             f"{max_length})")
    vectors = encoder.encode(uniq, pooling, max_length=int(max_length))
    dim = int(vectors.shape[1])
    if not early:
        fitted = prepare_post(
            post, encoder=encoder, pooling=pooling, dim=dim, metric=metric, force=force,
            fit_data=_fit_data_fn(fit_on, encoder, pooling, int(max_length), uniq, vectors))
    recipe: dict[str, Any] = {
        "model": encoder.name,
        "model_path": encoder.path,
        "model_identity": encoder.identity,
        "pooling": pooling,
        "max_length": int(max_length),
        "dtype": encoder.dtype_name,
        "lowercase": bool(encoder.lowercase),
        "post": fitted.spec if fitted else None,
        "post_file": POST_FILE if fitted else None,
        "post_sha256": None,
        "post_sources": fitted.sources if fitted else [],
        "fit": fitted.fit if fitted else None,
        "corpus": [{**(corpus_info or {"source": "python"}), "n_texts": len(texts),
                    "n_indexed": len(uniq)}],
    }
    if verbose:
        _log(f"building FAISS {factory!r} ({metric}; training if it needs it, then adding) "
             f"over {len(uniq)} vectors"
             + (f", post {fitted.spec} -> {fitted.kernel.shape[1]} dims" if fitted else ""))
    index = EmbeddingIndex.build(
        vectors, uniq, factory=factory, metric=metric,
        transform=fitted.transform if fitted else None, ids=uniq_ids, recipe=recipe,
        train_size=train_size, seed=seed,
        progress=bool(progress if progress is not None
                      else len(uniq) >= 2000 and sys.stderr.isatty()))
    if fitted is None:
        index.save(out_dir)
        return index
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.post.", dir=out_dir.parent) as tmp:
        path = _write_post(Path(tmp), fitted, index.recipe)
        index.recipe["post_sha256"] = sha256_file(path)
        index.save(out_dir, extra_files={POST_FILE: path})
    return index


def _check_recipe_complete(index, directory) -> dict[str, Any]:
    recipe = index.recipe
    missing = [k for k in ("model", "model_identity", "pooling", "max_length") if k not in recipe]
    if missing:
        raise ConfigError(
            f"{directory}: index.json's recipe lacks {', '.join(missing)}: it was not built by "
            "`embedkit index build`; rebuild it"
        )
    if recipe.get("post_file"):
        name = recipe["post_file"]
        if name not in index.extra_files:
            raise ConfigError(f"{directory}: the recipe names {name} but index.json records no "
                              "checksum for it; rebuild the index")
    return recipe


def _recipe_encoder(recipe: dict[str, Any], *, model: str | None = None,
                    pooling: str | None = None, force: bool = False, **kwargs):
    """The encoder the recipe describes (``model`` overrides where it is); checks identity."""
    if model is None:
        path = recipe.get("model_path")
        model = path if path and Path(path).is_dir() else recipe["model"]
    encoder = make_encoder(model, pooling or recipe["pooling"], dtype=recipe.get("dtype", "float32"),
                           lowercase=bool(recipe.get("lowercase", False)), **kwargs)
    if encoder.identity != recipe["model_identity"]:
        msg = (f"model {model} is now {encoder.identity} but the index was built with "
               f"{recipe['model_identity']} (its weights changed)")
        if not force:
            raise ConfigError(msg + "; rebuild the index or use --force")
        warnings.warn(msg + " (continuing because of --force)", stacklevel=3)
    return encoder


def add_to_index(
    index_dir: str | os.PathLike,
    texts: Sequence[str],
    *,
    ids: Sequence[str | None] | None = None,
    corpus_info: dict[str, Any] | None = None,
    cache: EmbeddingCache | bool | str | None = True,
    device: str | None = "cpu",
    batch_size: int = 64,
    progress: bool | None = None,
    force: bool = False,
    encoder=None,
) -> dict[str, int]:
    """Encode with the index's recipe and append texts not yet indexed; saves the folder.

    Returns ``{"added", "skipped", "ntotal"}`` (skipped: already indexed or repeated).
    """
    from embedkit.retrieval.index import EmbeddingIndex

    index_dir = Path(index_dir)
    index = EmbeddingIndex.load(index_dir)
    recipe = _check_recipe_complete(index, index_dir)
    texts = list(texts)
    if ids is not None and len(ids) != len(texts):
        raise ConfigError(f"got {len(texts)} texts but {len(ids)} ids")
    new: list[int] = []
    batch: set[str] = set()
    for i, t in enumerate(texts):
        if index.position(t) is None and t not in batch:
            batch.add(t)
            new.append(i)
    result = {"added": len(new), "skipped": len(texts) - len(new), "ntotal": index.ntotal}
    if not new:
        return result
    if encoder is None:
        encoder = _recipe_encoder(recipe, force=force, cache=cache, device=device,
                                  batch_size=batch_size, progress=progress)
    new_texts = [texts[i] for i in new]
    vectors = encoder.encode(new_texts, recipe["pooling"], max_length=int(recipe["max_length"]))
    added = index.add(vectors, new_texts, None if ids is None else [ids[i] for i in new])
    recipe.setdefault("corpus", []).append(
        {**(corpus_info or {"source": "python"}), "n_texts": len(texts), "n_indexed": added})
    extra = {name: (index_dir / name).read_bytes() for name in index.extra_files}
    index.save(index_dir, extra_files=extra)
    result.update(added=added, skipped=len(texts) - added, ntotal=index.ntotal)
    return result


# --------------------------------------------------------------------------------------------
# search


def _same_model(value: str, recipe: dict[str, Any]) -> bool:
    from embedkit.encoders.models import is_local, model_identity, resolve_model_path

    if value in (recipe.get("model"), recipe.get("model_path")):
        return True
    path = resolve_model_path(value)
    if path == recipe.get("model_path"):
        return True
    return is_local(path) and model_identity(path) == recipe.get("model_identity")


def _same_post(value: str, recipe: dict[str, Any]) -> bool:
    stored = recipe.get("post")
    if value.strip().lower() in ("", "none"):
        return stored is None
    if stored is None:
        return False
    if value.strip() == stored:
        return True
    if is_transform_file(value) and not value.lower().startswith("file:"):
        if not Path(value).is_file():
            return False
        sha = sha256_file(value)
        return sha == recipe.get("post_sha256") or any(
            s.get("sha256") == sha for s in recipe.get("post_sources") or [])
    from embedkit.postprocess import describe_post, parse_post

    return describe_post(parse_post(value)) == stored


class IndexSearcher:
    """A loaded index folder and the encoder its recipe names; :meth:`search` texts.

    ``model``, ``pooling``, ``post`` and ``max_length`` are optional overrides: each one that
    differs from the recipe is refused (:class:`ConfigError`) unless ``force``, which uses the
    given model / pooling / max length (the postprocessor is baked into the index and cannot
    change: the index's own is used). The model's identity is checked against the recipe too.
    """

    def __init__(
        self,
        index_dir: str | os.PathLike,
        *,
        model: str | None = None,
        pooling: str | None = None,
        post: str | None = None,
        max_length: int | None = None,
        force: bool = False,
        cache: EmbeddingCache | bool | str | None = True,
        device: str | None = "cpu",
        batch_size: int = 64,
        progress: bool | None = None,
        encoder=None,
    ):
        from embedkit.encoders import parse_pooling
        from embedkit.retrieval.index import EmbeddingIndex

        self.index_dir = Path(index_dir)
        self.index = EmbeddingIndex.load(self.index_dir)
        recipe = _check_recipe_complete(self.index, self.index_dir)
        requested = {
            "model": (recipe["model"] if model is not None and _same_model(model, recipe)
                      else model),
            "pooling": parse_pooling(pooling) if pooling is not None else None,
            "max_length": int(max_length) if max_length is not None else None,
            "post": (recipe.get("post") if post is not None and _same_post(post, recipe)
                     else (None if post is None else str(post))),
        }
        if requested["post"] is not None and requested["post"].strip().lower() == "none":
            requested["post"] = "none"
        recipe.setdefault("post", None)
        self.conflicts = self.index.check_recipe(requested, force=force)
        if any(c.startswith("index was built with post=") for c in self.conflicts):
            warnings.warn("the postprocessor is baked into the index; its own "
                          f"({recipe.get('post') or 'none'}) is used", stacklevel=2)
        self.pooling = requested["pooling"] or recipe["pooling"]
        self.max_length = requested["max_length"] or int(recipe["max_length"])
        if encoder is None:
            encoder = _recipe_encoder(recipe, model=model, pooling=self.pooling, force=force,
                                      cache=cache, device=device, batch_size=batch_size,
                                      progress=progress)
        self.encoder = encoder

    @property
    def recipe(self) -> dict[str, Any]:
        return self.index.recipe

    def encode(self, queries: list[str]) -> np.ndarray:
        return self.encoder.encode(queries, self.pooling, max_length=self.max_length)

    def search(self, queries: str | Sequence[str], k: int = 10, *, nprobe: int | None = None,
               ef_search: int | None = None) -> list[dict[str, Any]]:
        """``[{"query", "hits": [{"id", "text", "score"(, "user_id")}]}]``, one per query."""
        if isinstance(queries, str):
            queries = [queries]
        queries = list(queries)
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
           nprobe: int | None = None, ef_search: int | None = None, **kwargs: Any
           ) -> list[dict[str, Any]]:
    """Search an index folder with its own recipe; see :class:`IndexSearcher` for ``kwargs``.

    Returns one ``{"query": ..., "hits": [{"id", "text", "score"}, ...]}`` per query (hits best
    first; ``score`` is the cosine / inner product, or the squared L2 distance for ``l2``).
    """
    return IndexSearcher(index_dir, **kwargs).search(queries, k, nprobe=nprobe,
                                                     ef_search=ef_search)
