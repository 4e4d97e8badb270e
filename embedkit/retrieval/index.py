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

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from embedkit.aliases import StrPath
from embedkit.errors import ConfigError
from embedkit.io.atomic import LOCK_TIMEOUT
from embedkit.postprocess.affine import AffineMap
from embedkit.provenance import library_versions
from embedkit.retrieval.faiss_ops import (
    METRICS,
    add_vectors,
    as_matrix,
    check_metric,
    faiss,
    search_parameters,
    serialized_bytes,
)
from embedkit.retrieval.persistence import FORMAT, read_index_folder, write_index_folder
from embedkit.retrieval.shards import ArraySource, dedupe_rows, fill_index
from embedkit.retrieval.tuning import search_defaults_of
from embedkit.store.recipe import Recipe, RecipeConflict, compare_recipe

__all__ = ["EmbeddingIndex", "Hit", "METRICS", "as_affine_map"]


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


def as_affine_map(transform: Any, dim_in: int, metric: str = "cosine") -> AffineMap | None:
    """An :class:`AffineMap` (or a ``(kernel, bias)`` pair) checked against the vectors'
    dimension, its arrays rounded to the float32 FAISS stores.

    A map ending in L2 normalisation is only possible with ``metric="cosine"`` (the index's
    normalisation step is that one).

    >>> as_affine_map((np.eye(3)[:, :2], np.zeros(3)), 3)
    AffineMap(d=3, k=2, normalize=False)
    """
    if transform is None:
        return None
    if not isinstance(transform, AffineMap):
        try:
            kernel, bias = transform
        except (TypeError, ValueError) as exc:
            raise ConfigError("transform must be an AffineMap or a (kernel, bias) pair",
                              param="transform") from exc
        kernel = np.asarray(kernel, dtype=np.float32)
        bias = np.asarray(bias, dtype=np.float32).reshape(-1)
        if kernel.ndim != 2 or kernel.shape[0] != dim_in:
            raise ConfigError(
                f"transform kernel has shape {kernel.shape} but the vectors have dimension "
                f"{dim_in}; expected ({dim_in}, k)", param="transform")
        transform = AffineMap(kernel, bias)
    if transform.d != dim_in:
        raise ConfigError(f"transform takes d={transform.d} but the vectors have dimension "
                          f"{dim_in}", param="transform")
    if transform.normalize and metric != "cosine":
        raise ConfigError("transform ends with L2 normalisation, which an index applies only "
                          f"with metric='cosine' (given: {metric})", param="metric")
    kernel32, bias32 = transform.float32()
    return AffineMap(kernel32, bias32, transform.normalize)


def _json_recipe(recipe: Recipe | Mapping[str, Any] | None) -> dict[str, Any]:
    if recipe is None:
        return {}
    if isinstance(recipe, Recipe):
        return recipe.to_dict()
    if not isinstance(recipe, Mapping):
        raise ConfigError("recipe must be a Recipe or a dict", param="recipe")
    try:
        return json.loads(json.dumps(dict(recipe)))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"recipe must be JSON-serialisable: {exc}", param="recipe") from exc


class EmbeddingIndex:
    """Texts, their FAISS index (with the post-processing baked in) and the recipe behind them.

    Build with :meth:`build`, read back with :meth:`load`. Positions (``Hit.id``) are 0-based in
    insertion order and match the lines of ``texts.jsonl``. Searches never change the index
    (their settings are per call) and may run concurrently; :meth:`add` and :meth:`save` may
    not run alongside other calls.

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
        #: the recipe as stored in index.json (a dict; :class:`Recipe` reads it typed)
        self.recipe: dict[str, Any] = dict(recipe or {})
        self.build_seconds = build_seconds
        self.created = created
        self._extra = dict(extra or {})
        #: names of the extra files the folder this index was loaded from holds (see save)
        self.extra_files: list[str] = []

    # ---- construction --------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        vectors: Any,
        texts: Sequence[str],
        *,
        factory: str = "Flat",
        metric: str = "cosine",
        transform: AffineMap | tuple[Any, Any] | None = None,
        ids: Sequence[str | int | None] | None = None,
        recipe: Recipe | Mapping[str, Any] | None = None,
        train_size: int | None = None,
        seed: int = 0,
        progress: bool = False,
        tune: bool = True,
        codes: str = "float",
        rescore: int = 4,
        rescore_with: str = "float",
    ) -> EmbeddingIndex:
        """Index raw pooled vectors (n x d float32) and their texts.

        ``transform`` is the affine post-processor ``y = (x + bias) @ kernel``: an
        :class:`~embedkit.postprocess.AffineMap` or a ``(kernel, bias)`` pair such as
        ``(w.kernel_, w.bias_)`` of a fitted Whitening; with ``metric="cosine"`` the vectors are
        L2-normalised after it. ``factory`` is any FAISS factory string ("Flat",
        "IVF1024,Flat", "HNSW32", "IVF256,PQ32", "PCA64,IVF256,Flat"). Indexes that need
        training (IVF, PQ, PCA) are trained on a random sample of ``train_size`` vectors drawn
        with ``seed``. Duplicate texts are indexed once (the first occurrence). ``recipe``
        (a :class:`Recipe` or any JSON-ready dict) is stored in ``index.json``. With ``tune``,
        an IVF or HNSW index gets default search settings (the smallest ``nprobe`` /
        ``efSearch`` reaching recall@10 >= 0.95 against exact search on a seeded sample of
        its vectors: :mod:`embedkit.retrieval.tuning`), stored in the recipe as
        ``search_defaults`` and used by :meth:`search` when none is given. ``codes`` (what
        the index keeps: ``float``, ``int8``, ``binary``, or ``factory``: the factory's own PQ /
        SQ4 codes) ``int8`` / ``binary`` / ``factory`` builds the SQ8 / binary / given form of
        ``factory`` whose searches rescore ``rescore`` x k candidates from the ``rescore_with`` vectors kept on disk
        (:mod:`embedkit.retrieval.quantized`).

        >>> import numpy as np
        >>> v = np.random.default_rng(0).standard_normal((20, 4)).astype("float32")
        >>> EmbeddingIndex.build(v, [str(i) for i in range(20)], factory="HNSW8").ntotal
        20
        """
        metric = check_metric(metric)
        x = as_matrix(vectors)
        texts = list(texts)
        if len(texts) != x.shape[0]:
            raise ConfigError(f"got {x.shape[0]} vectors but {len(texts)} texts", param="texts")
        stored = _json_recipe(recipe)
        amap = as_affine_map(transform, x.shape[1], metric)
        keep, kept_texts, kept_ids = dedupe_rows(texts, ids, set())
        xk = x[keep] if len(keep) != x.shape[0] else x
        from embedkit.retrieval.quantized import make_index  # float or quantised, one path

        index = make_index(x.shape[1], factory, metric, amap, codes=codes, rescore=rescore,
                           rescore_with=rescore_with)
        filled = fill_index(index, ArraySource(xk, kept_texts, kept_ids), factory, metric, amap,
                            train_size=train_size, seed=seed, tune=tune, progress=progress)
        if filled.search_defaults is not None:
            stored["search_defaults"] = filled.search_defaults
        settings = getattr(index, "settings", None)  # a quantised index's codes
        if settings is not None:
            stored["vectors"] = settings.to_dict()
        return cls(
            index, filled.texts, filled.user_ids, factory=getattr(index, "factory", factory),
            metric=metric, dim_in=x.shape[1], dim=amap.k if amap is not None else x.shape[1],
            recipe=stored, build_seconds=filled.seconds,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            extra={"seed": int(seed), "train_size": train_size, "transform": amap is not None,
                   **({"quantized": settings.to_dict()} if settings is not None else {})},
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
        x = as_matrix(vectors, dim=self.dim_in)
        texts = list(texts)
        if len(texts) != x.shape[0]:
            raise ConfigError(f"got {x.shape[0]} vectors but {len(texts)} texts", param="texts")
        keep, kept_texts, kept_ids = dedupe_rows(texts, ids, self._positions)
        if not keep:
            return 0
        if self._extra.get("quantized"):  # hook: quantised indexes' stores are not grown
            raise ConfigError(f"index {self.factory!r} is quantised (its rescoring vectors are "
                              "a file of the folder); rebuild it with the new texts")
        if not self._index.is_trained:  # pragma: no cover - build always trains
            raise ConfigError(f"index {self.factory!r} is not trained; rebuild it")
        add_vectors(self._index, np.ascontiguousarray(x[keep]))
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

        ``nprobe`` (IVF) and ``ef_search`` (HNSW) apply to this search only; one not given is
        the index's stored default (:attr:`search_defaults`; FAISS's own for indexes saved
        without one). A 1-D vector is one query. Fewer than ``k`` hits come back when the index
        holds fewer texts.

        >>> import numpy as np
        >>> idx = EmbeddingIndex.build(np.eye(2, dtype="float32"), ["a", "b"])
        >>> [[h.text for h in hs] for hs in idx.search(np.eye(2, dtype="float32"), k=5)]
        [['a', 'b'], ['b', 'a']]
        """
        q = as_matrix(query_vectors, name="query vectors", dim=self.dim_in)
        if int(k) < 1:
            raise ConfigError(f"k must be >= 1, got {k}", param="k")
        defaults = self.search_defaults
        nprobe = nprobe if nprobe is not None else defaults.get("nprobe")
        ef_search = ef_search if ef_search is not None else defaults.get("ef_search")
        n = self._index.ntotal
        if hasattr(self._index, "search_with"):  # hook: quantised indexes rescore
            if n == 0 or q.shape[0] == 0:
                return [[] for _ in range(q.shape[0])]
            scores, labels = self._index.search_with(q, min(int(k), n), nprobe=nprobe,
                                                     ef_search=ef_search)
        else:
            params = search_parameters(self._index, self.factory, nprobe=nprobe,
                                       ef_search=ef_search)
            if n == 0 or q.shape[0] == 0:
                return [[] for _ in range(q.shape[0])]
            scores, labels = self._index.search(q, min(int(k), n), params=params)
        return [
            [Hit(int(i), self._texts[i], float(s), self._user_ids[i])
             for s, i in zip(row_s, row_l, strict=True) if i >= 0]
            for row_s, row_l in zip(scores, labels, strict=True)
        ]

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
    def search_defaults(self) -> dict[str, int]:
        """The settings a search uses when given none: ``{"nprobe": N}`` or
        ``{"ef_search": E}`` as chosen at build time, ``{}`` when there are none.

        >>> import numpy as np
        >>> v = np.random.default_rng(0).standard_normal((400, 8)).astype("float32")
        >>> EmbeddingIndex.build(v, [str(i) for i in range(400)], factory="IVF8,Flat"
        ...                      ).search_defaults["nprobe"] > 1
        True
        """
        return search_defaults_of(self.recipe)

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
        if hasattr(self._index, "memory_bytes"):  # hook: quantised (the store is on disk)
            return int(self._index.memory_bytes())
        return serialized_bytes(self._index)

    def affine_map(self) -> AffineMap | None:
        """The affine map baked into the index, or None when built without a transform.

        Its kernel is the build-time one; its bias is the minimum-norm bias giving the same map
        (the build-time bias itself is not stored when the kernel is not square). The cosine
        normalisation, if any, follows this map and is not part of it.

        >>> import numpy as np
        >>> m = AffineMap(np.eye(3)[:, :2], np.ones(3))
        >>> idx = EmbeddingIndex.build(np.eye(3, dtype="float32"), ["a", "b", "c"], transform=m)
        >>> idx.affine_map().apply(np.zeros((1, 3))).tolist()
        [[1.0, 1.0]]
        """
        chain = self._index.chain
        for i in range(chain.size()):
            vt = faiss.downcast_VectorTransform(chain.at(i))
            if isinstance(vt, faiss.LinearTransform) and not isinstance(
                vt, faiss.NormalizationTransform
            ):
                a = faiss.vector_to_array(vt.A).reshape(vt.d_out, vt.d_in).astype(np.float64)
                b = (faiss.vector_to_array(vt.b).astype(np.float64) if vt.have_bias
                     else np.zeros(vt.d_out))
                kernel = a.T
                return AffineMap(kernel, b @ np.linalg.pinv(kernel))
        return None

    def check_recipe(self, requested: Mapping[str, Any]) -> list[RecipeConflict]:
        """The requested settings that differ from the recipe the index was built with.

        ``None`` values mean "not given" and are skipped; a key stored as None means "none"
        (e.g. no post-processor) and does conflict with a given value; a key the recipe does
        not record cannot be checked and only warns. Whether a conflict is an error is the
        caller's choice.

        >>> import numpy as np
        >>> idx = EmbeddingIndex.build(np.eye(2, dtype="float32"), ["a", "b"],
        ...                            recipe={"pooling": "cls"})
        >>> idx.check_recipe({"pooling": "cls", "max_length": None})
        []
        >>> [c.describe() for c in idx.check_recipe({"pooling": "last-avg"})]
        ['index was built with pooling=cls but pooling=last-avg was given']
        """
        return compare_recipe(self.recipe, requested)

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
        self, directory: StrPath,
        extra_files: Mapping[str, bytes | StrPath] | None = None,
        *, lock_timeout: float | None = LOCK_TIMEOUT,
    ) -> Path:
        """Write ``index.faiss``, ``texts.jsonl`` and ``index.json`` to ``directory`` atomically.

        The folder is replaced as a whole: a reader never sees a mix of old and new files.
        ``extra_files`` maps plain file names to their bytes (or a file to copy); they are
        written into the folder too and their sha256s recorded in ``index.json``, so
        :meth:`load` refuses the folder when one of them changes. The folder's lock is taken
        for the write (another process writing it is waited for up to ``lock_timeout``
        seconds).
        """
        if hasattr(self._index, "files"):  # hook: a quantised index's binary index and store
            extra_files = {**self._index.files(), **(extra_files or {})}
        return write_index_folder(directory, self._index, self._texts, self._user_ids,
                                  self.metadata(), extra_files, lock_timeout=lock_timeout)

    @classmethod
    def load(cls, directory: StrPath) -> EmbeddingIndex:
        """Read an index saved by :meth:`save`, checking file checksums and counts.

        Any disagreement (missing or changed file, counts that differ) raises
        :class:`ConfigError` naming the file.
        """
        stored = read_index_folder(directory)
        meta = stored.meta
        loaded = cls(
            stored.index, stored.texts, stored.user_ids,
            factory=str(meta.get("factory")),
            metric=meta["metric"],
            dim_in=int(meta["dim_in"]),
            dim=int(meta.get("dim", meta["dim_in"])),
            recipe=meta.get("recipe") or {},
            build_seconds=float(meta.get("build_seconds") or 0.0),
            created=str(meta.get("created", "")),
            extra={k: meta[k] for k in ("seed", "train_size", "transform", "on_disk",
                                         "quantized")
                   if k in meta},
        )
        loaded.extra_files = stored.extra_files
        return loaded

    def __repr__(self) -> str:
        return (
            f"EmbeddingIndex(factory={self.factory!r}, metric={self.metric!r}, "
            f"dim_in={self.dim_in}, dim={self.dim}, ntotal={self.ntotal})"
        )
