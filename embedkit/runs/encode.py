"""``embedkit encode``: a corpus to a folder of Parquet embedding shards and a manifest, on this
machine (``engine="local"``) or on Ray (``engine="ray"``, :mod:`embedkit.runs.encode_ray`).

The corpus (:func:`~embedkit.data.sources.open_corpus`) is cut into shards of ``shard_size``
rows in a stable order; shard ``i`` holds rows ``[i * shard_size, (i + 1) * shard_size)``. The
folder's format is :mod:`embedkit.store.encode_folder`'s. A run is resumable: the manifest records
each shard (rows, sha256) as it is written, so a rerun after a kill, or with a shard deleted or
damaged, encodes only the shards that are missing or invalid and gives the same files. A
finished folder is left as it is (a rerun only checks it), and a folder made with other
settings or inputs is refused unless ``overwrite``.

>>> s = EncodeSettings(shard_size=1000, max_length=32)
>>> s.shard_size, s.engine
(1000, 'local')
>>> EncodeSettings(engine="spark")
Traceback (most recent call last):
...
embedkit.errors.ConfigError: engine 'spark': choose local or ray
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from embedkit.aliases import StrPath
from embedkit.data.sources import CorpusSource, open_corpus
from embedkit.encoders import EncoderConfig, Pooling, SentenceEncoder, as_encoder
from embedkit.encoders.facts import ModelFacts
from embedkit.errors import ConfigError
from embedkit.postprocess import pipeline_learns, resolve_post
from embedkit.provenance import library_versions
from embedkit.runs.choices import ENGINES
from embedkit.runs.encode_ray import ShardDone, ShardJob
from embedkit.runs.record import EncodeRecord, run_record, timings
from embedkit.store.encode_folder import (
    MANIFEST,
    MANIFEST_FORMAT,
    VECTOR_DTYPES,
    encode_recipe,
    folder_key,
    read_manifest,
    shard_name,
    shard_problem,
    write_manifest,
    write_post_file,
    write_shard,
)
from embedkit.store.fitted import FittedPost, is_none, prepare_post
from embedkit.store.recipe import Recipe

__all__ = ["ENGINES", "EncodeSettings", "run_encode"]

logger = logging.getLogger(__name__)

#: the manifest is rewritten at most this often while shards are written (and at the end)
FLUSH_SECONDS = 5.0



@dataclass(frozen=True)
class EncodeSettings:
    """How to encode: rows per shard, tokens per text, the engine (``local`` or ``ray``), its
    workers (Ray actors; None: 1) and cluster address (None: ``RAY_ADDRESS``, else a local Ray
    started for the run), whether an existing folder may be replaced (``overwrite``), and how
    the vectors are stored: L2-normalised (``normalize``) and as ``precision`` (``float32``
    or ``float16``, half the bytes; readers upcast). Both are recorded in the manifest's
    ``vectors``."""

    shard_size: int = 10000
    max_length: int = 64
    engine: str = "local"
    workers: int | None = None
    ray_address: str | None = None
    overwrite: bool = False
    normalize: bool = False
    precision: str = "float32"

    def __post_init__(self) -> None:
        if self.precision not in VECTOR_DTYPES:
            raise ConfigError(f"precision {self.precision!r}: choose "
                              f"{' or '.join(VECTOR_DTYPES)}", param="precision")
        if self.engine not in ENGINES:
            raise ConfigError(f"engine {self.engine!r}: choose {' or '.join(ENGINES)}",
                              param="engine")
        if int(self.shard_size) < 1:
            raise ConfigError(f"shard_size must be >= 1, got {self.shard_size}",
                              param="shard_size")
        if int(self.max_length) < 3:
            raise ConfigError("max_length must be at least 3 ([CLS], one token, [SEP])",
                              param="max_length")
        if self.workers is not None and int(self.workers) < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}", param="workers")


def _no_fit() -> tuple[np.ndarray, dict[str, Any]]:
    raise ConfigError("a post chain that learns (whiten, pca, rp) cannot be fitted while "
                      "encoding: encode without it, fit a whitening on the shards "
                      "(embedkit.runs.whiten.run_whiten, or `embedkit whiten` on the "
                      "folder), and give the saved transform file as post", param="post")


def _prepare_post(post: str | None, enc: SentenceEncoder, pool: Pooling,
                  normalize: bool = False) -> FittedPost | None:
    if is_none(post):
        return None
    chain = resolve_post(str(post).strip())
    if pipeline_learns(chain):
        _no_fit()
    if normalize and any(name != "norm" for name, _ in chain.steps):
        raise ConfigError("normalize stores L2-normalised raw vectors, but the post map "
                          f"{post!r} applies to the raw ones (an index would map normalised "
                          "vectors with it); encode without normalize, or without the map",
                          param="normalize")
    return prepare_post(post, encoder=enc, pooling=str(pool), dim=int(enc.dim),
                        fit_data=_no_fit)


def _plan(recipe: Recipe, source: CorpusSource, settings: EncodeSettings,
          dim: int) -> dict[str, Any]:
    """What must agree for a folder to be resumed: recipe (less corpus), inputs, shard size."""
    stored = recipe.to_dict()
    stored.pop("corpus", None)
    return {"recipe": stored, "inputs": source.describe(), "shard_size": int(settings.shard_size),
            "dim": int(dim), "vectors": _vectors(settings)}


def _vectors(settings: EncodeSettings) -> dict[str, Any]:
    """The manifest's ``vectors``: how the shards store them."""
    return {"dtype": settings.precision, "normalized": bool(settings.normalize)}


def _stored_plan(manifest: dict[str, Any]) -> dict[str, Any]:
    stored = dict(manifest.get("recipe") or {})
    stored.pop("corpus", None)
    return {"recipe": stored, "inputs": manifest.get("inputs"),
            "shard_size": manifest.get("shard_size"), "dim": manifest.get("dim"),
            "vectors": manifest.get("vectors") or {"dtype": "float32", "normalized": False}}


def _clear(out: Path) -> None:
    for p in out.glob("shard-*.parquet"):
        p.unlink()
    for name in (MANIFEST, "post.safetensors"):
        (out / name).unlink(missing_ok=True)


def _previous(out: Path, plan: dict[str, Any], overwrite: bool) -> dict[str, Any] | None:
    """The manifest of a folder to resume (None: start afresh); refuses other folders."""
    if not out.exists():
        return None
    if not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder", param="out")
    if not (out / MANIFEST).is_file():
        if any(out.iterdir()):
            raise ConfigError(f"{out} is not empty and holds no {MANIFEST}: give a new or empty "
                              "folder", param="out")
        return None
    if overwrite:
        read_manifest(out, check=False)  # an encode folder, however damaged: cleared
        _clear(out)
        return None
    manifest = read_manifest(out)
    if _stored_plan(manifest) != plan:
        raise ConfigError(f"{out} was encoded with other settings or inputs; give a new folder "
                          "or overwrite=True to replace it", param="overwrite")
    return manifest


class _Writer:
    """Writes shards and keeps the manifest up to date (see :data:`FLUSH_SECONDS`)."""

    def __init__(self, out: Path, manifest: dict[str, Any],
                 progress: Callable[[int], None] | None) -> None:
        self.out = out
        self.manifest = manifest
        self.vectors = manifest["vectors"]
        self.key = folder_key(manifest)
        self.entries: dict[int, dict[str, Any]] = {}
        self.progress = progress
        self.rows_encoded = 0
        self.t0 = time.perf_counter()
        self.flushed = 0.0

    def flush(self, force: bool = False) -> None:
        now = time.perf_counter()
        if force or now - self.flushed >= FLUSH_SECONDS:
            self.manifest["shards"] = [self.entries[i] for i in sorted(self.entries)]
            write_manifest(self.out, self.manifest)
            self.flushed = now

    def done(self, i: int, first: int, ids: list[str], texts: list[str], x: np.ndarray) -> None:
        if self.vectors["normalized"]:
            x = np.asarray(x, dtype=np.float32)
            norms = np.linalg.norm(x, axis=1, keepdims=True)
            x = x / np.where(norms == 0, 1.0, norms)  # a zero vector stays zero
        entry = write_shard(self.out / shard_name(i), ids, texts, x, self.vectors["dtype"],
                            first_row=first, key=self.key)
        self.entries[i] = {"file": entry["file"], "rows": entry["rows"], "first_row": first,
                           "sha256": entry["sha256"], "ids_sha256": entry["ids_sha256"]}
        self.rows_encoded += len(ids)
        rate = self.rows_encoded / max(time.perf_counter() - self.t0, 1e-9)
        logger.info("shard %d: %d rows (%d encoded this run, %.1f rows/s)", i, len(ids),
                    self.rows_encoded, rate)
        if self.progress is not None:
            self.progress(len(ids))
        self.flush()


def _jobs(source: CorpusSource, settings: EncodeSettings, writer: _Writer,
          previous: dict[int, dict[str, Any]]) -> Iterator[ShardJob]:
    """The shards to encode; valid recorded ones are kept (and reported as progress)."""
    size = int(settings.shard_size)
    for i, (ids, texts) in enumerate(source.batches(size)):
        entry = previous.get(i)
        if entry is not None and entry.get("rows") == len(ids) and \
                entry.get("first_row") == i * size:
            problem = shard_problem(writer.out, entry, writer.key)
            if problem is None:
                writer.entries[i] = entry
                if writer.progress is not None:
                    writer.progress(len(ids))
                continue
            logger.warning("re-encoding shard %d: %s", i, problem)
        yield i, i * size, ids, texts


def _encode_local(enc: SentenceEncoder, pool: Pooling, max_length: int,
                  jobs: Iterator[ShardJob], done: ShardDone) -> None:
    for i, first, ids, texts in jobs:
        done(i, first, ids, texts, enc.encode(texts, pool, max_length=max_length))


def _build_encoder(encoder: SentenceEncoder | EncoderConfig | str) -> SentenceEncoder:
    if isinstance(encoder, str):
        encoder = EncoderConfig(encoder)
    if isinstance(encoder, EncoderConfig):
        return dataclasses.replace(encoder, cache=False, progress=False).build(cache=False)
    return as_encoder(encoder)


def _ray_config(encoder: SentenceEncoder | EncoderConfig | str) -> EncoderConfig:
    if isinstance(encoder, str):
        return EncoderConfig(encoder)
    if isinstance(encoder, EncoderConfig):
        return encoder
    raise ConfigError("the ray engine builds the encoder on each worker: give an EncoderConfig "
                      "or a model name, not a ready encoder", param="engine")


def _start(out: Path, recipe: Recipe, plan: dict[str, Any], post: FittedPost | None,
           previous: dict[str, Any] | None, settings: EncodeSettings,
           command: str | None) -> tuple[dict[str, Any], Recipe]:
    """The manifest of this run (unfinished), ``post.safetensors`` written when needed."""
    out.mkdir(parents=True, exist_ok=True)
    if post is not None and previous is None:
        recipe = write_post_file(out, post, recipe)
    elif previous is not None:
        recipe = Recipe.from_dict(previous["recipe"], where=str(out / MANIFEST))
    manifest = {"format": MANIFEST_FORMAT, "recipe": recipe.to_dict(), "dim": plan["dim"],
                "inputs": plan["inputs"], "shard_size": plan["shard_size"],
                "vectors": plan["vectors"],
                "shards": list((previous or {}).get("shards") or []), "total_rows": None,
                "complete": False, "engine": settings.engine, "command": command}
    return manifest, recipe


def _finish(writer: _Writer, recipe: Recipe, source: CorpusSource, enc: SentenceEncoder,
            settings: EncodeSettings, t_start: float) -> dict[str, Any]:
    manifest = writer.manifest
    manifest["shards"] = [writer.entries[i] for i in sorted(writer.entries)]
    total = sum(int(e["rows"]) for e in manifest["shards"])
    corpus = {"source": "encode", "inputs": [{"path": f["path"], "sha256": f["sha256"]}
                                             for f in source.describe()["files"]],
              "text_column": source.text_column, "id_column": source.id_column,
              "n_texts": total}
    manifest["recipe"] = Recipe.from_dict(manifest["recipe"]).to_dict() | {"corpus": [corpus]}
    seconds = time.perf_counter() - writer.t0
    # the model's own time (tokenising included): seconds_encoding is the writer's (shards too)
    model = getattr(enc, "stats", None) if settings.engine == "local" else None
    model_s = {"seconds_model": round(float(model.seconds), 3)} if model is not None else {}
    manifest.update(total_rows=total, complete=True, versions=library_versions(("pyarrow",)),
                    settings={"engine": settings.engine, "workers": settings.workers,
                              "shard_size": settings.shard_size,
                              "max_length": settings.max_length,
                              "normalize": settings.normalize,
                              "precision": settings.precision},
                    timings=timings(enc if settings.engine == "local" else None, t_start,
                                    rows_encoded=writer.rows_encoded,
                                    seconds_encoding=round(seconds, 3), **model_s,
                                    rows_per_second=round(writer.rows_encoded / seconds, 1)
                                    if seconds > 0 else 0.0))
    writer.flush(force=True)
    return manifest


def run_encode(
    encoder: SentenceEncoder | EncoderConfig | str,
    corpus: StrPath,
    out: StrPath,
    settings: EncodeSettings | None = None,
    *,
    pooling: str | None = None,
    post: str | None = None,
    text_column: str | None = None,
    id_column: str | None = None,
    progress: Callable[[int], None] | None = None,
    command: str | None = None,
) -> EncodeRecord:
    """Encode ``corpus`` into shards under ``out``; the run's record (``manifest`` inside).

    ``post`` (a transform file, or a chain of ``file:`` and ``norm`` steps) is recorded in the
    recipe and written as ``post.safetensors``; the shards hold the raw pooled vectors.
    ``progress(rows)`` is called as rows are done (kept shards included). A complete folder
    with every shard valid is not written to (``record["status"] == "complete"``).
    """
    settings = settings or EncodeSettings()
    t_start = time.perf_counter()
    source = open_corpus(corpus, text_column=text_column, id_column=id_column)
    config = _ray_config(encoder) if settings.engine == "ray" else None
    # the ray driver plans from the model folder; its workers load the model
    enc = ModelFacts(config) if config is not None else _build_encoder(encoder)
    pool = Pooling(pooling or enc.default_pooling)
    max_length = min(int(settings.max_length), enc.model_max_length())
    fitted = _prepare_post(post, enc, pool, settings.normalize)
    recipe = encode_recipe(enc, str(pool), max_length, fitted, {"source": "encode"})
    plan = _plan(recipe, source, settings, int(enc.dim))
    out_dir = Path(out)
    previous = _previous(out_dir, plan, settings.overwrite)
    old = {int(e["first_row"]) // int(settings.shard_size): e
           for e in (previous or {}).get("shards") or []}
    manifest, recipe = _start(out_dir, recipe, plan, fitted, previous, settings, command)
    writer = _Writer(out_dir, manifest, progress)
    jobs = _jobs(source, settings, writer, old)
    if settings.engine == "ray":
        from embedkit.runs.encode_ray import RayRun, encode_ray

        assert config is not None
        encode_ray(RayRun(config, str(pool), max_length, identity=str(enc.identity),
                          workers=settings.workers or 1, address=settings.ray_address),
                   jobs, writer.done)
    else:
        _encode_local(enc, pool, max_length, jobs, writer.done)
    already = bool(previous and previous.get("complete")) and writer.rows_encoded == 0
    if not already:
        manifest = _finish(writer, recipe, source, enc, settings, t_start)
    else:
        manifest = previous or manifest
    record = cast(EncodeRecord, run_record(
        "encode", command=command, encoder=enc,
        settings={**manifest.get("settings", {}), "pooling": str(pool)},
        data={"inputs": source.describe()}))
    record["status"] = "complete" if already else "written"
    record["out"], record["manifest"] = str(out_dir), manifest
    record["rows_encoded"] = writer.rows_encoded
    record["shards_encoded"] = sorted(i for i in writer.entries if i not in old or
                                      writer.entries[i] is not old[i])
    return record
