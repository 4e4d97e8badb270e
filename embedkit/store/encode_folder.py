"""The format of an encode folder (what ``embedkit encode`` writes): Parquet shards and a sealed
``manifest.json``, read back only when every value, shard and row range agrees.

An encode folder holds Parquet shards ``shard-00000.parquet`` ... with the columns ``id``
(string), ``text`` (string) and ``embedding`` (fixed-size list of float32, or float16 with
``precision="float16"``: the encoder's *raw* pooled vector, L2-normalised with ``normalize``; a
post-processor is recorded in the recipe and baked into indexes, as ``index build`` does), plus
``manifest.json``:

=================== ==========================================================================
``format``          :data:`MANIFEST_FORMAT`
``recipe``          the encoder recipe exactly as ``index.json`` records it
                    (:class:`~embedkit.store.recipe.Recipe`), its ``corpus`` the inputs
``dim``             width of the ``embedding`` column
``inputs``          the corpus files (path, format, sha256, bytes) and the columns read
``shard_size``      rows per shard (the last may be shorter)
``shards``          ``[{"file", "rows", "first_row", "sha256", "ids_sha256"}]`` in order;
                    ``file`` a bare file name inside the folder, ``ids_sha256`` the sha256 of
                    the shard's ids (:func:`ids_sha256`; absent in older folders)
``vectors``         how the vectors are stored: ``{"dtype": "float32"|"float16",
                    "normalized": bool}`` (absent in older folders: float32, raw); readers
                    upcast float16 to float32
``total_rows``,     rows over all shards; ``complete`` is true once every shard is written
``complete``
``engine``,         how it ran; library versions; seconds and rows per second
``versions``,
``timings``
``values_sha256``   the sha256 of each value above (each recipe key apart), as ``index.json``
                    holds them (:func:`~embedkit.io.seal.seal_values`): a hand
                    edit (``recipe.pooling``) is refused naming the key
=================== ==========================================================================

Each shard carries in its Parquet metadata (key ``embedkit``) the row range it holds
(``first_row``, ``rows``) and the :func:`folder_key` of the folder it was written for (recipe,
inputs, shard size, dimension and storage), so a shard copied from another position or another
folder is refused even when its sha256 was put in the manifest. With a post-processor the
folder also holds ``post.safetensors`` (its sha256 in the recipe).

>>> import numpy as np, tempfile, os
>>> d = tempfile.mkdtemp()
>>> info = write_shard(os.path.join(d, shard_name(0)), ["a", "b"], ["x", "y"],
...                    np.eye(2, dtype="float32"))
>>> info["file"], info["rows"]
('shard-00000.parquet', 2)
>>> ids, texts, x = read_shard(os.path.join(d, shard_name(0)))
>>> ids, texts, x.tolist()
(['a', 'b'], ['x', 'y'], [[1.0, 0.0], [0.0, 1.0]])
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr

from embedkit.data.sources import require_pyarrow
from embedkit.encoders.choices import VECTOR_DTYPES
from embedkit.errors import ConfigError
from embedkit.io.atomic import atomic_path, atomic_write_json
from embedkit.io.seal import check_values, seal_values
from embedkit.postprocess.affine import AffineMap
from embedkit.postprocess.files import load_transform, save_transform
from embedkit.provenance import sha256_file, sha256_text
from embedkit.store.recipe import (
    POST_FILE,
    Count,
    Positive,
    Recipe,
    make_recipe,
    post_metadata,
    validate_json,
)

if TYPE_CHECKING:  # torch is imported where an encoder is used
    from embedkit.encoders.protocol import SentenceEncoder
    from embedkit.store.fitted import FittedPost

__all__ = ["MANIFEST", "MANIFEST_FORMAT", "SHARD_METADATA_KEY", "VECTOR_DTYPES", "EncodeFolder",
           "draw_rows", "encode_recipe", "folder_key", "ids_sha256", "plain_name",
           "read_manifest", "read_shard", "shard_metadata", "shard_name", "shard_problem",
           "write_manifest", "write_post_file", "write_shard"]

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "embedkit-encode/1"
#: the Parquet key-value metadata key of a shard's row range and folder key
SHARD_METADATA_KEY = b"embedkit"
#: how an encode folder is made again (the end of its error messages)
REENCODE = "encode the corpus again"


def plain_name(name: str) -> bool:
    """True for a bare file name (no folder part, not . or ..)."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name


def draw_rows(total: int, n: int, seed: int) -> np.ndarray:
    """``n`` of ``total`` row numbers drawn without replacement with ``seed``, in row order
    (all of them when ``n`` >= ``total``): the one row sampler of training and tuning samples.

    >>> draw_rows(5, 9, 0).tolist(), len(draw_rows(100, 3, 1))
    ([0, 1, 2, 3, 4], 3)
    """
    if n >= total:
        return np.arange(total, dtype=np.int64)
    rng = np.random.default_rng(int(seed))
    return np.sort(rng.choice(total, size=int(n), replace=False)).astype(np.int64)


def shard_name(i: int) -> str:
    """The file name of shard ``i``.

    >>> shard_name(12)
    'shard-00012.parquet'
    """
    return f"shard-{int(i):05d}.parquet"


def ids_sha256(ids: list[str]) -> str:
    """The sha256 of a shard's ids (their JSON list).

    >>> ids_sha256(["a"]) == ids_sha256(["a"]) != ids_sha256(["b"])
    True
    """
    return sha256_text(json.dumps([str(i) for i in ids], ensure_ascii=False))


def folder_key(manifest: Mapping[str, Any]) -> str:
    """What ties a shard to its folder: the sha256 of the recipe (less its corpus entry, which
    is filled in at the end), inputs, shard size, dimension and storage of ``manifest``."""
    recipe = {k: v for k, v in (manifest.get("recipe") or {}).items() if k != "corpus"}
    plan = {"recipe": recipe, "inputs": manifest.get("inputs"),
            "shard_size": manifest.get("shard_size"), "dim": manifest.get("dim"),
            "vectors": manifest.get("vectors") or {"dtype": "float32", "normalized": False}}
    return sha256_text(json.dumps(plan, ensure_ascii=False, sort_keys=True))


def write_shard(path: str | os.PathLike, ids: list[str], texts: list[str],
                vectors: np.ndarray, dtype: str = "float32", *, first_row: int | None = None,
                key: str | None = None) -> dict[str, Any]:
    """Write one shard atomically, its vectors stored as ``dtype`` (float32 or float16), with
    its row range (``first_row``) and the :func:`folder_key` ``key`` in its Parquet metadata;
    ``{"file", "rows", "sha256", "ids_sha256"}``."""
    pa = require_pyarrow()
    import pyarrow.parquet as pq

    if dtype not in VECTOR_DTYPES:
        raise ConfigError(f"precision {dtype!r}: choose {' or '.join(VECTOR_DTYPES)}",
                          param="precision")
    x = np.ascontiguousarray(vectors, dtype=np.dtype(dtype))
    if x.ndim != 2 or x.shape[0] != len(ids) or len(ids) != len(texts):
        raise ConfigError(f"shard {path}: {len(ids)} ids, {len(texts)} texts and vectors of "
                          f"shape {x.shape} do not line up")
    arrow_type = pa.float16() if dtype == "float16" else pa.float32()
    emb = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1), arrow_type), x.shape[1])
    table = pa.table({"id": pa.array(ids, pa.string()), "text": pa.array(texts, pa.string()),
                      "embedding": emb})
    if first_row is not None:
        mark = {"first_row": int(first_row), "rows": len(ids), "key": key}
        table = table.replace_schema_metadata({SHARD_METADATA_KEY: json.dumps(mark)})
    path = Path(path)
    with atomic_path(path) as tmp:
        pq.write_table(table, str(tmp))
    return {"file": path.name, "rows": len(ids), "sha256": sha256_file(path),
            "ids_sha256": ids_sha256(ids)}


def read_shard(path: str | os.PathLike, *, vectors: bool = True, texts: bool = True
               ) -> tuple[list[str], list[str], np.ndarray]:
    """``(ids, texts, vectors)`` of a shard (``texts``/``vectors`` False: left empty); the
    vectors as float32 whatever they are stored as (float16 shards are upcast)."""
    require_pyarrow()
    import pyarrow.parquet as pq

    cols = ["id"] + (["text"] if texts else []) + (["embedding"] if vectors else [])
    table = pq.read_table(str(path), columns=cols)
    ids = [str(v) for v in table.column("id").to_pylist()]
    out_texts = table.column("text").to_pylist() if texts else []
    x = np.zeros((0, 0), np.float32)
    if vectors:
        col = table.column("embedding").combine_chunks()
        width = col.type.list_size
        x = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        x = x.reshape(-1, width)
    return ids, out_texts, x


def shard_metadata(path: str | os.PathLike) -> tuple[int, dict[str, Any] | None]:
    """A shard's row count and the row range and key it was written with (None: a shard of an
    older embedkit), from its Parquet footer alone."""
    require_pyarrow()
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(str(path)).metadata
    raw = (meta.metadata or {}).get(SHARD_METADATA_KEY)
    mark = json.loads(raw) if raw else None
    return int(meta.num_rows), mark if isinstance(mark, dict) else None


def _range_problem(path: Path, entry: Mapping[str, Any], key: str | None) -> str | None:
    """Why a shard does not hold what ``entry`` says (rows, first row, ids, folder), or None."""
    try:
        rows, mark = shard_metadata(path)
        ids = read_shard(path, vectors=False, texts=False)[0] if "ids_sha256" in entry else None
    except Exception as exc:  # a corrupt file: pyarrow raises several kinds
        return f"{path}: unreadable ({exc})"
    if rows != entry.get("rows"):
        return f"{path}: holds {rows} rows but {MANIFEST} says {entry.get('rows')}"
    if ids is None:  # an entry of an older embedkit: nothing more recorded
        return None
    if mark is None or mark.get("first_row") != entry.get("first_row"):
        held = "no row range" if mark is None else f"rows from {mark.get('first_row')}"
        return (f"{path}: holds {held} but {MANIFEST} says rows from {entry.get('first_row')}: "
                "a shard of another position or folder")
    if key is not None and mark.get("key") != key:
        return f"{path}: written for another encode folder (recipe, inputs or storage differ)"
    if ids_sha256(ids) != entry["ids_sha256"]:
        return f"{path}: its ids differ from those {MANIFEST} recorded"
    return None


def shard_problem(folder: Path, entry: Mapping[str, Any], key: str | None = None) -> str | None:
    """Why a recorded shard is not valid, or None: missing, sha256 or row count differs, or
    (entries that record ``ids_sha256``) its row range, ids or folder ``key`` differ."""
    path = folder / str(entry.get("file"))
    if not path.is_file():
        return f"{path}: missing"
    if sha256_file(path) != entry.get("sha256"):
        return f"{path}: sha256 differs from {MANIFEST}"
    return _range_problem(path, entry, key)


# --------------------------------------------------------------------------------------------
# manifest.json

class _ShardEntry(BaseModel):
    model_config = ConfigDict(extra="allow")
    file: StrictStr
    rows: Count
    first_row: Count
    sha256: StrictStr
    ids_sha256: StrictStr | None = None


class _Vectors(BaseModel):
    dtype: StrictStr
    normalized: StrictBool


class _Manifest(BaseModel):
    """The types of manifest.json's values (keys of other versions are let through)."""

    model_config = ConfigDict(extra="allow")
    format: StrictStr
    recipe: dict[str, Any]
    dim: Positive
    inputs: dict[str, Any] | None = None
    shard_size: Positive
    shards: list[_ShardEntry]
    total_rows: Count | None = None
    complete: StrictBool = False
    vectors: _Vectors | None = None
    values_sha256: dict[str, StrictStr] | None = None


def _inside(folder: Path, name: str) -> bool:
    """``name`` is a bare file name whose path (links followed) stays inside ``folder``."""
    if not plain_name(name) or os.path.isabs(name):
        return False
    try:
        (folder / name).resolve().relative_to(folder.resolve())
    except (ValueError, OSError):
        return False
    return True


def _check_shards(path: Path, manifest: dict[str, Any]) -> None:
    """Shard names stay inside the folder; row ranges follow each other (and add up to
    ``total_rows`` once complete)."""
    folder = path.parent
    expected = 0
    for i, entry in enumerate(manifest["shards"]):
        name = entry["file"]
        if not _inside(folder, name):
            raise ConfigError(f"{path}: shards[{i}].file {name!r} is not a file inside "
                              f"{folder} (an absolute path, '..' or a link leaving it); "
                              f"{REENCODE}", param="embeddings")
        first = entry["first_row"]
        if first < expected or (manifest.get("complete") and first != expected):
            raise ConfigError(f"{path}: shards[{i}].first_row is {first} but the shards "
                              f"before it end at row {expected}; {REENCODE}",
                              param="embeddings")
        expected = first + entry["rows"]
    if manifest.get("complete") and manifest.get("total_rows") != expected:
        raise ConfigError(f"{path}: total_rows is {manifest.get('total_rows')} but the shards "
                          f"hold {expected} rows; {REENCODE}", param="embeddings")


def _validate(path: Path, data: dict[str, Any]) -> None:
    try:
        validate_json(_Manifest, data, str(path), redo=REENCODE)
        stored = data.get("vectors") or {}
        if stored and stored.get("dtype") not in VECTOR_DTYPES:
            raise ConfigError(f"{path}: key 'vectors.dtype' must be "
                              f"{' or '.join(VECTOR_DTYPES)}, not {stored.get('dtype')!r}; "
                              f"{REENCODE}")
        check_values(path, data, saved="the folder was encoded", redo=REENCODE)
    except ConfigError as exc:
        raise ConfigError(str(exc), param="embeddings") from None
    _check_shards(path, data)


def read_manifest(folder: Path, *, check: bool = True) -> dict[str, Any]:
    """The manifest of an encode folder: :class:`ConfigError` when absent, unreadable, of
    another format, with a value of the wrong type or edited since it was written (naming the
    key), a shard named outside the folder or row ranges that do not follow each other
    (``check=False``: the format alone, for a folder about to be cleared)."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise ConfigError(f"{path}: missing; is {folder} a folder written by `embedkit encode`?",
                          param="embeddings")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable ({exc})", param="embeddings") from exc
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise ConfigError(f"{path}: not an encode manifest ({MANIFEST_FORMAT})",
                          param="embeddings")
    if check:
        _validate(path, data)
    return data


def write_manifest(folder: Path, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``manifest.json`` atomically, sealed (:func:`~embedkit.io.seal.
    seal_values`); returns what was written."""
    sealed = seal_values(manifest)
    atomic_write_json(Path(folder) / MANIFEST, sealed)
    return sealed


# --------------------------------------------------------------------------------------------
# the recipe, the post-processor and the folder read back


def encode_recipe(encoder: SentenceEncoder, pooling: str, max_length: int,
                  post: FittedPost | None, corpus: dict[str, Any]) -> Recipe:
    """The recipe an index built from these vectors records (the same code as
    :func:`~embedkit.retrieval.folder.build_index`)."""
    from embedkit.encoders.pooling import Pooling

    return make_recipe(encoder, Pooling(pooling), int(max_length), post, corpus)


def write_post_file(folder: Path, post: FittedPost, recipe: Recipe) -> Recipe:
    """Write ``post.safetensors`` (as an index folder holds it); the recipe with its sha256."""
    path = folder / POST_FILE
    save_transform(path, post.map, post_metadata(post, recipe))
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
        :func:`read_manifest`); refuses an unfinished folder,
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
        in row order (:func:`draw_rows`); reads one shard at a time."""
        return self.rows(draw_rows(self.total_rows, n, seed))

    def batches(self) -> Iterator[tuple[list[str], list[str], np.ndarray]]:
        """``(ids, texts, vectors)`` one shard at a time: the folder as a vector source."""
        return self.shards()

    def rows(self, rows: np.ndarray) -> np.ndarray:
        """The vectors of the folder rows ``rows`` (sorted), reading one shard at a time."""
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


# --------------------------------------------------------------------------------------------
# synthetic folders (tests, and the scale benchmark's IVF part)


def synthetic_chunks(rows: int, dim: int, seed: int, chunk: int = 16384
                     ) -> Iterator[np.ndarray]:
    """Anisotropic vectors (a mean, decaying scales, one shared direction), chunk by chunk."""
    rng = np.random.default_rng(seed)
    mean = rng.normal(size=dim).astype(np.float32)
    scales = (1.0 / np.sqrt(np.arange(1, dim + 1))).astype(np.float32)
    shared = rng.normal(size=dim).astype(np.float32)
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        z = rng.standard_normal((n, dim), dtype=np.float32) * scales
        z += rng.standard_normal((n, 1), dtype=np.float32) * shared + mean
        yield z


def synthetic_folder(folder: str | os.PathLike, rows: int, dim: int, seed: int = 0,
                     shard_size: int = 100_000) -> Path:
    """An encode folder of synthetic vectors (ids and texts ``v0``, ``v1``, ...)."""
    from embedkit.store.recipe import Recipe

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    recipe = Recipe(model="synthetic", model_identity=f"synthetic:{seed}", pooling="cls",
                    max_length=64, corpus=({"source": "synthetic", "n_texts": rows},))
    head = {"format": MANIFEST_FORMAT, "recipe": recipe.to_dict(), "dim": dim, "inputs": {},
            "shard_size": shard_size}
    key = folder_key(head)
    shards: list[dict[str, Any]] = []
    buf: list[np.ndarray] = []
    done = 0
    for x in synthetic_chunks(rows, dim, seed):
        buf.append(x)
        have = sum(b.shape[0] for b in buf)
        while have >= shard_size or (have and done + have == rows):
            block = np.concatenate(buf)
            part, rest = block[:shard_size], block[shard_size:]
            ids = [f"v{done + i}" for i in range(part.shape[0])]
            e = write_shard(out / shard_name(len(shards)), ids, ids, part, first_row=done,
                            key=key)
            shards.append({**e, "first_row": done})
            done += part.shape[0]
            buf = [rest] if rest.shape[0] else []
            have = rest.shape[0]
    write_manifest(out, {**head, "shards": shards, "total_rows": done, "complete": True})
    return out
