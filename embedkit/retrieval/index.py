"""A FAISS index over sentence embeddings that carries its whole recipe.

The optional affine post-processor ``y = (x + bias) @ kernel`` (whitening, PCA, ...) and, for the
cosine metric, the L2 normalisation are baked into the FAISS index itself as an
``IndexPreTransform`` chain, so the index is searched with the encoder's *raw* pooled vectors and
queries go through exactly what the corpus went through.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> vecs = rng.standard_normal((50, 8)).astype("float32")
>>> index = EmbeddingIndex.build(vecs, [f"sentence {i}" for i in range(50)])
>>> hits = index.search(vecs[:1], k=3)[0]
>>> hits[0].text, round(hits[0].score, 4)
('sentence 0', 1.0)
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from embedkit.io.atomic import atomic_dir
from embedkit.errors import ConfigError, EmbedkitError
from embedkit.provenance import library_versions, sha256_file

try:
    import faiss
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise EmbedkitError(
        "FAISS is not installed; install it with `pip install embedkit[faiss]` (or faiss-cpu)"
    ) from exc

__all__ = ["EmbeddingIndex", "Hit", "METRICS"]

FORMAT = 1
INDEX_FILE = "index.faiss"
TEXTS_FILE = "texts.jsonl"
META_FILE = "index.json"

#: metric name -> FAISS metric. "cosine" is inner product on L2-normalised vectors.
METRICS = {
    "cosine": faiss.METRIC_INNER_PRODUCT,
    "ip": faiss.METRIC_INNER_PRODUCT,
    "l2": faiss.METRIC_L2,
}

_ADD_CHUNK = 16384


@dataclass
class Hit:
    """One search result.

    ``id`` is the position of the text in the index (0-based, in insertion order); ``score`` is
    the cosine / inner product (higher is better) or, for ``metric="l2"``, the *squared* L2
    distance (lower is better); ``user_id`` is the caller's id given at build/add time, if any.

    >>> Hit(3, "hello", 0.5, None).to_dict()
    {'id': 3, 'text': 'hello', 'score': 0.5, 'user_id': None}
    """

    id: int
    text: str
    score: float
    user_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# FAISS helpers shared with costs.py


def _as_matrix(vectors: Any, name: str = "vectors", dim: int | None = None) -> np.ndarray:
    """Validate and convert to a C-contiguous float32 (n, d) matrix."""
    try:
        x = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a numeric array: {exc}") from exc
    if x.ndim == 1 and dim is not None and x.shape[0] == dim:
        x = x[None, :]
    if x.ndim != 2:
        raise ConfigError(f"{name} must be a 2-D array (n x d), got shape {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise ConfigError(f"{name} have dimension {x.shape[1]} but the index expects {dim}")
    if x.size and not np.isfinite(x).all():
        raise ConfigError(f"{name} contain NaN or infinite values")
    return np.ascontiguousarray(x)


def _check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    return metric


def _check_transform(transform: Any, dim_in: int) -> tuple[np.ndarray, np.ndarray] | None:
    if transform is None:
        return None
    try:
        kernel, bias = transform
    except (TypeError, ValueError) as exc:
        raise ConfigError("transform must be a (kernel, bias) pair") from exc
    kernel = np.asarray(kernel, dtype=np.float32)
    bias = np.asarray(bias, dtype=np.float32).reshape(-1)
    if kernel.ndim != 2 or kernel.shape[0] != dim_in:
        raise ConfigError(
            f"transform kernel has shape {kernel.shape} but the vectors have dimension {dim_in}; "
            f"expected ({dim_in}, k)"
        )
    if bias.shape != (dim_in,):
        raise ConfigError(f"transform bias has shape {bias.shape}, expected ({dim_in},)")
    if not (np.isfinite(kernel).all() and np.isfinite(bias).all()):
        raise ConfigError("transform kernel or bias contains NaN or infinite values")
    return kernel, bias


def _make_faiss_index(
    dim_in: int, factory: str, metric: str, transform: tuple[np.ndarray, np.ndarray] | None
) -> faiss.IndexPreTransform:
    """``IndexPreTransform([LinearTransform?, NormalizationTransform?], index_factory(...))``."""
    if not isinstance(factory, str) or not factory.strip():
        raise ConfigError("factory must be a non-empty FAISS factory string such as 'Flat'")
    dim = transform[0].shape[1] if transform is not None else dim_in
    try:
        inner = faiss.index_factory(int(dim), factory, METRICS[metric])
    except RuntimeError as exc:
        raise ConfigError(
            f"FAISS cannot build factory {factory!r} for dimension {dim}: "
            f"{str(exc).splitlines()[-1]}"
        ) from exc
    _no_polysemous_training(inner)
    index = faiss.IndexPreTransform(inner)
    # prepend_transform puts a transform at the front: add the last step first.
    if metric == "cosine":
        index.prepend_transform(faiss.NormalizationTransform(int(dim), 2.0))
    if transform is not None:
        kernel, bias = transform
        lt = faiss.LinearTransform(int(dim_in), int(dim), True)
        # y = (x + bias) @ kernel = kernel.T @ x + bias @ kernel   (FAISS computes y = A x + b)
        faiss.copy_array_to_vector(np.ascontiguousarray(kernel.T, dtype=np.float32).ravel(), lt.A)
        faiss.copy_array_to_vector(
            np.ascontiguousarray(bias.astype(np.float64) @ kernel.astype(np.float64), np.float32),
            lt.b,
        )
        lt.is_trained = True
        index.prepend_transform(lt)
    return index


def _no_polysemous_training(index: faiss.Index) -> None:
    """Turn off the PQ factories' polysemous training.

    It only serves polysemous (Hamming-filtered) search, which embedkit never enables, and it
    costs tens of seconds even on a few thousand vectors; plain PQ search is unaffected.
    """
    todo = [index]
    while todo:
        idx = faiss.downcast_index(todo.pop())
        if hasattr(idx, "do_polysemous_training"):
            idx.do_polysemous_training = False
        if isinstance(idx, faiss.IndexPreTransform):
            todo.append(idx.index)
        elif isinstance(idx, faiss.IndexHNSW) and idx.storage is not None:
            todo.append(idx.storage)
        elif isinstance(idx, faiss.IndexIVF):
            todo.append(idx.quantizer)


def _find_ivf(index: faiss.Index):
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def _find_hnsw(index: faiss.Index):
    """The IndexHNSW inside (through pre-transforms), or the HNSW quantizer of an IVF index."""
    idx = faiss.downcast_index(index)
    while isinstance(idx, faiss.IndexPreTransform):
        idx = faiss.downcast_index(idx.index)
    if isinstance(idx, faiss.IndexHNSW):
        return idx
    ivf = _find_ivf(index)
    if ivf is not None:
        q = faiss.downcast_index(ivf.quantizer)
        if isinstance(q, faiss.IndexHNSW):
            return q
    return None


def _default_train_size(index: faiss.Index, n: int) -> int:
    # FAISS k-means wants >= 39 points per centroid (it warns below that) and subsamples to 256
    # per centroid itself, so 40 * nlist covers the coarse quantizer; the floor of 10000 ~ 39 *
    # 256 covers the 256-centroid PQ / SQ codebooks (and a PCA) of non-IVF factories.
    ivf = _find_ivf(index)
    nlist = int(ivf.nlist) if ivf is not None else 0
    return min(n, max(40 * nlist, 10000))


def _largest_pow2_at_most(x: int) -> int:
    return 1 << max(0, int(math.floor(math.log2(max(1, x)))))


def _train(
    index: faiss.Index, x: np.ndarray, factory: str, train_size: int | None, seed: int
) -> None:
    if index.is_trained:
        return
    n = x.shape[0]
    ivf = _find_ivf(index)
    size = _default_train_size(index, n) if train_size is None else min(int(train_size), n)
    if size < 1:
        raise ConfigError(
            f"factory {factory!r} must be trained but there are no vectors to train it on"
        )
    if ivf is not None:
        ivf.cp.seed = int(seed)
        if size < ivf.nlist:
            suggest = _largest_pow2_at_most(size // 39)
            raise ConfigError(
                f"factory {factory!r} needs at least {ivf.nlist} training vectors (one per IVF "
                f"list; FAISS recommends {39 * ivf.nlist}) but only {size} are available; use a "
                f"smaller nlist, e.g. 'IVF{suggest}' for this many vectors, or a 'Flat' index"
            )
    rng = np.random.default_rng(seed)
    sample = x if size >= n else x[np.sort(rng.choice(n, size=size, replace=False))]
    try:
        index.train(np.ascontiguousarray(sample))
    except RuntimeError as exc:
        msg = str(exc)
        if "Number of training points" in msg:
            # "... Number of training points (100) should be at least as large as number of
            #  clusters (256)"
            need = msg.rsplit("(", 1)[-1].split(")", 1)[0]
            raise ConfigError(
                f"factory {factory!r} needs at least {need} training vectors but only {size} "
                f"are available; use a smaller nlist / fewer PQ bits, or a 'Flat' index"
            ) from exc
        raise ConfigError(f"FAISS could not train {factory!r}: {msg.splitlines()[-1]}") from exc


def _add(index: faiss.Index, x: np.ndarray, progress: bool = False) -> None:
    if x.shape[0] == 0:
        return
    if not progress:
        index.add(x)
        return
    from tqdm.auto import tqdm

    with tqdm(total=x.shape[0], unit="vec", desc="indexing") as bar:
        for start in range(0, x.shape[0], _ADD_CHUNK):
            chunk = x[start : start + _ADD_CHUNK]
            index.add(chunk)
            bar.update(chunk.shape[0])


@contextlib.contextmanager
def _search_params(
    index: faiss.Index, factory: str, nprobe: int | None, ef_search: int | None
) -> Iterator[None]:
    """Set nprobe / efSearch on the inner index for one search and restore them after."""
    restore: list[tuple[Any, str, int]] = []
    try:
        if nprobe is not None:
            if int(nprobe) < 1:
                raise ConfigError(f"nprobe must be >= 1, got {nprobe}")
            ivf = _find_ivf(index)
            if ivf is None:
                raise ConfigError(f"nprobe applies to IVF indexes only; this index is {factory!r}")
            restore.append((ivf, "nprobe", ivf.nprobe))
            ivf.nprobe = int(nprobe)
        if ef_search is not None:
            if int(ef_search) < 1:
                raise ConfigError(f"ef_search must be >= 1, got {ef_search}")
            hnsw = _find_hnsw(index)
            if hnsw is None:
                raise ConfigError(
                    f"ef_search applies to HNSW indexes only; this index is {factory!r}"
                )
            restore.append((hnsw.hnsw, "efSearch", hnsw.hnsw.efSearch))
            hnsw.hnsw.efSearch = int(ef_search)
        yield
    finally:
        for obj, attr, value in reversed(restore):
            setattr(obj, attr, value)


def _build_faiss(
    vectors: np.ndarray,
    factory: str,
    metric: str,
    transform: tuple[np.ndarray, np.ndarray] | None,
    *,
    train_size: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> tuple[faiss.IndexPreTransform, float]:
    """Make, train and fill an index; return it and the seconds spent training + adding."""
    index = _make_faiss_index(vectors.shape[1], factory, metric, transform)
    start = time.perf_counter()
    _train(index, vectors, factory, train_size, seed)
    _add(index, vectors, progress)
    return index, time.perf_counter() - start


# --------------------------------------------------------------------------------------------


class EmbeddingIndex:
    """Texts, their FAISS index (with the post-processing baked in) and the recipe behind them.

    Build with :meth:`build`, read back with :meth:`load`. Positions (``Hit.id``) are 0-based in
    insertion order and match the lines of ``texts.jsonl``.

    >>> import numpy as np
    >>> v = np.eye(3, dtype="float32")
    >>> idx = EmbeddingIndex.build(v, ["a", "b", "c"], recipe={"model": "m3e-small"})
    >>> [h.text for h in idx.search(v[2], k=1)[0]]
    ['c']
    """

    def __init__(
        self,
        index: faiss.Index,
        texts: list[str],
        user_ids: list[str | None],
        *,
        factory: str,
        metric: str,
        dim_in: int,
        dim: int,
        recipe: dict[str, Any] | None,
        build_seconds: float,
        created: str,
        extra: dict[str, Any] | None = None,
    ):
        self._index = index
        self._texts = texts
        self._user_ids = user_ids
        self._positions = {t: i for i, t in enumerate(texts)}
        self.factory = factory
        self.metric = metric
        self.dim_in = dim_in
        self.dim = dim
        self.recipe: dict[str, Any] = dict(recipe or {})
        self.build_seconds = build_seconds
        self.created = created
        self._extra = dict(extra or {})
        #: names of the extra files the folder this index was loaded from holds (see save)
        self.extra_files: list[str] = []
        self._lock = threading.Lock()

    # ---- construction --------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        vectors: Any,
        texts: Sequence[str],
        *,
        factory: str = "Flat",
        metric: str = "cosine",
        transform: tuple[np.ndarray, np.ndarray] | None = None,
        ids: Sequence[str | int | None] | None = None,
        recipe: dict[str, Any] | None = None,
        train_size: int | None = None,
        seed: int = 0,
        progress: bool = False,
    ) -> EmbeddingIndex:
        """Index raw pooled vectors (n x d float32) and their texts.

        ``transform=(kernel, bias)`` is the affine post-processor ``y = (x + bias) @ kernel``;
        with ``metric="cosine"`` the vectors are L2-normalised after it. ``factory`` is any FAISS
        factory string ("Flat", "IVF1024,Flat", "HNSW32", "IVF256,PQ32", "PCA64,IVF256,Flat").
        Indexes that need training (IVF, PQ, PCA) are trained on a random sample of
        ``train_size`` vectors drawn with ``seed``. Duplicate texts are indexed once (the first
        occurrence). ``recipe`` (model, pooling, max_length, post-processor, ...) is stored
        verbatim in ``index.json``.

        >>> import numpy as np
        >>> v = np.random.default_rng(0).standard_normal((20, 4)).astype("float32")
        >>> EmbeddingIndex.build(v, [str(i) for i in range(20)], factory="HNSW8").ntotal
        20
        """
        metric = _check_metric(metric)
        x = _as_matrix(vectors)
        texts = list(texts)
        if len(texts) != x.shape[0]:
            raise ConfigError(f"got {x.shape[0]} vectors but {len(texts)} texts")
        if recipe is not None:
            if not isinstance(recipe, dict):
                raise ConfigError("recipe must be a dict")
            try:
                recipe = json.loads(json.dumps(recipe))
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"recipe must be JSON-serialisable: {exc}") from exc
        tf = _check_transform(transform, x.shape[1])
        keep, kept_texts, kept_ids = _dedupe(texts, ids, set())
        xk = x[keep] if len(keep) != x.shape[0] else x
        index, seconds = _build_faiss(
            xk, factory, metric, tf, train_size=train_size, seed=seed, progress=progress
        )
        return cls(
            index,
            kept_texts,
            kept_ids,
            factory=factory,
            metric=metric,
            dim_in=x.shape[1],
            dim=tf[0].shape[1] if tf is not None else x.shape[1],
            recipe=recipe,
            build_seconds=seconds,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            extra={"seed": int(seed), "train_size": train_size, "transform": tf is not None},
        )

    def add(
        self, vectors: Any, texts: Sequence[str], ids: Sequence[str | int | None] | None = None
    ) -> int:
        """Append vectors, skipping texts already indexed or repeated in the batch.

        Returns how many were added.

        >>> import numpy as np
        >>> idx = EmbeddingIndex.build(np.eye(2, dtype="float32"), ["a", "b"])
        >>> idx.add(np.ones((2, 2), dtype="float32"), ["b", "c"])
        1
        """
        x = _as_matrix(vectors, dim=self.dim_in)
        texts = list(texts)
        if len(texts) != x.shape[0]:
            raise ConfigError(f"got {x.shape[0]} vectors but {len(texts)} texts")
        keep, kept_texts, kept_ids = _dedupe(texts, ids, self._positions)
        if not keep:
            return 0
        if not self._index.is_trained:  # pragma: no cover - build always trains
            raise ConfigError(f"index {self.factory!r} is not trained; rebuild it")
        with self._lock:
            _add(self._index, np.ascontiguousarray(x[keep]))
            for t, u in zip(kept_texts, kept_ids, strict=True):
                self._positions[t] = len(self._texts)
                self._texts.append(t)
                self._user_ids.append(u)
        return len(keep)

    # ---- search --------------------------------------------------------------------------

    def search(
        self,
        query_vectors: Any,
        k: int = 10,
        *,
        nprobe: int | None = None,
        ef_search: int | None = None,
    ) -> list[list[Hit]]:
        """The ``k`` nearest texts for each raw query vector (one list of hits per query).

        ``nprobe`` (IVF) and ``ef_search`` (HNSW) apply to this search only. A 1-D vector is one
        query. Fewer than ``k`` hits come back when the index holds fewer texts.

        >>> import numpy as np
        >>> idx = EmbeddingIndex.build(np.eye(2, dtype="float32"), ["a", "b"])
        >>> [[h.text for h in hs] for hs in idx.search(np.eye(2, dtype="float32"), k=5)]
        [['a', 'b'], ['b', 'a']]
        """
        q = _as_matrix(query_vectors, name="query vectors", dim=self.dim_in)
        if int(k) < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        with self._lock, _search_params(self._index, self.factory, nprobe, ef_search):
            n = self._index.ntotal
            if n == 0 or q.shape[0] == 0:
                return [[] for _ in range(q.shape[0])]
            scores, labels = self._index.search(q, min(int(k), n))
        out: list[list[Hit]] = []
        for row_s, row_l in zip(scores, labels, strict=True):
            out.append(
                [
                    Hit(int(i), self._texts[i], float(s), self._user_ids[i])
                    for s, i in zip(row_s, row_l, strict=True)
                    if i >= 0
                ]
            )
        return out

    def search_texts(
        self,
        queries: Sequence[str],
        encode: Callable[[list[str]], np.ndarray],
        k: int = 10,
        *,
        nprobe: int | None = None,
        ef_search: int | None = None,
    ) -> list[list[Hit]]:
        """Encode ``queries`` with ``encode`` (raw pooled vectors) and :meth:`search` them.

        >>> import numpy as np
        >>> idx = EmbeddingIndex.build(np.eye(2, dtype="float32"), ["a", "b"])
        >>> enc = lambda ts: np.array([[1, 0] if t == "a" else [0, 1] for t in ts], "float32")
        >>> idx.search_texts(["b"], enc, k=1)[0][0].text
        'b'
        """
        queries = list(queries)
        if not queries:
            return []
        return self.search(encode(queries), k, nprobe=nprobe, ef_search=ef_search)

    # ---- introspection -------------------------------------------------------------------

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    def __len__(self) -> int:
        return self.ntotal

    @property
    def texts(self) -> list[str]:
        """The indexed texts by position (a copy)."""
        return list(self._texts)

    @property
    def user_ids(self) -> list[str | None]:
        return list(self._user_ids)

    @property
    def faiss_index(self) -> faiss.Index:
        """The underlying ``faiss.IndexPreTransform`` (takes raw vectors)."""
        return self._index

    def position(self, text: str) -> int | None:
        """Position of ``text`` in the index, or None."""
        return self._positions.get(text)

    def memory_bytes(self) -> int:
        """Size of the serialised FAISS index in bytes (a proxy for its memory use)."""
        return int(faiss.serialize_index(self._index).nbytes)

    def transform_matrix(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The affine map baked into the index as ``(kernel, b)`` with ``y = x @ kernel + b``.

        ``kernel`` is the build-time kernel and ``b = bias @ kernel`` (the build-time ``bias`` is
        not recoverable when ``kernel`` is not square). None when built without a transform.
        The cosine normalisation, if any, follows this map.
        """
        chain = self._index.chain
        for i in range(chain.size()):
            vt = faiss.downcast_VectorTransform(chain.at(i))
            if isinstance(vt, faiss.LinearTransform) and not isinstance(
                vt, faiss.NormalizationTransform
            ):
                a = faiss.vector_to_array(vt.A).reshape(vt.d_out, vt.d_in)
                b = faiss.vector_to_array(vt.b) if vt.have_bias else np.zeros(vt.d_out, "f4")
                return np.ascontiguousarray(a.T), b.astype(np.float32)
        return None

    def check_recipe(self, requested: dict[str, Any], force: bool = False) -> list[str]:
        """Compare explicit user settings with the recipe the index was built with.

        ``None`` values in ``requested`` mean "not given" and are skipped. A key stored as None
        in the recipe means "none" (e.g. no post-processor) and does conflict with a given value;
        a key the recipe does not record cannot be checked and only warns. Conflicts raise
        :class:`ConfigError` naming them, or with ``force`` only warn. Returns the conflicts.

        >>> import numpy as np
        >>> idx = EmbeddingIndex.build(np.eye(2, dtype="float32"), ["a", "b"],
        ...                            recipe={"pooling": "cls"})
        >>> idx.check_recipe({"pooling": "cls", "max_length": None})
        []
        """
        conflicts: list[str] = []
        for key, value in requested.items():
            if value is None:
                continue
            if key not in self.recipe:
                warnings.warn(
                    f"the index recipe does not record {key}; cannot check --{_flag(key)} "
                    f"{_show(value)}",
                    stacklevel=2,
                )
                continue
            stored = self.recipe[key]
            if stored == value or (stored is not None and str(stored) == str(value)):
                continue
            conflicts.append(
                f"index was built with {key}={_show(stored)} but --{_flag(key)} {_show(value)} "
                "was given"
            )
        if conflicts:
            message = "; ".join(conflicts)
            if not force:
                raise ConfigError(message + "; use the index's recipe or --force")
            warnings.warn(message + " (continuing because of --force)", stacklevel=2)
        return conflicts

    # ---- persistence ---------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """What ``index.json`` holds, less the file checksums."""
        return {
            "format": FORMAT,
            "factory": self.factory,
            "metric": self.metric,
            "dim_in": self.dim_in,
            "dim": self.dim,
            "ntotal": self.ntotal,
            "recipe": self.recipe,
            **self._extra,
            "versions": library_versions(),
            "build_seconds": round(float(self.build_seconds), 4),
            "created": self.created,
        }

    def save(
        self, directory: str | Path, extra_files: dict[str, bytes | str | Path] | None = None
    ) -> Path:
        """Write ``index.faiss``, ``texts.jsonl`` and ``index.json`` to ``directory`` atomically.

        The folder is replaced as a whole: a reader never sees a mix of old and new files.
        ``extra_files`` maps plain file names to their bytes (or a file to copy); they are
        written into the folder too and their sha256s recorded in ``index.json``, so
        :meth:`load` refuses the folder when one of them changes.
        """
        directory = Path(directory)
        extra = dict(extra_files or {})
        for name in extra:
            if name in (INDEX_FILE, TEXTS_FILE, META_FILE) or not _plain_name(name):
                raise ConfigError(f"cannot save an extra file named {name!r} in an index folder")
        with self._lock, atomic_dir(directory) as tmp:
            for name, content in extra.items():
                if isinstance(content, bytes):
                    (tmp / name).write_bytes(content)
                else:
                    shutil.copyfile(content, tmp / name)
            faiss.write_index(self._index, str(tmp / INDEX_FILE))
            with open(tmp / TEXTS_FILE, "w", encoding="utf-8") as fh:
                for i, (t, u) in enumerate(zip(self._texts, self._user_ids, strict=True)):
                    row: dict[str, Any] = {"id": i, "text": t}
                    if u is not None:
                        row["user_id"] = u
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            meta = self.metadata()
            meta["files"] = {
                name: sha256_file(tmp / name) for name in (INDEX_FILE, TEXTS_FILE, *extra)
            }
            with open(tmp / META_FILE, "w", encoding="utf-8") as fh:
                fh.write(json.dumps(meta, ensure_ascii=False, indent=2) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> EmbeddingIndex:
        """Read an index saved by :meth:`save`, checking file checksums and counts.

        Any disagreement (missing or changed file, counts that differ) raises
        :class:`ConfigError` naming the file.
        """
        directory = Path(directory)
        meta_path = directory / META_FILE
        rebuild = "rebuild the index"
        if not meta_path.is_file():
            raise ConfigError(f"{meta_path}: missing; is {directory} an index folder? {rebuild}")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{meta_path}: unreadable ({exc}); {rebuild}") from exc
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ConfigError(
                f"{meta_path}: unknown index format {meta.get('format') if isinstance(meta, dict) else None!r} "
                f"(expected {FORMAT}); {rebuild}"
            )
        files = meta.get("files") or {}
        if not isinstance(files, dict) or not all(_plain_name(str(n)) for n in files):
            raise ConfigError(f"{meta_path}: malformed 'files' entry; {rebuild}")
        extra_names = [n for n in files if n not in (INDEX_FILE, TEXTS_FILE)]
        for name in (INDEX_FILE, TEXTS_FILE, *extra_names):
            path = directory / name
            if name not in files:
                raise ConfigError(f"{meta_path}: no checksum recorded for {name}; {rebuild}")
            if not path.is_file():
                raise ConfigError(f"{path}: missing; {rebuild}")
            if sha256_file(path) != files[name]:
                raise ConfigError(
                    f"{path}: changed since the index was saved (sha256 differs from "
                    f"{META_FILE}); {rebuild}"
                )
        try:
            index = faiss.read_index(str(directory / INDEX_FILE))
        except RuntimeError as exc:
            raise ConfigError(f"{directory / INDEX_FILE}: FAISS cannot read it; {rebuild}") from exc
        if not isinstance(index, faiss.IndexPreTransform):
            raise ConfigError(f"{directory / INDEX_FILE}: not an embedkit index; {rebuild}")
        texts, user_ids = _read_texts(directory / TEXTS_FILE)
        ntotal = meta.get("ntotal")
        if index.ntotal != ntotal or len(texts) != ntotal:
            raise ConfigError(
                f"{directory}: {META_FILE} says ntotal={ntotal} but {INDEX_FILE} holds "
                f"{index.ntotal} vectors and {TEXTS_FILE} {len(texts)} texts; {rebuild}"
            )
        if index.d != meta.get("dim_in"):
            raise ConfigError(
                f"{directory / INDEX_FILE}: takes {index.d}-d vectors but {META_FILE} says "
                f"dim_in={meta.get('dim_in')}; {rebuild}"
            )
        if meta.get("metric") not in METRICS:
            raise ConfigError(f"{meta_path}: unknown metric {meta.get('metric')!r}; {rebuild}")
        loaded = cls(
            index,
            texts,
            user_ids,
            factory=str(meta.get("factory")),
            metric=meta["metric"],
            dim_in=int(meta["dim_in"]),
            dim=int(meta.get("dim", meta["dim_in"])),
            recipe=meta.get("recipe") or {},
            build_seconds=float(meta.get("build_seconds") or 0.0),
            created=str(meta.get("created", "")),
            extra={k: meta[k] for k in ("seed", "train_size", "transform") if k in meta},
        )
        loaded.extra_files = extra_names
        return loaded

    def __repr__(self) -> str:
        return (
            f"EmbeddingIndex(factory={self.factory!r}, metric={self.metric!r}, "
            f"dim_in={self.dim_in}, dim={self.dim}, ntotal={self.ntotal})"
        )


# --------------------------------------------------------------------------------------------


def _dedupe(
    texts: list[str], ids: Sequence[str | int | None] | None, seen: Any
) -> tuple[list[int], list[str], list[str | None]]:
    """Rows to keep: texts not in ``seen`` and not repeated earlier in the batch."""
    if ids is not None:
        ids = list(ids)
        if len(ids) != len(texts):
            raise ConfigError(f"got {len(texts)} texts but {len(ids)} ids")
    keep: list[int] = []
    kept_texts: list[str] = []
    kept_ids: list[str | None] = []
    batch: set[str] = set()
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ConfigError(f"text {i} is {type(t).__name__}, not a string")
        if t in seen or t in batch:
            continue
        batch.add(t)
        keep.append(i)
        kept_texts.append(t)
        u = ids[i] if ids is not None else None
        kept_ids.append(None if u is None else str(u))
    return keep, kept_texts, kept_ids


def _read_texts(path: Path) -> tuple[list[str], list[str | None]]:
    texts: list[str] = []
    user_ids: list[str | None] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            try:
                row = json.loads(line)
                ok = isinstance(row, dict) and row.get("id") == len(texts)
                ok = ok and isinstance(row.get("text"), str)
            except ValueError:
                ok = False
            if not ok:
                raise ConfigError(
                    f'{path}:{lineno}: expected {{"id": {len(texts)}, "text": ...}}; '
                    "rebuild the index"
                )
            texts.append(row["text"])
            u = row.get("user_id")
            user_ids.append(None if u is None else str(u))
    return texts, user_ids


def _plain_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name


def _flag(key: str) -> str:
    return key.replace("_", "-")


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)
