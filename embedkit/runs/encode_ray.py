"""The Ray engine of :func:`~embedkit.runs.encode.run_encode`: the same shards, encoded by
a pool of Ray Data actors that each hold the encoder.

The driver reads the corpus (the same stable order as the local engine) and hands Ray the
shards still to encode, a window at a time, one block per shard:
``ray.data.from_arrow(blocks).map_batches(EmbedBatch, compute=ActorPoolStrategy(size=workers),
num_cpus=1, batch_size=None)`` (``concurrency=workers`` where ``ActorPoolStrategy`` is absent). Each actor builds the encoder from the :class:`EncoderConfig` once and
encodes a whole shard per call (so its batches, and its vectors, are the local engine's); the
driver writes each shard and the manifest as the vectors come back, so names, sha256 and the
manifest match the local engine's. Ray runs against ``address`` (or ``RAY_ADDRESS``) when given,
else a local Ray started for the run (``ray.init(num_cpus=...)``), or the one already started.

Ray is optional (``pip install 'embedkit[ray]'``); this module imports it only when it runs.

>>> ray_missing_message()
"the ray engine needs Ray Data; install it with `pip install 'embedkit[ray]'`"
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from embedkit.data.sources import require_pyarrow
from embedkit.encoders import EncoderConfig
from embedkit.errors import ConfigError

__all__ = ["EmbedBatch", "RayRun", "WINDOW_ROWS", "encode_ray", "import_ray", "ray_missing_message"]

logger = logging.getLogger(__name__)

#: rows handed to Ray at once (at least one shard): bounds the driver's memory
WINDOW_ROWS = 200_000

ShardJob = tuple[int, int, list[str], list[str]]
ShardDone = Callable[[int, int, list[str], list[str], np.ndarray], None]


def ray_missing_message() -> str:
    return "the ray engine needs Ray Data; install it with `pip install 'embedkit[ray]'`"


def import_ray() -> Any:
    """The ``ray`` module with Ray Data, or a :class:`ConfigError` saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ConfigError(ray_missing_message(), param="engine") from None
    return ray


@dataclasses.dataclass(frozen=True)
class RayRun:
    """What a Ray run encodes with: the encoder's settings, the pooling and max length every
    shard gets, the model identity every worker must report (None: not checked), and the pool
    (``workers`` actors, on the cluster at ``address`` / ``RAY_ADDRESS``, else a local Ray)."""

    config: EncoderConfig
    pooling: str
    max_length: int
    identity: str | None = None
    workers: int = 1
    address: str | None = None


class EmbedBatch:
    """A Ray Data callable class: builds the encoder once per actor, encodes a batch of rows
    (``shard``, ``pos``, ``text``) into ``embedding`` (and the encoder's ``identity``)."""

    def __init__(self, run: RayRun) -> None:
        config = dataclasses.replace(run.config, cache=False, progress=False)
        self.encoder = config.build(cache=False)
        self.identity = str(self.encoder.identity)
        self.pooling = run.pooling
        self.max_length = int(run.max_length)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        x = self.encoder.encode(texts, self.pooling, max_length=self.max_length)
        return {"shard": np.asarray(batch["shard"]), "pos": np.asarray(batch["pos"]),
                "embedding": np.asarray(x, np.float32),
                "identity": np.array([self.identity] * len(texts))}


def ray_verbose() -> bool:
    """Whether Ray's own logging is shown: when the ``embedkit`` logger shows debug records
    (the command line's debug option sets it); otherwise only Ray's errors reach the terminal."""
    return logging.getLogger("embedkit").isEnabledFor(logging.DEBUG)


@contextlib.contextmanager
def quiet_ray_data(ray: Any, verbose: bool) -> Iterator[None]:
    """Ray Data's progress bars or lines (INFO on the ``ray.data`` logger, every 10 s when
    stderr is no terminal), execution plans and advisories off unless verbose (its errors
    still show), for the block; restored after."""
    ctx = ray.data.DataContext.get_current()
    data_logger = logging.getLogger("ray.data")
    saved = (ctx.enable_progress_bars, data_logger.level)
    if not verbose:
        ctx.enable_progress_bars = False
        data_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        ctx.enable_progress_bars, level = saved
        data_logger.setLevel(level)


def _connect(ray: Any, address: str | None, workers: int) -> bool:
    """Join ``address`` / ``RAY_ADDRESS`` or start a local Ray; True when this call started
    it (and so must shut it down). Ray's own INFO logging (and its workers' output) only when
    :func:`ray_verbose`."""
    if ray.is_initialized():
        return False
    verbose = ray_verbose()
    quiet = {"logging_level": logging.INFO if verbose else logging.ERROR,
             "log_to_driver": verbose}
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        logger.info("joining the Ray cluster at %s", address)
        ray.init(address=address, **quiet)
    else:
        logger.info("starting a local Ray with %d CPUs", workers + 1)
        ray.init(num_cpus=workers + 1, include_dashboard=False, **quiet)
    return True


def _pool(ray: Any, workers: int) -> dict[str, Any]:
    """A fixed pool of ``workers`` actors: ``compute=ActorPoolStrategy(size=n)`` (Ray >= 2.51
    deprecates ``concurrency=n`` for it), else ``concurrency=n``."""
    strategy = getattr(ray.data, "ActorPoolStrategy", None)
    return {"compute": strategy(size=workers)} if strategy is not None else {
        "concurrency": workers}


def _windows(jobs: Iterator[ShardJob], rows: int) -> Iterator[list[ShardJob]]:
    window: list[ShardJob] = []
    count = 0
    for job in jobs:
        window.append(job)
        count += len(job[2])
        if count >= rows:
            yield window
            window, count = [], 0
    if window:
        yield window


def _blocks(window: list[ShardJob]) -> list[Any]:
    pa = require_pyarrow(param="engine")
    return [pa.table({"shard": pa.array([i] * len(texts), pa.int64()),
                      "pos": pa.array(np.arange(len(texts)), pa.int64()),
                      "text": pa.array(texts, pa.string())})
            for i, _, _, texts in window]


def _run_window(ray: Any, window: list[ShardJob], done: ShardDone, run: RayRun) -> None:
    jobs = {job[0]: job for job in window}
    identity = run.identity
    parts: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {i: [] for i in jobs}
    have = dict.fromkeys(jobs, 0)
    ds = ray.data.from_arrow(_blocks(window)).map_batches(
        EmbedBatch, fn_constructor_args=(run,), batch_size=None,
        num_cpus=1, batch_format="numpy", **_pool(ray, min(int(run.workers), len(window))))
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        got = {str(v) for v in batch["identity"]}
        if identity is not None and got - {identity}:
            raise ConfigError(f"a Ray worker's model is {sorted(got - {identity})} but the "
                              f"driver's is {identity}: every worker must see the same "
                              "weights", param="engine")
        for i in np.unique(batch["shard"]):
            rows = batch["shard"] == i
            parts[int(i)].append((batch["pos"][rows], batch["embedding"][rows]))
            have[int(i)] += int(rows.sum())
            i, first, ids, texts = jobs[int(i)]
            if have[i] == len(texts):
                pos = np.concatenate([p for p, _ in parts[i]])
                x = np.concatenate([e for _, e in parts[i]])[np.argsort(pos, kind="stable")]
                del parts[i]
                done(i, first, ids, texts, np.ascontiguousarray(x, np.float32))


def encode_ray(run: RayRun, jobs: Iterator[ShardJob], done: ShardDone, *,
               window_rows: int = WINDOW_ROWS) -> None:
    """Encode every job (``(shard, first row, ids, texts)``) on Ray as ``run`` says;
    ``done(...)`` is called on the driver with each shard's vectors."""
    ray = import_ray()
    require_pyarrow(param="engine")
    workers = int(run.workers)
    started = _connect(ray, run.address, workers)
    try:
        with quiet_ray_data(ray, ray_verbose()):
            for window in _windows(jobs, int(window_rows)):
                logger.info("Ray: encoding %d shard(s) on %d worker(s)", len(window), workers)
                _run_window(ray, window, done, run)
    finally:
        if started:
            ray.shutdown()
