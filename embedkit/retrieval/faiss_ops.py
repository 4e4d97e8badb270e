"""FAISS plumbing: one factory-built index behind the baked pre-transforms, training, adding,
per-call search parameters and the thread count.

Search settings (``nprobe`` for IVF, ``efSearch`` for HNSW) are passed to each search as
``faiss.SearchParameters`` objects, so a search never changes the index and needs no lock. Which
settings an index takes is asked of ``faiss.ParameterSpace``, which sees through
``IndexPreTransform`` (an IVF index with an HNSW quantizer takes ``nprobe`` and
``quantizer_efSearch``).

>>> import numpy as np
>>> x = np.random.default_rng(0).standard_normal((500, 8)).astype("float32")
>>> index, _ = build_faiss(x, "IVF4,Flat", "cosine", None)
>>> sorted(tunable_parameters(index))
['nprobe']
>>> type(search_parameters(index, "IVF4,Flat", nprobe=4, ef_search=None)).__name__
'SearchParametersPreTransform'
>>> search_parameters(index, "IVF4,Flat", nprobe=None, ef_search=None) is None
True
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from embedkit.errors import ConfigError, EmbedkitError, check_int
from embedkit.postprocess.affine import AffineMap
from embedkit.store.encode_folder import draw_rows

try:
    import faiss as _faiss
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise EmbedkitError(
        "FAISS is not installed; install it with `pip install embedkit[faiss]` (or faiss-cpu)"
    ) from exc

#: the faiss module, typed loosely: its SWIG stubs know neither the keyword constructors of
#: the SearchParameters classes nor the attributes of downcast indexes
faiss: Any = _faiss

logger = logging.getLogger(__name__)

__all__ = [
    "METRICS",
    "add_vectors",
    "as_matrix",
    "build_faiss",
    "check_metric",
    "faiss_thread_count",
    "faiss_threads",
    "ivf_nlist",
    "make_faiss_index",
    "on_disk_lists",
    "read_faiss_index",
    "search_parameters",
    "serialized_bytes",
    "train_index",
    "train_sample_size",
    "tunable_parameters",
]

#: metric name -> FAISS metric. "cosine" is inner product on L2-normalised vectors.
METRICS = {
    "cosine": faiss.METRIC_INNER_PRODUCT,
    "ip": faiss.METRIC_INNER_PRODUCT,
    "l2": faiss.METRIC_L2,
}

_ADD_CHUNK = 16384


def as_matrix(vectors: Any, name: str = "vectors", dim: int | None = None) -> np.ndarray:
    """Validate and convert to a C-contiguous float32 (n, d) matrix.

    >>> as_matrix([1, 2], dim=2).shape
    (1, 2)
    """
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


#: a model folder's declared similarity (similarity_fn_name) -> the index metric it means
SIMILARITY_METRICS = {"cosine": "cosine", "dot": "ip", "euclidean": "l2"}


def metric_for_similarity(similarity: str) -> str:
    """The index metric of a declared similarity; ``manhattan`` has none here.

    >>> metric_for_similarity("dot")
    'ip'
    """
    if similarity not in SIMILARITY_METRICS:
        raise ConfigError(f"the model declares similarity {similarity!r}, which no index metric "
                          f"here computes ({', '.join(METRICS)}); give the metric explicitly",
                          param="metric")
    return SIMILARITY_METRICS[similarity]


def check_metric(metric: str) -> str:
    """``metric`` if FAISS knows it (cosine, ip, l2), else :class:`ConfigError`."""
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}",
                          param="metric")
    return metric


def make_faiss_index(
    dim_in: int, factory: str, metric: str, transform: AffineMap | None
) -> faiss.IndexPreTransform:
    """``IndexPreTransform([LinearTransform?, NormalizationTransform?], index_factory(...))``.

    The linear part of ``transform`` comes from :meth:`AffineMap.to_faiss`; the normalisation
    is the metric's (``cosine``), so a map's own ``normalize`` is not applied twice.
    """
    if not isinstance(factory, str) or not factory.strip():
        raise ConfigError("factory must be a non-empty FAISS factory string such as 'Flat'",
                          param="factory")
    dim = transform.k if transform is not None else dim_in
    try:
        inner = faiss.index_factory(int(dim), factory, METRICS[metric])
    except RuntimeError as exc:
        raise ConfigError(
            f"FAISS cannot build factory {factory!r} for dimension {dim}: "
            f"{str(exc).splitlines()[-1]}", param="factory"
        ) from exc
    _no_polysemous_training(inner)
    index = faiss.IndexPreTransform(inner)
    steps: list[Any] = []
    if transform is not None:
        steps += transform.with_normalize(False).to_faiss()
    if metric == "cosine":
        steps.append(faiss.NormalizationTransform(int(dim), 2.0))
    for step in reversed(steps):  # prepend_transform puts a step at the front
        index.prepend_transform(step)
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


def ivf_nlist(index: faiss.Index) -> int | None:
    """The number of inverted lists of the IVF index inside ``index``, or None."""
    try:
        return int(faiss.extract_index_ivf(index).nlist)
    except RuntimeError:
        return None


def on_disk_lists(index: faiss.Index) -> Any | None:
    """The ``OnDiskInvertedLists`` of the IVF index inside ``index``, or None (in memory, or
    not IVF)."""
    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        return None
    if ivf.invlists is None:
        return None
    lists = faiss.downcast_InvertedLists(ivf.invlists)
    return lists if isinstance(lists, faiss.OnDiskInvertedLists) else None


def read_faiss_index(path: str | os.PathLike, lists_file: str | os.PathLike | None = None
                     ) -> faiss.Index:
    """``faiss.read_index(path)``; with ``lists_file``, an index whose inverted lists are on
    disk, mapped from ``lists_file`` whatever file name FAISS stored when it was written.

    FAISS stores the absolute path of the lists and maps that file when it reads the index, so
    a copied or moved folder would search the lists of the folder it was built in (a crash once
    those change). Here the index is read without mapping (``IO_FLAG_SKIP_IVF_DATA``), the
    lists are pointed at ``lists_file`` and only then mapped. An index whose lists are on disk
    read without ``lists_file``, or one whose lists are not on disk read with it, or a
    ``lists_file`` shorter than the lists, is a :class:`ConfigError` (nothing is mapped).
    """
    path = os.fspath(path)
    flags = 0 if lists_file is None else faiss.IO_FLAG_SKIP_IVF_DATA
    try:
        index = faiss.read_index(path, flags)
    except RuntimeError as exc:
        raise ConfigError(f"{path}: FAISS cannot read it "
                          f"({str(exc).strip().splitlines()[-1]})") from exc
    lists = on_disk_lists(index)
    if lists_file is None:
        if lists is not None:
            raise ConfigError(f"{path}: its inverted lists are on disk in {lists.filename}, a "
                              "file outside the folder that is not checked")
        return index
    lists_file = os.fspath(lists_file)
    if lists is None:
        raise ConfigError(f"{path}: its inverted lists are not on disk, yet {lists_file} is "
                          "recorded beside it")
    size = os.path.getsize(lists_file)
    if size < int(lists.totsize):
        raise ConfigError(f"{lists_file}: {size} bytes but the index's lists take "
                          f"{int(lists.totsize)}")
    lists.filename = lists_file
    try:
        lists.do_mmap()
    except RuntimeError as exc:
        raise ConfigError(f"{lists_file}: FAISS cannot map it "
                          f"({str(exc).strip().splitlines()[-1]})") from exc
    return index


def tunable_parameters(index: faiss.Index) -> frozenset[str]:
    """The search-time parameters ``faiss.ParameterSpace`` finds (nprobe, efSearch, ...)."""
    space = faiss.ParameterSpace()
    space.initialize(index)
    ranges = space.parameter_ranges
    return frozenset(ranges.at(i).name for i in range(ranges.size()))


#: faiss k-means: it warns below 39 points per centroid and subsamples above 256
MIN_POINTS_PER_CENTROID = 39
#: training vectors for non-IVF trained factories (PQ/SQ codebooks, PCA): ~39 * 256
MIN_TRAIN = 10000


def train_sample_size(index: faiss.Index, total: int, train_size: int | None = None) -> int:
    """Training vectors for ``index`` out of ``total``: ``train_size`` if given, else faiss's
    points-per-centroid rule for IVF (40 per list: faiss warns below 39 and subsamples above
    256; at least :data:`MIN_TRAIN`, about 39 x 256, for the 256-centroid PQ / SQ codebooks and a
    PCA of non-IVF factories), at most ``total``.

    >>> train_sample_size(make_faiss_index(8, "IVF100,Flat", "cosine", None), 10**6)
    10000
    >>> train_sample_size(make_faiss_index(8, "IVF1000,Flat", "cosine", None), 10**6)
    40000
    """
    if train_size is not None:
        return min(int(train_size), total)
    nlist = ivf_nlist(index) or 0
    size = min(max(40 * nlist, MIN_TRAIN), total)
    if nlist and size < MIN_POINTS_PER_CENTROID * nlist:
        logger.warning("training IVF%d on %d vectors: faiss wants at least %d (%d per list)",
                       nlist, size, MIN_POINTS_PER_CENTROID * nlist, MIN_POINTS_PER_CENTROID)
    return size


def _largest_pow2_at_most(x: int) -> int:
    return 1 << max(0, int(math.floor(math.log2(max(1, x)))))


def _seed_clusterings(index: faiss.Index, seed: int) -> None:
    """Give every k-means of the index (IVF coarse quantizer, PQ codebooks) the seed ``seed``
    instead of FAISS's built-in 1234, so the recorded seed is the one training used."""
    todo = [index]
    while todo:
        idx = faiss.downcast_index(todo.pop())
        if isinstance(idx, faiss.IndexPreTransform):
            todo.append(idx.index)
        elif isinstance(idx, faiss.IndexRefine):
            todo.append(idx.base_index)
        if isinstance(idx, faiss.IndexIVF):
            idx.cp.seed = int(seed)
            todo.append(idx.quantizer)
        pq = getattr(idx, "pq", None)
        if pq is not None and hasattr(pq, "cp"):
            pq.cp.seed = int(seed)


def _training_sample(index: faiss.Index, x: np.ndarray, factory: str, train_size: int | None,
                     seed: int) -> np.ndarray:
    n = x.shape[0]
    size = train_sample_size(index, n, train_size)
    if size < 1:
        raise ConfigError(
            f"factory {factory!r} must be trained but there are no vectors to train it on"
        )
    _seed_clusterings(index, seed)
    nlist = ivf_nlist(index)
    if nlist is not None:
        if size < nlist:
            suggest = _largest_pow2_at_most(size // 39)
            raise ConfigError(
                f"factory {factory!r} needs at least {nlist} training vectors (one per IVF "
                f"list; FAISS recommends {39 * nlist}) but only {size} are available; use a "
                f"smaller nlist, e.g. 'IVF{suggest}' for this many vectors, or a 'Flat' index",
                param="factory")
    return np.ascontiguousarray(x if size >= n else x[draw_rows(n, size, seed)])


def train_index(
    index: faiss.Index, x: np.ndarray, factory: str, train_size: int | None, seed: int
) -> None:
    """Train ``index`` (if it needs it) on ``train_size`` vectors of ``x`` sampled with ``seed``."""
    if index.is_trained:
        return
    sample = _training_sample(index, x, factory, train_size, seed)
    try:
        index.train(sample)
    except RuntimeError as exc:
        msg = str(exc)
        if "Number of training points" in msg:
            # "... Number of training points (100) should be at least as large as number of
            #  clusters (256)"
            need = msg.rsplit("(", 1)[-1].split(")", 1)[0]
            raise ConfigError(
                f"factory {factory!r} needs at least {need} training vectors but only "
                f"{sample.shape[0]} are available; use a smaller nlist / fewer PQ bits, or a "
                "'Flat' index", param="factory"
            ) from exc
        raise ConfigError(f"FAISS could not train {factory!r}: {msg.splitlines()[-1]}",
                          param="factory") from exc


def add_vectors(index: faiss.Index, x: np.ndarray, progress: bool = False) -> None:
    """``index.add(x)``, in chunks under a progress bar with ``progress``."""
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


def build_faiss(
    vectors: np.ndarray,
    factory: str,
    metric: str,
    transform: AffineMap | None,
    *,
    train_size: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> tuple[faiss.IndexPreTransform, float]:
    """Make, train and fill an index; return it and the seconds spent training + adding."""
    index = make_faiss_index(vectors.shape[1], factory, metric, transform)
    start = time.perf_counter()
    train_index(index, vectors, factory, train_size, seed)
    add_vectors(index, vectors, progress)
    return index, time.perf_counter() - start


def _check_settings(index: faiss.Index, factory: str, nprobe: int | None,
                    ef_search: int | None) -> None:
    names = tunable_parameters(index) if nprobe is not None or ef_search is not None else ()
    if nprobe is not None:
        check_int(nprobe, "nprobe")
        if "nprobe" not in names:
            raise ConfigError(f"nprobe applies to IVF indexes only; this index is {factory!r}",
                              param="nprobe")
    if ef_search is not None:
        check_int(ef_search, "ef_search")
        if not {"efSearch", "quantizer_efSearch"} & set(names):
            raise ConfigError(
                f"ef_search applies to HNSW indexes only; this index is {factory!r}",
                param="ef_search")


def search_parameters(index: faiss.Index, factory: str, *, nprobe: int | None,
                      ef_search: int | None) -> faiss.SearchParameters | None:
    """``faiss.SearchParameters`` for one search with ``nprobe`` (IVF) and ``ef_search``
    (HNSW, or an IVF index's HNSW quantizer), or None when neither is given.

    Settings not given keep the index's own values. A setting the index does not take is a
    :class:`ConfigError` naming it.
    """
    _check_settings(index, factory, nprobe, ef_search)
    if nprobe is None and ef_search is None:
        return None
    return _params_for(index, nprobe, ef_search)


def _params_for(index: faiss.Index, nprobe: int | None,
                ef_search: int | None) -> faiss.SearchParameters | None:
    """The parameter object matching ``index``'s structure (recursing into wrappers)."""
    idx = faiss.downcast_index(index)
    if isinstance(idx, faiss.IndexPreTransform):
        inner = _params_for(idx.index, nprobe, ef_search)
        return None if inner is None else faiss.SearchParametersPreTransform(index_params=inner)
    if isinstance(idx, faiss.IndexRefine):
        inner = _params_for(idx.base_index, nprobe, ef_search)
        return None if inner is None else faiss.IndexRefineSearchParameters(
            base_index_params=inner, k_factor=idx.k_factor)
    if isinstance(idx, faiss.IndexIVF):
        quantizer = _params_for(idx.quantizer, None, ef_search)
        params = faiss.SearchParametersIVF(
            nprobe=int(nprobe) if nprobe is not None else int(idx.nprobe),
            max_codes=int(idx.max_codes))
        if quantizer is not None:
            params.quantizer_params = quantizer
        return params
    if isinstance(idx, faiss.IndexHNSW) and ef_search is not None:
        return faiss.SearchParametersHNSW(efSearch=int(ef_search))
    return None


def serialized_bytes(index: faiss.Index) -> int:
    """Size of the serialised index in bytes (a proxy for its memory use)."""
    return int(faiss.serialize_index(index).nbytes)


def faiss_threads() -> int:
    """The number of threads FAISS searches and trains with."""
    return int(faiss.omp_get_max_threads())


@contextlib.contextmanager
def faiss_thread_count(threads: int | None) -> Iterator[int]:
    """Run the block with FAISS using ``threads`` threads (None: as it is), then restore the
    count; yields the count in effect.

    >>> with faiss_thread_count(1) as n:
    ...     n
    1
    """
    before = faiss_threads()
    if threads is not None:
        faiss.omp_set_num_threads(check_int(threads, "threads"))
    try:
        yield faiss_threads()
    finally:
        faiss.omp_set_num_threads(before)
