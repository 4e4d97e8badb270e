"""Static int8 (``quantize="int8-static"``): weights and activations in int8, the activations'
ranges calibrated on a declared sample (:mod:`embedkit.encoders.calibration`), with the matrix
products that cost the most quality left in float32 when that keeps the loss under budget, and
a quality gate that refuses an export that strays too far from float32.

- ONNX Runtime: ``quantize_static`` on the plain traced graph (on ONNX Runtime's fused BERT
  graph it quantises no activation: the fused operators have no QDQ form, so only weights would
  be int8), QDQ format, per-channel int8 weights, :data:`~embedkit.encoders.calibration.ACTIVATIONS` activations, the MatMuls
  with a weight only (layer norms, softmax, GELU and the attention's activation-by-activation
  products stay float32), MinMax ranges averaged over padded calibration batches; the runtime
  fuses each QDQ MatMul into an integer one when it loads the graph.
- OpenVINO: ``nncf.quantize`` with ``ModelType.TRANSFORMER`` (its transformer preset, smooth
  quant included), one calibration sentence a sample, ``subset_size`` all of them.

The exclusion is chosen by measurement: the candidates of :func:`candidates` are quantised in
turn and each is scored against the float32 graph on the held-out sentences
(:func:`agreement`: the cosine of the two mean-pooled last-layer vectors of each sentence); the
first whose mean reaches :data:`~embedkit.encoders.calibration.TARGET_MEAN` (and minimum ``GATE_MIN``) is kept, else the
best. The candidates come from a measurement on m3e-small (ONNX Runtime, 300 calibration and
200 held-out sentences of the default sample): everything int8 agreed at 0.9817 mean; the first
layer in float32 0.9851, the last 0.9825, both 0.9858; the feed-forward output MatMuls (whose
input is GELU's long-tailed output) in float32 0.9975; the whole feed-forward block in float32
0.9991. The gate then refuses an export whose agreement is below ``GATE_MEAN`` or
``GATE_MIN``: :class:`QualityGateError`, the graph kept aside (:func:`set_aside`). Every
candidate's scores, the choice and the thresholds go to the export's ``manifest.json``
(``calibration`` and ``gate``).

>>> [c.name for c in candidates()]
['none', 'feed-forward output MatMuls', 'feed-forward MatMuls']
>>> candidates()[1].matches("/model/encoder/layer.3/output/dense/MatMul")
True
>>> candidates()[1].matches("/model/encoder/layer.3/attention/output/dense/MatMul")
False
>>> agreement(np.eye(2, dtype=np.float32), np.eye(2, dtype=np.float32))
{'mean': 1.0, 'min': 1.0}
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embedkit.encoders.base import quiet_quantisers
from embedkit.encoders.calibration import (
    CALIBRATION_MAX_LENGTH,
    CalibrationSet,
    gate_thresholds,
)
from embedkit.errors import EmbedkitError

logger = logging.getLogger(__name__)

#: sentences per padded calibration / held-out batch
BATCH = 16


class QualityGateError(EmbedkitError):
    """A static int8 export refused by the quality gate; ``record`` holds the measurements."""

    def __init__(self, message: str, record: dict[str, Any], made: Any = None) -> None:
        super().__init__(message, param="calibration")
        self.record = record
        self.made = made  # the refused graph: its ONNX file, or the OpenVINO model


#: node-name patterns of the traced graph (BERT's /model/encoder/layer.N/..., decoders'
#: /model/layers.N/mlp/...)
_FFN_OUT = (r".*/layers?\.\d+/output/dense/MatMul$", r".*/mlp/down_proj/MatMul$")
_FFN_IN = (r".*/layers?\.\d+/intermediate/dense/MatMul$", r".*/mlp/(up|gate)_proj/MatMul$")


@dataclass(frozen=True)
class Scope:
    """A candidate exclusion: the nodes left in float32, as node-name patterns."""

    name: str
    patterns: tuple[str, ...] = ()

    def matches(self, node: str) -> bool:
        return any(re.match(p, node) for p in self.patterns)


def candidates() -> list[Scope]:
    """The exclusions tried, in order (see the module docstring for the measurement)."""
    return [Scope("none"), Scope("feed-forward output MatMuls", _FFN_OUT),
            Scope("feed-forward MatMuls", _FFN_OUT + _FFN_IN)]


def agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Mean and minimum over rows of the cosine between ``a`` and ``b``'s rows."""
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cos = (a * b).sum(1) / np.maximum(den, 1e-12)
    return {"mean": round(float(cos.mean()), 6), "min": round(float(cos.min()), 6)}


@dataclass
class StaticJob:
    """What a static quantisation needs besides the graph: the calibration set, the model
    folder (its tokenizer), the padding side, the last hidden state's output name; ``record``
    collects what goes to the manifest."""

    calibration: CalibrationSet
    model_dir: str
    padding_side: str
    last_output: str
    record: dict[str, Any] = field(default_factory=dict)

    def feeds(self, sentences: tuple[str, ...], batch: int = BATCH) -> list[dict[str, np.ndarray]]:
        """Padded batches (longest first) of ``input_ids`` and ``attention_mask`` (int64)."""
        from embedkit.encoders.base import eos_to_append, load_tokenizer, pad_id, tokenize_ids
        from embedkit.encoders.batching import pad_numpy

        tokenizer, _ = load_tokenizer(self.model_dir, self.model_dir, None)
        eos = eos_to_append(tokenizer, self.model_dir)
        ids = tokenize_ids(tokenizer, list(sentences), CALIBRATION_MAX_LENGTH, eos)
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        out = []
        for start in range(0, len(order), batch):
            rows = [ids[i] for i in order[start:start + batch]]
            x, m = pad_numpy(rows, pad_id(tokenizer), self.padding_side)
            out.append({"input_ids": x.astype(np.int64), "attention_mask": m.astype(np.int64)})
        return out


def mean_pooled(run: Callable[[dict[str, np.ndarray]], np.ndarray],
                feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    """The masked mean of the last hidden state ``run`` returns for each batch."""
    out = []
    for f in feeds:
        h = np.asarray(run(f), dtype=np.float32)
        m = f["attention_mask"][..., None].astype(np.float32)
        out.append((h * m).sum(1) / np.maximum(m.sum(1), 1.0))
    return np.concatenate(out)


def search(job: StaticJob, names: list[str], quantize: Callable[[Scope, list[str]], Any],
           score: Callable[[Any], np.ndarray], reference: np.ndarray) -> tuple[Any, Scope]:
    """Quantise each candidate (``quantize(scope, excluded node names)``) until one reaches the
    target, skipping one that excludes the same nodes as an earlier one; record every
    measurement; the gate refuses the chosen one when it is below a threshold."""
    limits = gate_thresholds()
    tried: list[dict[str, Any]] = []
    seen: set[tuple[str, ...]] = set()
    best: tuple[Any, Scope, dict[str, float]] | None = None
    for scope in candidates():
        excluded = [n for n in names if scope.matches(n)]
        if tuple(excluded) in seen:
            continue
        seen.add(tuple(excluded))
        made = quantize(scope, excluded)
        got = agreement(score(made), reference)
        tried.append({"exclude": scope.name, "nodes": len(excluded), **got})
        logger.info("int8-static, float32 kept for %s (%d nodes): agreement with float32 "
                    "%.4f mean, %.4f min", scope.name, len(excluded), got["mean"], got["min"])
        reached = got["mean"] >= limits["target_mean"] and got["min"] >= limits["gate_min"]
        if best is None or got["mean"] > best[2]["mean"] or reached:
            best = (made, scope, got)
        if reached:
            break
    assert best is not None
    made, scope, got = best
    job.record.update({
        "calibration": job.calibration.record(),
        "gate": {**gate_thresholds(), "agreement": got, "n_heldout": len(job.calibration.heldout),
                 "measure": "cosine of mean-pooled last-layer vectors, int8 vs float32",
                 "candidates": tried, "chosen": scope.name, "passed": _passes(got)}})
    if not _passes(got):
        raise QualityGateError(_refusal(job, got), job.record, made)
    return made, scope


def _passes(got: dict[str, float]) -> bool:
    limits = gate_thresholds()
    return got["mean"] >= limits["gate_mean"] and got["min"] >= limits["gate_min"]


def _refusal(job: StaticJob, got: dict[str, float]) -> str:
    limits = gate_thresholds()
    return (f"the int8-static export agrees with float32 at cosine {got['mean']:.4f} mean, "
            f"{got['min']:.4f} min on {len(job.calibration.heldout)} held-out sentences, below "
            f"the gate's {limits['gate_mean']} mean / {limits['gate_min']} min (calibrated on "
            f"{len(job.calibration.sentences)} sentences of {job.calibration.source}); "
            "calibrate on more or other sentences (calibration: a larger file or another "
            "TASK:SPLIT), or use quantize int8 (no calibration)")


def _steps_line(engine: str, job: StaticJob, scope: Scope) -> str:
    cal = job.calibration
    return (f"{engine} on {len(cal.sentences)} calibration sentences ({cal.source}, "
            f"sha256 {cal.digest}); float32 kept for: {scope.name}")


def quantize_onnx(raw: Path, out: Path, job: StaticJob,
                  session: Callable[[Path, int], Any]) -> list[str]:
    """Static int8 of the plain traced graph ``raw`` into ``out`` (see the module docstring);
    ``session(path, threads)`` opens an ONNX Runtime session (the exporter's)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    graph = onnx.load(str(raw), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    matmuls = [n for n in graph.node if n.op_type == "MatMul"]
    names = [n.name for n in matmuls if any(i in weights for i in n.input)]
    products = [n.name for n in matmuls if n.name not in names]  # activation x activation
    calib = job.feeds(job.calibration.sentences)
    held = job.feeds(job.calibration.heldout)
    activations = str(gate_thresholds()["onnx_activations"])

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calib)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    def run_of(path: Path) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
        opened = session(path, 2)
        return lambda f: opened.run([job.last_output], f)[0]

    def make(scope: Scope, excluded: list[str]) -> Path:
        path = out.with_name(f"static-{len(excluded)}.onnx")
        with quiet_quantisers(output=True):
            quantize_static(str(raw), str(path), Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=getattr(QuantType, activations),
                            weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                            nodes_to_exclude=products + excluded,
                            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT,
                                           "CalibMovingAverage": True})
        return path

    reference = mean_pooled(run_of(raw), held)
    try:
        chosen, scope = search(job, names, make, lambda p: mean_pooled(run_of(p), held),
                               reference)
        chosen.replace(out)
    except QualityGateError as e:
        e.made.replace(out)  # kept aside with the measurements
        raise
    finally:
        for left in out.parent.glob("static-*.onnx"):
            left.unlink()
    return [_steps_line(f"onnxruntime.quantization.quantize_static (QDQ, per-channel int8 "
                        f"weights, {activations} activations, MatMuls with weights)", job, scope)]


def quantize_openvino(model: Any, job: StaticJob) -> tuple[Any, list[str]]:
    """Static int8 of an OpenVINO model with NNCF (see the module docstring); a refused model
    is the error's ``made``."""
    import nncf
    import openvino as ov

    nncf.set_log_level(logging.ERROR)
    held = job.feeds(job.calibration.heldout)
    samples = job.feeds(job.calibration.sentences, batch=1)
    names = [op.get_friendly_name() for op in model.get_ops() if op.get_type_name() == "MatMul"]

    def run_of(m: Any) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
        compiled = ov.Core().compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                      "INFERENCE_NUM_THREADS": 2})
        return lambda f: compiled(f)[job.last_output]

    def make(scope: Scope, excluded: list[str]) -> Any:
        with quiet_quantisers(output=True):
            return nncf.quantize(model.clone(), nncf.Dataset(samples),
                                 model_type=nncf.ModelType.TRANSFORMER,
                                 subset_size=len(samples),
                                 ignored_scope=nncf.IgnoredScope(names=excluded, validate=False))

    reference = mean_pooled(run_of(model), held)
    chosen, scope = search(job, names, make, lambda m: mean_pooled(run_of(m), held), reference)
    return chosen, [_steps_line("nncf.quantize (ModelType.TRANSFORMER, int8 weights and "
                                "activations)", job, scope)]


def set_aside(tmp: Path, folder: Path, key: dict[str, Any], error: QualityGateError) -> Path:
    """Keep a refused export's graph and measurements in ``exports/rejected/<name>`` (replacing
    an earlier one of the same name) and say so in the error's message."""
    from embedkit.io.atomic import atomic_dir

    target = folder.parent / "rejected" / folder.name
    with atomic_dir(target) as out:
        for f in tmp.iterdir():
            if f.is_file() and f.name not in ("raw.onnx", "fused.onnx") and \
                    not f.name.startswith("static-"):
                shutil.copy2(f, out / f.name)
        if error.made is not None and not isinstance(error.made, Path):  # an OpenVINO model
            import openvino as ov

            ov.save_model(error.made, str(out / "model.xml"), compress_to_fp16=False)
        (out / "manifest.json").write_text(json.dumps(
            {"key": key, "refused": str(error), **error.record}, indent=2, sort_keys=True))
    logger.warning("the refused int8-static export is kept in %s", target)
    error.args = (f"{error.args[0]}; the refused export is kept in {target}",)
    return target


def refused_before(folder: Path, key: dict[str, Any]) -> QualityGateError | None:
    """The refusal kept in ``exports/rejected/`` for this very export (the same key: model,
    backend, calibration set, thresholds and library versions, so the gate would say the same
    again), else None: such an export is refused at once, not quantised again."""
    kept = folder.parent / "rejected" / folder.name / "manifest.json"
    try:
        data = json.loads(kept.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != key or not data.get("refused"):
        return None
    return QualityGateError(f"{data['refused']} (refused before; remove {kept.parent} to "
                            "measure again)", {k: v for k, v in data.items() if k != "key"})


@contextlib.contextmanager
def refused_aside(tmp: Path, folder: Path, key: dict[str, Any]) -> Iterator[None]:
    """Around an export's build: a refusal by the gate is kept aside (:func:`set_aside`)."""
    try:
        yield
    except QualityGateError as e:
        set_aside(tmp, folder, key, e)
        raise
