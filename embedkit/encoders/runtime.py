"""The ONNX Runtime and OpenVINO backends: an exported graph (:mod:`embedkit.encoders.export`)
behind the same :class:`~embedkit.encoders.protocol.SentenceEncoder` interface, tokenised,
batched and pooled exactly as the torch backend (:class:`~embedkit.encoders.base.TokenizedEncoder`
does both), so that every pooling and every runner works on every backend.

The common poolings (``cls``, ``last-avg``, ``last-token``: :data:`GRAPH_POOLINGS`) come out of
the graph already pooled, and a call that asks only for those runs a graph pruned to them (only
``(batch, d)`` leaves the runtime; no torch is imported). Any other pooling reads the hidden
states: the graph's outputs become a transformers-like output object (``last_hidden_state``,
``hidden_states``), the pooler's dense output stands in for the model's pooler, and the
registered pooling functions run on them unchanged, in torch (imported then).

>>> _layers_to_fetch(["last-avg", "first-last-avg"], num_hidden=5)
[1, 4]
>>> _layers_to_fetch(["layers-avg:0,2"], num_hidden=5)
[0, 2, 4]
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from embedkit.encoders.base import (
    EXPORTED_TOKEN_BUDGET,
    Batch,
    OnBatch,
    TokenizedEncoder,
    load_tokenizer,
)
from embedkit.encoders.choices import available_cores
from embedkit.encoders.export import (
    GRAPH_POOLINGS,
    ExportedGraph,
    discard_export,
    ensure_export,
    output_names,
    pooled_name,
    runtime_versions,
)
from embedkit.encoders.pooling import Pooling
from embedkit.encoders.tokenizer_file import FileTokenizer, file_config, has_files
from embedkit.errors import ConfigError

if TYPE_CHECKING:
    from embedkit.encoders import EncoderConfig

logger = logging.getLogger(__name__)

#: OpenVINO's CPU inference precision for each dtype an exported encoder accepts
#: (:func:`~embedkit.encoders.choices.check_cpu_precision` refuses the others)
_OV_PRECISION = {"float32": "f32", "bfloat16": "bf16"}


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

    def __init__(self, value: Any) -> None:
        self.value = value

    def __call__(self, cls_vectors: Any) -> Any:
        return self.value


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """torch's intra-op threads at one while the streams run (the poolings outside the graph
    run a few torch operations in every stream), restored after; only where torch is imported
    already (a run whose poolings all come out of the graph imports no torch)."""
    mod = sys.modules.get("torch")
    if mod is None:
        yield
        return
    before = mod.get_num_threads()
    mod.set_num_threads(1)
    try:
        yield
    finally:
        mod.set_num_threads(before)


class _Session:
    """One exported graph, run by ``streams`` threads at once, each on its own batches.

    The graph is compiled pruned to the outputs a call reads: the pooled outputs alone at open
    (what ``cls``, ``last-avg`` and ``last-token`` need), the whole graph on the first call
    that reads a hidden state (:meth:`run`). OpenVINO compiles a new ``ov.Model`` of the chosen
    results; ONNX Runtime gets a model with only those graph outputs and the nodes they need
    (:func:`_pruned_onnx`).

    On a few cores a small model's operators are too small to keep every thread busy, so two
    streams with half the threads each do more work per second than one stream with all of
    them (OpenVINO's throughput mode is built on the same idea). ONNX Runtime runs one session
    from several threads; OpenVINO gets one infer request per stream, each run synchronously from
    its own Python thread (its asynchronous queue, pooling in the runtime's threads, aborted
    the process once in a test run).
    """

    def __init__(self, graph: ExportedGraph, threads: int, streams: int,
                 dtype: str = "float32") -> None:
        self.backend, self.streams, self.threads = graph.backend, streams, threads
        self.dtype = dtype
        self.graph = graph
        self.pooled = [pooled_name(p) for p in graph.pooled]
        self._lock = threading.Lock()
        if graph.backend == "openvino":
            import openvino as ov

            self._core = ov.Core()
            self._model = self._core.read_model(str(graph.graph))
        self._compiled: dict[bool, _Compiled] = {}
        self._compiled_for(bool(self.pooled))  # a graph that does not load fails here

    def _compiled_for(self, pooled_only: bool) -> _Compiled:
        """The graph pruned to the pooled outputs (``pooled_only``), else the whole graph."""
        with self._lock:
            found = self._compiled.get(pooled_only)
            if found is None:
                names = self.pooled if pooled_only else None
                found = self._compiled[pooled_only] = (
                    self._compile_onnx(names) if self.backend == "onnx"
                    else self._compile_openvino(names))
            return found

    def _compile_onnx(self, names: list[str] | None) -> _Compiled:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = max(1, self.threads // self.streams)
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        source = str(self.graph.graph) if names is None else _pruned_onnx(self.graph.graph, names)
        session = ort.InferenceSession(source, so, providers=["CPUExecutionProvider"])
        return _Compiled(session, [], {})

    def _compile_openvino(self, names: list[str] | None) -> _Compiled:
        import openvino as ov

        model = self._model
        if names is not None:
            model = ov.Model([model.output(n).get_node() for n in names],
                             model.get_parameters(), "pooled")
        # always said: on CPUs with bfloat16 units OpenVINO would otherwise pick bfloat16
        config = {"INFERENCE_NUM_THREADS": self.threads, "NUM_STREAMS": self.streams,
                  "PERFORMANCE_HINT": "THROUGHPUT" if self.streams > 1 else "LATENCY",
                  "INFERENCE_PRECISION_HINT": _OV_PRECISION[self.dtype]}
        compiled = self._core.compile_model(model, "CPU", config)
        ports = {o.get_any_name(): o for o in compiled.outputs}
        return _Compiled(compiled, [compiled.create_infer_request()
                                    for _ in range(self.streams)], ports)

    def outputs(self) -> list[str]:
        """The outputs of the graph compiled at open (the pooled ones where the graph has them)."""
        c = self._compiled[bool(self.pooled)]
        if self.backend == "onnx":
            return [o.name for o in c.runner.get_outputs()]
        return list(c.ports)

    def precision(self) -> str:
        """The precision the runtime really computes in (OpenVINO's compiled
        ``INFERENCE_PRECISION_HINT``; ONNX Runtime's CPU provider: f32)."""
        if self.backend == "onnx":
            return "f32"
        compiled = self._compiled[bool(self.pooled)].runner
        hint = compiled.get_property("INFERENCE_PRECISION_HINT")  # an ov.Type
        return str(hint.to_string() if hasattr(hint, "to_string") else hint)

    def run(self, names: list[str], feeds: dict[str, np.ndarray],
            slot: int = 0) -> list[np.ndarray]:
        """The named outputs for one batch; ``slot`` is the calling stream's number. OpenVINO's
        arrays live in the request's buffers: use them before that stream's next batch."""
        c = self._compiled_for(bool(self.pooled) and set(names) <= set(self.pooled))
        if self.backend == "onnx":
            return list(c.runner.run(names, feeds))
        request = c.requests[slot]
        request.infer(feeds)
        return [request.get_tensor(c.ports[n]).data for n in names]

    def start(self, names: list[str], feeds: dict[str, np.ndarray], slot: int) -> None:
        """OpenVINO: start one batch on the stream ``slot``'s request and return at once (its
        inputs are copied into the request before this returns); :meth:`result` waits."""
        c = self._compiled_for(bool(self.pooled) and set(names) <= set(self.pooled))
        c.requests[slot].start_async(feeds)

    def result(self, names: list[str], slot: int) -> list[np.ndarray]:
        """OpenVINO: wait for the batch :meth:`start` gave ``slot``; its named outputs (the
        request's buffers: use them before the slot's next batch)."""
        c = self._compiled_for(bool(self.pooled) and set(names) <= set(self.pooled))
        request = c.requests[slot]
        request.wait()
        return [request.get_tensor(c.ports[n]).data for n in names]

    def settle(self, slot: int) -> None:
        """Wait for the request of ``slot`` whatever it computes (before leaving a call early)."""
        for c in list(self._compiled.values()):
            if slot < len(c.requests):
                with contextlib.suppress(Exception):
                    c.requests[slot].wait()


class _Compiled(SimpleNamespace):
    """A compiled graph: the runtime's session (``runner``), OpenVINO's infer requests (one per
    stream) and output ports by name."""

    def __init__(self, runner: Any, requests: list[Any], ports: dict[str, Any]) -> None:
        super().__init__(runner=runner, requests=requests, ports=ports)


def _pruned_onnx(path: Any, names: list[str]) -> bytes:
    """The ONNX graph at ``path`` with only the outputs ``names`` and the nodes and weights
    they need (its inputs kept), serialised for ONNX Runtime."""
    import onnx

    model = onnx.load(str(path))
    g = model.graph
    need, nodes = set(names), []
    for node in reversed(g.node):
        if any(o in need for o in node.output):
            nodes.append(node)
            need.update(_node_inputs(node))
    outputs = [o for o in g.output if o.name in set(names)]
    initializers = [t for t in g.initializer if t.name in need]
    del g.output[:], g.node[:], g.initializer[:]
    g.output.extend(outputs)
    g.node.extend(reversed(nodes))
    g.initializer.extend(initializers)
    return bytes(model.SerializeToString())


def _node_inputs(node: Any) -> set[str]:
    """The names a node reads, those its subgraphs (If, Loop) read from outside included."""
    found = {i for i in node.input if i}
    for attr in node.attribute:
        for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
            for inner in sub.node:
                found |= _node_inputs(inner)
    return found


class ExportedEncoder(TokenizedEncoder):
    """A model on ONNX Runtime (``backend="onnx"``) or OpenVINO (``backend="openvino"``), float32
    or int8, built from an :class:`~embedkit.encoders.config.EncoderConfig` (the CPU; ``dtype``
    float32, or bfloat16 on OpenVINO where the CPU has it; int8 with ``quantize``), exported once into the
    config's cache folder and reused; ``token_budget=None`` is :data:`EXPORTED_TOKEN_BUDGET`
    padded tokens; ``streams``: threads that each run batches (default
    :func:`_default_streams`). A sentence-transformers folder's
    modules after the pooling run on the runtime's pooled vectors exactly as on the torch
    backend (:meth:`~embedkit.encoders.base.TokenizedEncoder._finish`). The tokenizer and
    config are read from the folder's files without transformers where the export found them
    alike (:mod:`~embedkit.encoders.tokenizer_file`), so that a run whose poolings come out of
    the graph imports no torch.
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
        self._from_files = has_files(load_path)
        if self._from_files:  # checked against transformers' once the export is known
            self.tokenizer = FileTokenizer(load_path)
            return file_config(load_path)
        self.tokenizer, config = load_tokenizer(load_path, self.name, self.revision)
        return config

    def _prepare(self, load_path: str) -> None:
        """The export (made once, kept in the cache folder) and its session."""
        from embedkit.encoders.cache import EmbeddingCache

        root = EmbeddingCache(self.encoder_config.cache_dir).root
        self.graph, self.session = _open(self.threads, self.streams, lambda: ensure_export(
            root, load_path, self.model_identity, self.backend, self.quantize,
            revision=self.revision, padding_side=self.padding_side,
            calibration=self.calibration), self.dtype_name)
        self.has_pooler = self.graph.has_pooler
        if self._from_files and not self.graph.tokenizer_file:
            logger.debug("%s: loading transformers' tokenizer (tokenizer.json alone differs)",
                         self.name)
            self.tokenizer, self.model_config = load_tokenizer(load_path, self.name,
                                                               self.revision)

    def _run_facts(self) -> dict[str, Any]:
        return {"threads": self.threads, "streams": self.streams,
                "inference_precision": self.session.precision()}

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
        if self.backend == "openvino":
            return self._run_async(texts, pools, max_length, batch_size, on_batch)
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

        with _one_torch_thread(), self._batches(texts, max_length, batch_size) as batches, \
                ThreadPoolExecutor(streams, thread_name_prefix="embedkit-stream") as pool:
            runs = [pool.submit(work, slot, batches) for slot in range(streams)]
            try:
                for run in runs:
                    run.result()  # re-raises a stream's error
            finally:
                stop.set()  # an interrupt here: the streams stop after their batch
        return out

    def _run_async(self, texts: list[str], pools: list[Pooling], max_length: int,
                   batch_size: int, on_batch: OnBatch | None) -> dict[str, np.ndarray]:
        """OpenVINO's streams, kept busy from this one thread: each request is started
        (``start_async``) as soon as it is free, and its batch is pooled and stored when it is
        done, while the other streams compute. Two Python threads each running ``infer`` on
        their own request deadlocked inside OpenVINO's input copy (a run of ``embedkit encode``
        hung with both streams waiting), so no other Python thread ever touches a request."""
        out: dict[str, np.ndarray] = {}
        pending: deque[tuple[int, Batch, list[str], tuple[Any, ...]]] = deque()
        free = list(range(self.session.streams))[::-1]

        def finish() -> None:
            slot, item, names, how = pending.popleft()
            pooled = self._pooled(self.session.result(names, slot), names, *how)
            self._store(out, len(texts), item[0], pooled)
            free.append(slot)
            if on_batch is not None:
                on_batch(len(item[0]))

        try:
            with self._batches(texts, max_length, batch_size) as batches:
                for item in batches:
                    if not free:
                        finish()
                    slot = free.pop()
                    names, how = self._plan_outputs(item[2], pools)
                    self.session.start(names, {"input_ids": item[1], "attention_mask": item[2]},
                                       slot)
                    pending.append((slot, item, names, how))
                while pending:
                    finish()
        finally:
            for slot, *_ in pending:  # an error or an interrupt: no request left running
                self.session.settle(slot)
        return out

    def _output_names(self, pools: list[Pooling]) -> list[str]:
        names = [f"hidden_{i}" for i in _layers_to_fetch(pools, self.graph.num_hidden)]
        return names + (["pooler_dense"] if any(p.needs_pooler for p in pools) else [])

    def _in_graph(self, pools: list[Pooling], pool_mask: np.ndarray,
                  mask: np.ndarray) -> list[Pooling]:
        """The poolings the graph outputs pooled: those of the export's :data:`GRAPH_POOLINGS`,
        when the pooling reads the attention mask (not a mask without the prompt's tokens)."""
        if pool_mask is not mask:
            return []
        return [p for p in pools if str(p) in self.graph.pooled]

    def _forward(self, input_ids: np.ndarray, mask: np.ndarray, pools: list[Pooling],
                 slot: int = 0) -> dict[str, np.ndarray]:
        names, how = self._plan_outputs(mask, pools)
        arrays = self.session.run(names, {"input_ids": input_ids, "attention_mask": mask}, slot)
        return self._pooled(arrays, names, *how)

    def _plan_outputs(self, mask: np.ndarray, pools: list[Pooling]
                      ) -> tuple[list[str], tuple[list[Pooling], list[Pooling], np.ndarray]]:
        """The graph outputs one batch needs, and how they become its poolings: those the
        graph pools, the rest, and the mask the rest is pooled with."""
        pool_mask = self._pool_mask(mask)
        in_graph = self._in_graph(pools, pool_mask, mask)
        rest = [p for p in pools if p not in in_graph]
        names = [pooled_name(p) for p in in_graph] + (self._output_names(rest) if rest else [])
        return names, (in_graph, rest, pool_mask)

    def _pooled(self, arrays: list[np.ndarray], names: list[str], in_graph: list[Pooling],
                rest: list[Pooling], pool_mask: np.ndarray) -> dict[str, np.ndarray]:
        # copies: OpenVINO's arrays are the request's buffers
        out = {str(p): np.array(a, dtype=np.float32)
               for p, a in zip(in_graph, arrays, strict=False)}
        if rest:
            k = len(in_graph)
            out.update(self._pool(names[k:], arrays[k:], pool_mask, rest))
        return out

    def _pool(self, names: list[str], arrays: list[np.ndarray], mask: np.ndarray,
              pools: list[Pooling]) -> dict[str, np.ndarray]:
        """The registered poolings on the graph's outputs, seen as a transformers output (in
        torch, imported here: only poolings the graph does not output come this way)."""
        import torch

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


def _open(threads: int, streams: int, export: Any,
          dtype: str = "float32") -> tuple[ExportedGraph, _Session]:
    """The export and its session; an export the runtime cannot load is removed and built
    again (its checksums may match a graph damaged before they were taken, or a runtime may
    refuse what another version wrote)."""
    graph = export()
    try:
        return graph, _Session(graph, threads, streams, dtype)
    except Exception as e:  # the runtimes raise their own types for a damaged graph
        logger.warning("the %s export in %s does not load (%s); exporting again",
                       graph.backend, graph.folder, (str(e).splitlines() or ["?"])[0][:200])
        discard_export(graph)
        graph = export()
        return graph, _Session(graph, threads, streams, dtype)


__all__ = ["EXPORTED_TOKEN_BUDGET", "GRAPH_POOLINGS", "ExportedEncoder", "output_names"]
