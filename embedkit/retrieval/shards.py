"""A FAISS index filled from a vector source: the one training, adding and tuning of every index.

A :class:`VectorSource` holds rows ``(id, text, vector)``: it streams them as ``(ids, texts,
vectors)`` batches and reads the vectors of given row numbers. Vectors in memory
(:class:`ArraySource`) are one source, an encode folder's shards
(:class:`~embedkit.store.encode_folder.EncodeFolder`) another. :func:`fill_index` trains an
index on a seeded sample of the rows (:func:`~embedkit.store.encode_folder.draw_rows`, the one
row sampler), adds the batches in bounded memory (optionally into on-disk inverted lists, as
faiss's ``contrib.ondisk.merge_ondisk`` does), each text once (its first row), and chooses the
search default on the way (:class:`~embedkit.retrieval.tuning.RecallProbe`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from embedkit.errors import ConfigError
from embedkit.postprocess.affine import AffineMap
from embedkit.retrieval.faiss_ops import (
    add_vectors,
    faiss,
    ivf_nlist,
    train_index,
    train_sample_size,
    tunable_parameters,
)
from embedkit.retrieval.persistence import IVFDATA_FILE
from embedkit.retrieval.tuning import RowProbe
from embedkit.store.encode_folder import draw_rows

__all__ = ["IVFDATA_FILE", "ArraySource", "Filled", "VectorSource", "check_on_disk", "dedupe_rows",
           "fill_index", "train_sample_size"]

logger = logging.getLogger(__name__)

Batch = tuple[Sequence[Any], list[str], np.ndarray]


class VectorSource(Protocol):
    """Rows of ``(id, text, vector)`` to index, streamed and sampled."""

    @property
    def dim(self) -> int: ...
    @property
    def total_rows(self) -> int: ...
    def batches(self) -> Iterator[Batch]: ...
    def rows(self, rows: np.ndarray) -> np.ndarray: ...


@dataclass
class ArraySource:
    """Vectors in memory (n x d) and their texts and ids (None: no ids): one batch."""

    x: np.ndarray
    texts: list[str]
    ids: Sequence[str | int | None] | None = None

    @property
    def dim(self) -> int:
        return int(self.x.shape[1])

    @property
    def total_rows(self) -> int:
        return int(self.x.shape[0])

    def batches(self) -> Iterator[Batch]:
        yield (self.ids if self.ids is not None else [None] * len(self.texts)), self.texts, self.x

    def rows(self, rows: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self.x if len(rows) == self.x.shape[0] else self.x[rows])


def dedupe_rows(texts: list[str], ids: Sequence[str | int | None] | None,
                seen: Collection[str]) -> tuple[list[int], list[str], list[str | None]]:
    """Rows to keep: texts not in ``seen`` and not repeated earlier in the batch (each text's
    first row), with their texts and ids (as strings)."""
    if ids is not None:
        ids = list(ids)
        if len(ids) != len(texts):
            raise ConfigError(f"got {len(texts)} texts but {len(ids)} ids", param="ids")
    keep: list[int] = []
    kept_texts: list[str] = []
    kept_ids: list[str | None] = []
    batch: set[str] = set()
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ConfigError(f"text {i} is {type(t).__name__}, not a string", param="texts")
        if t in seen or t in batch:
            continue
        batch.add(t)
        keep.append(i)
        kept_texts.append(t)
        u = ids[i] if ids is not None else None
        kept_ids.append(None if u is None else str(u))
    return keep, kept_texts, kept_ids


@dataclass
class Filled:
    """What :func:`fill_index` kept: texts and ids by position, the search default chosen, the
    training vectors used, the seconds it took, and the on-disk lists file (or None)."""

    texts: list[str] = field(default_factory=list)
    user_ids: list[str | None] = field(default_factory=list)
    search_defaults: dict[str, Any] | None = None
    trained_on: int | None = None
    seconds: float = 0.0
    ivfdata: Path | None = None
    seen: set[str] = field(default_factory=set)

    def keep(self, ids: Sequence[Any], texts: list[str]) -> list[int]:
        """The rows of a batch to add (each text once), recorded."""
        rows, kept_texts, kept_ids = dedupe_rows(list(texts), ids, self.seen)
        self.seen.update(kept_texts)
        self.texts.extend(kept_texts)
        self.user_ids.extend(kept_ids)
        return rows


def _train(index: Any, source: VectorSource, factory: str, train_size: int | None,
           seed: int) -> int | None:
    if index.is_trained:
        return None
    size = train_sample_size(index, source.total_rows, train_size)
    sample = source.rows(draw_rows(source.total_rows, size, seed))
    logger.info("training %r on %d sampled vectors (seed %d)", factory, sample.shape[0], seed)
    train_index(index, sample, factory, sample.shape[0], seed)
    return int(sample.shape[0])


def _add_in_memory(index: Any, source: VectorSource, filled: Filled, probe: RowProbe | None,
                   progress: bool) -> None:
    for n, (ids, texts, x) in enumerate(source.batches(), 1):
        first = len(filled.texts)
        keep = filled.keep(ids, texts)
        if probe is not None:
            probe.see(x, keep, first)
        if keep:
            add_vectors(index, np.ascontiguousarray(x if len(keep) == x.shape[0] else x[keep]),
                        progress)
        logger.info("added batch %d (%d vectors in all)", n, index.ntotal)


def _add_on_disk(index: Any, source: VectorSource, filled: Filled, work: Path,
                 probe: RowProbe | None) -> Path:
    """Fill a copy of the trained index per batch, then merge their lists into on-disk ones
    (``faiss.contrib.ondisk.merge_ondisk``); returns the ``.ivfdata`` file."""
    from faiss.contrib.ondisk import merge_ondisk

    trained = faiss.serialize_index(index)  # clone_index cannot copy the normalisation step
    blocks = []
    for n, (ids, texts, x) in enumerate(source.batches(), 1):
        start = len(filled.texts)
        keep = filled.keep(ids, texts)
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


def check_on_disk(index: Any, factory: str) -> None:
    """Refuse on-disk inverted lists for an index that cannot keep them."""
    if ivf_nlist(index) is None:
        raise ConfigError(f"on-disk inverted lists need an IVF factory, not {factory!r}",
                          param="on_disk")
    if isinstance(faiss.downcast_index(faiss.extract_index_ivf(index)), faiss.IndexIVFPQR):
        raise ConfigError("IVF...PQR indexes cannot keep their lists on disk", param="on_disk")


def fill_index(index: Any, source: VectorSource, factory: str, metric: str,
               transform: AffineMap | None, *, train_size: int | None = None, seed: int = 0,
               tune: bool = True, progress: bool = False,
               on_disk: Path | None = None, lists_at: Path | None = None) -> Filled:
    """Train ``index`` (when it needs it) on a seeded sample of ``source``'s rows, add its
    batches (each text once: its first row), and, with ``tune``, choose the default
    ``nprobe`` / ``efSearch`` against exact search on a seeded sample of the rows.

    ``on_disk``: a work folder where the inverted lists are merged into ``lists.ivfdata``
    (IVF factories); ``lists_at``: where the index folder will hold that file.
    """
    if on_disk is not None:
        check_on_disk(index, factory)
    start = time.perf_counter()
    filled = Filled(trained_on=_train(index, source, factory, train_size, seed))
    probe = None
    if tune and {"nprobe", "efSearch"} & tunable_parameters(index):
        probe = RowProbe(source.total_rows, source.rows, metric, transform, seed=seed)
    if on_disk is not None:
        filled.ivfdata = _add_on_disk(index, source, filled, on_disk, probe)
        if lists_at is not None:
            lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists)
            lists.filename = str(lists_at)  # where the folder will hold it
    else:
        _add_in_memory(index, source, filled, probe, progress)
    filled.search_defaults = probe.probe.choose(index, factory) if probe is not None else None
    filled.seconds = time.perf_counter() - start
    return filled
