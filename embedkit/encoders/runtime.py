"""The ONNX Runtime and OpenVINO backends: an exported graph (:mod:`embedkit.encoders.export`)
behind the same :class:`~embedkit.encoders.protocol.SentenceEncoder` interface, tokenised,
batched and pooled exactly as the torch backend (:class:`~embedkit.encoders.base.TokenizedEncoder`
does both), so that every pooling and every runner works on every backend.

The graph's outputs become a transformers-like output object (``last_hidden_state``,
``hidden_states``) and the pooler's dense output stands in for the model's pooler, and the
registered pooling functions run on them unchanged.

>>> _layers_to_fetch(["last-avg", "first-last-avg"], num_hidden=5)
[1, 4]
>>> _layers_to_fetch(["layers-avg:0,2"], num_hidden=5)
[0, 2, 4]
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from embedkit.encoders.base import (
    EXPORTED_TOKEN_BUDGET,
    Batch,
    OnBatch,
    TokenizedEncoder,
    load_tokenizer,
)
from embedkit.encoders.choices import available_cores
from embedkit.encoders.export import (
    ExportedGraph,
    discard_export,
    ensure_export,
    output_names,
    runtime_versions,
)
from embedkit.encoders.pooling import Pooling
from embedkit.errors import ConfigError

if TYPE_CHECKING:
    from embedkit.encoders import EncoderConfig

logger = logging.getLogger(__name__)


def _layers_to_fetch(poolings: Sequence[str], num_hidden: int) -> list[int]:
    """The hidden-state indices a set of poolings reads (the last layer always)."""
    need = {num_hidden - 1}
    for name in poolings:
        p = Pooling(name)
        if p.needs_hidden_states:
            layers = p.layers or tuple(range(num_hidden))
            need.update(i % num_hidden for i in layers if -num_hidden <= i < num_hidden)
    return sorted(need)


class _Dense:
    """Stands in for ``model.pooler.dense``: returns the graph's precomputed output."""

    def __init__(self, value: torch.Tensor) -> None:
        self.value = value

    def __call__(self, cls_vectors: torch.Tensor) -> torch.Tensor:
        return self.value


class _Session:
    """One loaded graph, run by ``streams`` threads at once, each on its own batches.

    On a few cores a small model's operators are too small to keep every thread busy, so two
    streams with half the threads each do more work per second than one stream with all of
    them (OpenVINO's throughput mode is built on the same idea). ONNX Runtime runs one session
    from several threads; OpenVINO gets one infer request per stream, each run synchronously from
    its own Python thread (its asynchronous queue, pooling in the runtime's threads, aborted
    the process once in a test run).
    """

    def __init__(self, graph: ExportedGraph, threads: int, streams: int) -> None:
        self.backend, self.streams = graph.backend, streams
        if graph.backend == "onnx":
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = max(1, threads // streams)
            so.inter_op_num_threads = 1
            so.log_severity_level = 3
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            self._ort = ort.InferenceSession(str(graph.graph), so,
                                             providers=["CPUExecutionProvider"])
        else:
            import openvino as ov

            # f32: on CPUs with bfloat16 units OpenVINO would otherwise run in bfloat16
            config = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": streams,
                      "PERFORMANCE_HINT": "THROUGHPUT" if streams > 1 else "LATENCY",
                      "INFERENCE_PRECISION_HINT": "f32"}
            self.compiled = ov.Core().compile_model(str(graph.graph), "CPU", config)
            self.ports = {o.get_any_name(): o for o in self.compiled.outputs}
            self._requests = [self.compiled.create_infer_request() for _ in range(streams)]

    def run(self, names: list[str], feeds: dict[str, np.ndarray],
            slot: int = 0) -> list[np.ndarray]:
        """The named outputs for one batch; ``slot`` is the calling stream's number. OpenVINO's
        arrays live in the request's buffers: use them before that stream's next batch."""
        if self.backend == "onnx":
            return list(self._ort.run(names, feeds))
        request = self._requests[slot]
        request.infer(feeds)
        return [request.get_tensor(self.ports[n]).data for n in names]


class ExportedEncoder(TokenizedEncoder):
    """A model on ONNX Runtime (``backend="onnx"``) or OpenVINO (``backend="openvino"``), float32
    or int8, built from an :class:`~embedkit.encoders.config.EncoderConfig` (no device or
    dtype: the CPU in float32, or int8 with ``quantize="int8"``), exported once into the
    config's cache folder and reused; ``token_budget=None`` is :data:`EXPORTED_TOKEN_BUDGET`
    padded tokens; ``streams``: threads that each run batches (default
    :func:`_default_streams`). A sentence-transformers folder's
    modules after the pooling run on the runtime's pooled vectors, in torch, exactly as on the
    torch backend (:meth:`~embedkit.encoders.base.TokenizedEncoder._finish`).
    """

    def __init__(self, config: EncoderConfig, streams: int | None = None) -> None:
        if config.backend not in ("onnx", "openvino"):
            raise ConfigError(f"ExportedEncoder runs onnx or openvino, not {config.backend!r}",
                              param="backend")
        self.threads = config.threads or available_cores()
        self.streams = streams or _default_streams(self.threads)
        if self.streams < 1 or self.streams > self.threads:
            raise ConfigError(f"streams must be between 1 and the threads ({self.threads}), not "
                              f"{self.streams}", param="streams")
        super().__init__(config)

    def _load(self, load_path: str) -> Any:
        self.tokenizer, config = load_tokenizer(load_path, self.name, self.revision)
        return config

    def _prepare(self, load_path: str) -> None:
        """The export (made once, kept in the cache folder) and its session."""
        from embedkit.encoders.cache import EmbeddingCache

        root = EmbeddingCache(self.encoder_config.cache_dir).root
        self.graph, self.session = _open(self.threads, self.streams, lambda: ensure_export(
            root, load_path, self.model_identity, self.backend, self.quantize,
            revision=self.revision, padding_side=self.padding_side))
        self.has_pooler = self.graph.has_pooler

    def _run_facts(self) -> dict[str, Any]:
        return {"threads": self.threads, "streams": self.streams}

    def _tail_facts(self) -> dict[str, Any]:
        return {"export": str(self.graph.folder), "export_steps": self.graph.manifest["steps"],
                "versions": runtime_versions(self.backend)}

    def _run(self, texts: list[str], pools: list[Pooling], max_length: int,
             batch_size: int, on_batch: OnBatch | None = None) -> dict[str, np.ndarray]:
        """As the base class, with the batches shared out among the session's streams: each
        stream takes the next batch when it is done with its last (longest first, so the last
        batches, which end the call, are short). ``on_batch`` is called under the lock the
        results are stored under, so one stream at a time reports."""
        streams = self.session.streams
        if streams == 1:
            return super()._run(texts, pools, max_length, batch_size, on_batch)
        out: dict[str, np.ndarray] = {}
        take, store, stop = threading.Lock(), threading.Lock(), threading.Event()

        def work(slot: int, batches: Iterator[Batch]) -> None:
            try:
                while not stop.is_set():
                    with take:
                        item = next(batches, None)
                    if item is None:
                        return
                    pooled = self._forward(item[1], item[2], pools, slot)
                    with store:
                        self._store(out, len(texts), item[0], pooled)
                        if on_batch is not None:
                            on_batch(len(item[0]))
            except BaseException:
                stop.set()  # the other streams stop after their batch
                raise

        before = torch.get_num_threads()
        torch.set_num_threads(1)  # the pooling's few torch operations, in every stream
        try:
            with self._batches(texts, max_length, batch_size) as batches, \
                    ThreadPoolExecutor(streams, thread_name_prefix="embedkit-stream") as pool:
                runs = [pool.submit(work, slot, batches) for slot in range(streams)]
                try:
                    for run in runs:
                        run.result()  # re-raises a stream's error
                finally:
                    stop.set()  # an interrupt here: the streams stop after their batch
        finally:
            torch.set_num_threads(before)
        return out

    def _output_names(self, pools: list[Pooling]) -> list[str]:
        names = [f"hidden_{i}" for i in _layers_to_fetch(pools, self.graph.num_hidden)]
        return names + (["pooler_dense"] if any(p.needs_pooler for p in pools) else [])

    def _forward(self, input_ids: np.ndarray, mask: np.ndarray, pools: list[Pooling],
                 slot: int = 0) -> dict[str, np.ndarray]:
        names = self._output_names(pools)
        arrays = self.session.run(names, {"input_ids": input_ids, "attention_mask": mask}, slot)
        return self._pool(names, arrays, self._pool_mask(mask), pools)

    def _pool(self, names: list[str], arrays: list[np.ndarray], mask: np.ndarray,
              pools: list[Pooling]) -> dict[str, np.ndarray]:
        """The registered poolings on the graph's outputs, seen as a transformers output."""
        n = self.graph.num_hidden
        want_pooler = "pooler_dense" in names
        got = {name: torch.from_numpy(a) for name, a in zip(names, arrays, strict=True)}
        hidden = tuple(got.get(f"hidden_{i}") for i in range(n))
        outputs = SimpleNamespace(last_hidden_state=hidden[-1], hidden_states=hidden)
        stand_in = SimpleNamespace(pooler=SimpleNamespace(dense=_Dense(got["pooler_dense"]))
                                   if want_pooler else None)
        tmask = torch.from_numpy(mask)
        return {str(p): p.pool(outputs, tmask, stand_in).numpy() for p in pools}


def _default_streams(threads: int) -> int:
    """Two streams from two threads on (measured on 2 cores: 7-8% more sentences/s on both
    runtimes than one stream of two threads; eval/speed.md), else one.

    >>> _default_streams(1), _default_streams(2), _default_streams(16)
    (1, 2, 2)
    """
    return 2 if threads >= 2 else 1


def _open(threads: int, streams: int, export: Any) -> tuple[ExportedGraph, _Session]:
    """The export and its session; an export the runtime cannot load is removed and built
    again (its checksums may match a graph damaged before they were taken, or a runtime may
    refuse what another version wrote)."""
    graph = export()
    try:
        return graph, _Session(graph, threads, streams)
    except Exception as e:  # the runtimes raise their own types for a damaged graph
        logger.warning("the %s export in %s does not load (%s); exporting again",
                       graph.backend, graph.folder, (str(e).splitlines() or ["?"])[0][:200])
        discard_export(graph)
        graph = export()
        return graph, _Session(graph, threads, streams)


__all__ = ["EXPORTED_TOKEN_BUDGET", "ExportedEncoder", "output_names"]
