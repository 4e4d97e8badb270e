"""Batches for the forward pass: token ids ordered longest first and cut either by a fixed number
of sentences or by a budget of padded tokens, and padded into numpy arrays that every backend
(torch, ONNX Runtime, OpenVINO) takes.

A token budget keeps the matrix products the same size whatever the sentences' lengths: short
sentences go in large batches and long ones in small batches, so neither the padding nor the
per-call overhead of tiny products is paid. Every sentence is in exactly one batch.

>>> plan_batches([5, 2, 9, 3], batch_size=2)
[[2, 0], [3, 1]]
>>> plan_batches([5, 2, 9, 3], batch_size=64, token_budget=18)
[[2, 0], [3, 1]]
>>> plan_batches([5, 2, 9, 3], batch_size=64, token_budget=20)
[[2, 0], [3, 1]]
>>> plan_batches([5, 2, 9, 3], batch_size=64, token_budget=30)
[[2, 0, 3], [1]]
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, Generic, TypeVar

import numpy as np

from embedkit.errors import ConfigError

T = TypeVar("T")


def plan_batches(lengths: Sequence[int], batch_size: int,
                 token_budget: int | None = None) -> list[list[int]]:
    """Indices of each batch, longest sentences first (peak memory comes early).

    ``token_budget=None``: ``batch_size`` sentences per batch. Otherwise a batch grows while its
    padded size (sentences x the longest one's length) stays within ``token_budget``; a single
    sentence longer than the budget gets a batch of its own.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, not {batch_size}", param="batch_size")
    order = np.argsort([-int(n) for n in lengths], kind="stable").tolist()
    if token_budget is None:
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if token_budget < 1:
        raise ConfigError(f"token_budget must be at least 1, not {token_budget}",
                          param="token_budget")
    batches: list[list[int]] = []
    current: list[int] = []
    width = 0
    for i in order:
        if current and (len(current) + 1) * width > token_budget:
            batches.append(current)
            current = []
        if not current:
            width = int(lengths[i])  # the longest of the batch: sorted longest first
        current.append(i)
    if current:
        batches.append(current)
    return batches


def pad_numpy(ids: Sequence[Sequence[int]], pad_id: int,
              side: str = "right") -> tuple[np.ndarray, np.ndarray]:
    """Pad token id lists into int64 ``(input_ids, attention_mask)`` arrays, on the right or (for
    decoders whose tokenizer says so) on the left.

    >>> a, m = pad_numpy([[101, 7, 102], [101, 102]], pad_id=0)
    >>> a.tolist(), m.tolist()
    ([[101, 7, 102], [101, 102, 0]], [[1, 1, 1], [1, 1, 0]])
    >>> pad_numpy([[5, 6], [5]], pad_id=9, side="left")[0].tolist()
    [[5, 6], [9, 5]]
    """
    width = max(len(x) for x in ids)
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for r, x in enumerate(ids):
        cols = slice(width - len(x), width) if side == "left" else slice(0, len(x))
        input_ids[r, cols] = x
        mask[r, cols] = 1
    return input_ids, mask


def _padded_tokens(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> int:
    """How many token positions the batches compute, padding included.

    >>> _padded_tokens([5, 2, 9, 3], [[2, 0], [3, 1]])
    24
    """
    return sum(len(b) * max(int(lengths[i]) for i in b) for b in batches if b)


class _End:
    """What the producer of a :class:`Prefetch` queues last: the end, or the error it raised."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class Prefetch(Generic[T]):
    """The items of an iterator, made ahead by a background thread, at most ``depth`` waiting
    (how the next batches are tokenised and padded while the model runs the current one).

    Items come in the iterator's order; several threads may take them at once. An error the
    iterator raises is raised by the ``next`` that reaches its place (and every later one).
    :meth:`close` (the ``with`` block's end, also on an error or an interrupt) stops the thread
    and waits for it: no thread is left behind.

    >>> with Prefetch(iter(range(5)), depth=2) as items:
    ...     list(items)
    [0, 1, 2, 3, 4]
    """

    def __init__(self, items: Iterable[T], depth: int = 4,
                 name: str = "embedkit-prefetch") -> None:
        self._items = iter(items)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name=name, daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        try:
            for item in self._items:
                if not self._put(item):
                    return
            self._put(_End())
        except BaseException as e:  # handed to the consumer, raised there
            self._put(_End(e))

    def _put(self, item: Any) -> bool:
        """Queue ``item`` unless :meth:`close` was called (False then)."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        item = self._queue.get()
        if isinstance(item, _End):
            self._queue.put_nowait(item)  # for the other consumers: one was just taken
            if item.error is not None:
                raise item.error
            raise StopIteration
        return item

    def close(self) -> None:
        """Stop the producer (after the item it is making) and wait for it."""
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join()

    def __enter__(self) -> Prefetch[T]:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
