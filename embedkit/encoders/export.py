"""Export a transformers encoder once to ONNX (ONNX Runtime) or OpenVINO IR, optionally int8, and
keep it in the cache directory, keyed by everything that makes the graph: the model's identity,
the backend, the quantisation and the versions of the libraries that wrote it.

The exported graph returns what every pooling needs: every hidden state (``hidden_0`` is the
embedding output, ``hidden_i`` layer i, as transformers numbers them) and the pooler's dense
output on [CLS] *without* tanh (``pooler_dense``), so every pooling runs on every backend; and
the common poolings already computed (:data:`GRAPH_POOLINGS`, ``pooled_cls``, ``pooled_last_avg``,
``pooled_last_token``: the registered pooling functions of :mod:`embedkit.encoders.pooling`,
traced), so that a runtime that asks for those outputs only runs no hidden state out of the
graph (:mod:`embedkit.encoders.runtime` prunes the graph to the outputs a call reads).

The libraries made for each step do the work: ``torch.onnx.export`` traces the model (eager
attention, a padded example batch, so the attention mask stays a real input); ONNX Runtime's
transformer optimiser fuses attention, GELU and layer norms; ``onnxruntime.quantization``
quantises dynamically to int8; OpenVINO's ``convert_model`` converts the ONNX graph and NNCF
compresses its weights to int8. (optimum is not used: its ONNX exporter, optimum-onnx, requires
transformers < 4.58.) After each rewrite the graph is run on a probe batch and compared with
torch; a fused graph that disagrees is dropped for the plain one.

Each export folder holds a ``manifest.json`` with the key and the sha256 of every file; an
export whose files do not match (a partial copy, a flipped byte) or that fails to load is
rebuilt, never trusted. Folders are written atomically under a lock, so two processes exporting
the same model wait for each other and reuse the result.

>>> key = export_key("sha256:abc", "onnx", "int8", versions={"onnxruntime": "1.0"})
>>> key["backend"], key["quantize"], len(export_name(key))
('onnx', 'int8', 24)
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embedkit.encoders.base import quiet_quantisers
from embedkit.errors import ConfigError, EmbedkitError
from embedkit.io.atomic import atomic_dir, folder_lock
from embedkit.provenance import sha256_file, sha256_text

if TYPE_CHECKING:
    from embedkit.encoders.calibration import CalibrationSet
    from embedkit.encoders.quantize_static import StaticJob

logger = logging.getLogger(__name__)

_EXPORT_FORMAT = 2   # 2: the pooled outputs (GRAPH_POOLINGS) and the tokenizer check
#: the poolings the graph computes itself (from the attention mask; one output each)
GRAPH_POOLINGS = ("cls", "last-avg", "last-token")
_GRAPH_FILES = {"onnx": ("model.onnx",), "openvino": ("model.xml", "model.bin")}
_RUNTIMES = {"onnx": ("onnx", "onnxruntime"), "openvino": ("onnx", "openvino", "nncf")}
#: model types ONNX Runtime's BERT fusions apply to (others get the runtime's generic passes)
_BERT_LIKE = {"bert", "roberta", "xlm-roberta", "camembert", "ernie", "nezha", "electra",
              "megatron-bert", "rembert", "distilbert"}
_PROBE_TOLERANCE = 1e-3   # largest absolute difference a rewritten fp32 graph may show


@dataclass(frozen=True)
class ExportedGraph:
    """An export on disk: its folder, the graph file to load and what its manifest says."""

    folder: Path
    backend: str
    quantize: str
    manifest: dict[str, Any]

    @property
    def graph(self) -> Path:
        return self.folder / _GRAPH_FILES[self.backend][0]

    @property
    def num_hidden(self) -> int:
        return int(self.manifest["num_hidden"])

    @property
    def has_pooler(self) -> bool:
        return bool(self.manifest["has_pooler"])

    @property
    def pooled(self) -> tuple[str, ...]:
        """The poolings the graph outputs already pooled (:func:`pooled_name`)."""
        return tuple(self.manifest.get("pooled", ()))

    @property
    def tokenizer_file(self) -> bool:
        """Whether the model's ``tokenizer.json`` alone tokenises as transformers does (checked
        at export; :mod:`embedkit.encoders.tokenizer_file`)."""
        return bool(self.manifest.get("tokenizer_file"))


def runtime_versions(backend: str) -> dict[str, str]:
    """The versions of the libraries that write and read a backend's graph (part of its key)."""
    names = ("torch", "transformers", *_RUNTIMES[backend])
    out = {}
    for n in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[n] = metadata.version(n)
    return out


def _require_runtime(backend: str) -> None:
    """Raise a one-line error naming the extra to install when a backend's libraries are absent."""
    missing = [n for n in _RUNTIMES[backend] if _absent(n)]
    if missing:
        extra = "onnx" if backend == "onnx" else "openvino"
        raise ConfigError(f"backend {backend!r} needs {', '.join(missing)}, which is not "
                          f"installed: pip install 'embedkit[{extra}]' (or use the torch backend)",
                          param="backend")


def _absent(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is None


def export_key(model_identity: str, backend: str, quantize: str, *,
               versions: dict[str, str] | None = None,
               calibration: dict[str, Any] | None = None) -> dict[str, Any]:
    """What an export depends on; its folder is named by the key's hash. ``calibration``
    (int8-static): the calibration set's record and the gate's thresholds."""
    key = {"format": _EXPORT_FORMAT, "model": model_identity, "backend": backend,
           "quantize": quantize,
           "versions": runtime_versions(backend) if versions is None else versions}
    if calibration is not None:
        key["calibration"] = calibration
    return key


def export_name(key: dict[str, Any]) -> str:
    digest = sha256_text(json.dumps(key, sort_keys=True))
    return f"{key['backend']}-{key['quantize']}-{digest[:14]}"


def check_export(folder: Path, key: dict[str, Any]) -> str | None:
    """Why the export in ``folder`` cannot be used (None: it is whole and matches ``key``)."""
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        return "no manifest"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return "unreadable manifest"
    if manifest.get("key") != key:
        return "made for another model, backend or library version"
    for name, digest in manifest.get("files", {}).items():
        f = folder / name
        if not f.is_file():
            return f"{name} is missing"
        if sha256_file(f) != digest:
            return f"{name} does not match its checksum"
    if not manifest.get("files"):
        return "no graph files"
    return None


def ensure_export(root: Path, model_path: str, model_identity: str, backend: str,
                  quantize: str, *, revision: str | None = None,
                  padding_side: str = "right",
                  calibration: CalibrationSet | None = None) -> ExportedGraph:
    """The export for this model, backend and quantisation: reused when whole, else (re)built.
    ``padding_side="left"`` (decoders whose tokenizer pads left): the graph counts positions
    from each sentence's first token, and the key says so. ``calibration``: the sample
    ``int8-static`` is calibrated and gated on (in the key); a refused export is kept aside
    and raised as :class:`~embedkit.encoders.quantize_static.QualityGateError`."""
    from embedkit.encoders.calibration import static_part
    from embedkit.encoders.quantize_static import refused_aside, refused_before

    _require_runtime(backend)
    calibration, part = static_part(quantize, calibration)
    key = export_key(model_identity, backend, quantize, calibration=part)
    if padding_side == "left":
        key["padding_side"] = "left"
    folder = Path(root) / "exports" / export_name(key)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with folder_lock(folder, what="model export"):
        problem = check_export(folder, key) if folder.exists() else "not exported yet"
        earlier = refused_before(folder, key) if problem is not None and part else None
        if earlier is not None:
            raise earlier
        if problem is not None:
            if folder.exists():
                logger.warning("the %s export in %s is not usable (%s); exporting again",
                               backend, folder, problem)
            logger.info("exporting %s to %s%s (once; kept in %s)", model_path, backend,
                        f" {quantize}" if quantize != "none" else "", folder)
            with atomic_dir(folder) as tmp, refused_aside(tmp, folder, key):
                _build(tmp, model_path, key, revision, calibration)
        manifest = json.loads((folder / "manifest.json").read_text())
    return ExportedGraph(folder, backend, quantize, manifest)


def discard_export(graph: ExportedGraph) -> None:
    """Remove an export that failed to load (the next :func:`ensure_export` rebuilds it)."""
    with folder_lock(graph.folder, what="model export"):
        shutil.rmtree(graph.folder, ignore_errors=True)


def _build(tmp: Path, model_path: str, key: dict[str, Any], revision: str | None,
           calibration: CalibrationSet | None = None) -> None:
    import torch

    from embedkit.encoders.tokenizer_file import same_as_transformers
    from embedkit.encoders.transformer import takes_positions, takes_token_types

    model, info = _load_for_export(model_path, revision)
    missing = set(info.get("missing_keys", []))
    has_pooler = getattr(model, "pooler", None) is not None and not any(
        "pooler" in k for k in missing)
    token_types = takes_token_types(model)
    left = key.get("padding_side") == "left"
    form = _Form(has_pooler, token_types, takes_positions(model, "left" if left else "right"),
                 left)
    probe = _probe_batch(model, left=left)
    with torch.inference_mode():
        expected = _torch_outputs(model, probe, form)
    num_hidden = len(expected) - int(has_pooler) - len(GRAPH_POOLINGS)
    raw = tmp / "raw.onnx"
    _to_onnx(model, raw, form, num_hidden)
    if getattr(model.config, "model_type", "") not in _BERT_LIKE and not _absent("onnxruntime"):
        _check_exact(raw, model, form)
    backend, quantize = key["backend"], key["quantize"]
    job = _static_job(calibration, model_path, key,
                      output_names(num_hidden, has_pooler))
    if backend == "onnx":
        how = _finish_onnx(raw, tmp / "model.onnx", model.config, quantize, probe, expected, job)
    else:
        how = _finish_openvino(raw, tmp, quantize, job)
    raw.unlink()
    files = {name: sha256_file(tmp / name) for name in _GRAPH_FILES[backend]}
    manifest = {"key": key, "files": files, "num_hidden": num_hidden,
                "position_ids": form.positions, "pooled": list(GRAPH_POOLINGS),
                "tokenizer_file": same_as_transformers(model_path, revision),
                "has_pooler": has_pooler, "token_type_ids": token_types,
                "model_type": getattr(model.config, "model_type", None), "steps": how,
                **(job.record if job is not None else {})}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))


def _load_for_export(model_path: str, revision: str | None) -> tuple[Any, dict[str, Any]]:
    from transformers import AutoModel

    from embedkit.encoders.base import quiet_loading

    try:
        with quiet_loading(model_path):
            # eager attention: the pattern ONNX Runtime's attention fusion recognises
            model, info = AutoModel.from_pretrained(model_path, revision=revision,
                                                    attn_implementation="eager",
                                                    output_loading_info=True)
    except (OSError, ValueError) as e:
        raise EmbedkitError(f"cannot export {model_path}: {e}", param="model") from None
    if hasattr(model.config, "use_cache"):
        model.config.use_cache = False  # a decoder's graph returns no key/value cache
    return model.eval().float(), info


def _probe_batch(model: Any, left: bool = False, shape: tuple[int, int] = (3, 11),
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A padded batch of random token ids (padded on the left for ``left``): traces keep the
    mask a real input, and probes compare a rewritten graph with torch on padding too."""
    rng = np.random.default_rng(seed)
    vocab = int(getattr(model.config, "vocab_size", 100))
    ids = rng.integers(5, max(vocab, 6), size=shape).astype(np.int64)
    mask = np.ones_like(ids)
    width = shape[1]
    for row, keep in ((1, width * 2 // 3), (2, width // 3)):
        if row < shape[0]:
            if left:
                mask[row, :width - keep] = 0
            else:
                mask[row, keep:] = 0
    ids[mask == 0] = int(getattr(model.config, "pad_token_id", 0) or 0)
    return ids, mask


@dataclass(frozen=True)
class _Form:
    """What the traced module feeds the model besides ids and mask, and what it returns."""

    has_pooler: bool
    token_types: bool
    positions: bool = False   # position ids counted from the mask (left-padded decoders)
    left: bool = False


class _Outputs:
    """The traced module: every hidden state, the pooler's dense output (no tanh), then the
    :data:`GRAPH_POOLINGS`, each the registered pooling function on the model's output."""

    @staticmethod
    def wrap(model: Any, form: _Form) -> Any:
        from types import SimpleNamespace

        import torch

        from embedkit.encoders.pooling import Pooling
        from embedkit.encoders.transformer import positions_from_mask

        pools = [Pooling(p) for p in GRAPH_POOLINGS]

        class Graph(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids: Any, attention_mask: Any) -> Any:
                extra = {"token_type_ids": torch.zeros_like(input_ids)} if form.token_types else {}
                if form.positions:
                    extra["position_ids"] = positions_from_mask(attention_mask)
                out = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra,
                                 output_hidden_states=True, return_dict=True)
                hs = tuple(out.hidden_states)
                pooler = (self.model.pooler.dense(hs[-1][:, 0]),) if form.has_pooler else ()
                seen = SimpleNamespace(last_hidden_state=hs[-1], hidden_states=hs)
                pooled = tuple(p.pool(seen, attention_mask, self.model) for p in pools)
                return hs + pooler + pooled

        return Graph().eval()


def _torch_outputs(model: Any, probe: tuple[np.ndarray, np.ndarray],
                   form: _Form) -> list[np.ndarray]:
    import torch

    graph = _Outputs.wrap(model, form)
    outs = graph(torch.from_numpy(probe[0]), torch.from_numpy(probe[1]))
    return [o.numpy() for o in outs]


def _check_exact(raw: Path, model: Any, form: _Form) -> None:
    """A graph traced from a model other than BERT's kind (a decoder: its mask is built in
    Python) must give torch's outputs on batches of other shapes than the trace's, padded as
    the model pads; one that does not is refused (only the torch backend runs it)."""
    import torch

    worst = 0.0
    for seed, shape in ((1, (2, 5)), (2, (4, 17))):
        probe = _probe_batch(model, left=form.left, shape=shape, seed=seed)
        with torch.inference_mode():
            expected = _torch_outputs(model, probe, form)
        try:
            worst = max(worst, _max_diff(raw, probe, expected))
        except Exception as e:  # the runtime's own error types: a shape baked into the trace
            raise ConfigError(f"{getattr(model.config, 'model_type', 'this model')} does not "
                              f"export to ONNX exactly ({_first(e)}); use the torch backend",
                              param="backend") from None
    if worst > _PROBE_TOLERANCE:
        raise ConfigError(f"{getattr(model.config, 'model_type', 'this model')} does not export "
                          f"to ONNX exactly (differs from torch by {worst:.1e} on probe batches); "
                          "use the torch backend", param="backend")


def _first(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:200] if lines else type(e).__name__


def pooled_name(pooling: str) -> str:
    """The graph output holding a pooling of :data:`GRAPH_POOLINGS`.

    >>> pooled_name("last-avg")
    'pooled_last_avg'
    """
    return "pooled_" + str(pooling).replace("-", "_")


def output_names(num_hidden: int, has_pooler: bool) -> list[str]:
    """The exported graph's outputs, in order.

    >>> output_names(3, True)[2:]
    ['hidden_2', 'pooler_dense', 'pooled_cls', 'pooled_last_avg', 'pooled_last_token']
    """
    return ([f"hidden_{i}" for i in range(num_hidden)] + (["pooler_dense"] if has_pooler else [])
            + [pooled_name(p) for p in GRAPH_POOLINGS])


def _to_onnx(model: Any, path: Path, form: _Form, num_hidden: int) -> None:
    import torch

    graph = _Outputs.wrap(model, form)
    ids, mask = _probe_batch(model, left=form.left)
    names = output_names(num_hidden, form.has_pooler)
    axes: dict[str, dict[int, str]] = {n: {0: "batch", 1: "tokens"} for n in names}
    axes.update({n: {0: "batch"} for n in names if not n.startswith("hidden_")})
    axes.update({"input_ids": {0: "batch", 1: "tokens"},
                 "attention_mask": {0: "batch", 1: "tokens"}})
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the tracer's notes on Python control flow
        torch.onnx.export(graph, (torch.from_numpy(ids), torch.from_numpy(mask)), str(path),
                          input_names=["input_ids", "attention_mask"], output_names=names,
                          dynamic_axes=axes, opset_version=17, dynamo=False)


def _ort_session(path: Path, threads: int = 1) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _max_diff(path: Path, probe: tuple[np.ndarray, np.ndarray],
              expected: list[np.ndarray]) -> float:
    got = _ort_session(path).run(None, {"input_ids": probe[0], "attention_mask": probe[1]})
    valid = probe[1].astype(bool)
    diffs = []
    for g, e in zip(got, expected, strict=True):
        d = np.abs(g - e)
        diffs.append(float(d[valid].max() if d.ndim == 3 else d.max()))
    return max(diffs)


def _static_job(calibration: CalibrationSet | None, model_path: str, key: dict[str, Any],
                names: list[str]) -> StaticJob | None:
    """int8-static's inputs (None for the other quantisations)."""
    if key["quantize"] != "int8-static":
        return None
    if calibration is None:  # ensure_export resolves the default set: never a float32 graph
        raise ConfigError("int8-static needs its calibration set", param="calibration")
    from embedkit.encoders.quantize_static import StaticJob

    num_hidden = len([n for n in names if n.startswith("hidden_")])
    return StaticJob(calibration, model_path, key.get("padding_side", "right"),
                     names[num_hidden - 1])


def _finish_onnx(raw: Path, out: Path, config: Any, quantize: str,
                 probe: tuple[np.ndarray, np.ndarray], expected: list[np.ndarray],
                 job: StaticJob | None = None) -> list[str]:
    from onnxruntime.transformers import optimizer

    steps = ["torch.onnx.export"]
    if job is not None:  # int8-static: the plain graph (the fused operators take no QDQ)
        from embedkit.encoders.quantize_static import quantize_onnx

        return steps + quantize_onnx(raw, out, job, _ort_session)
    fused = out.with_name("fused.onnx")
    model_type = getattr(config, "model_type", "")
    if model_type in _BERT_LIKE:
        with quiet_quantisers():
            opt = optimizer.optimize_model(
                str(raw), model_type="bert", num_heads=int(config.num_attention_heads),
                hidden_size=int(config.hidden_size), opt_level=1)
            opt.save_model_to_file(str(fused))
        diff = _max_diff(fused, probe, expected)
        if diff <= _PROBE_TOLERANCE:
            steps.append("onnxruntime.transformers.optimizer (bert fusions)")
        else:
            logger.warning("ONNX Runtime's fused graph differs from torch by %.2e; using the "
                           "unfused graph", diff)
            fused.unlink()
    source = fused if fused.exists() else raw
    if quantize == "int8":
        _quantize_dynamic(source, out)
        steps.append("onnxruntime.quantization.quantize_dynamic (int8 weights, per channel)")
        if fused.exists():
            fused.unlink()
    else:
        source.replace(out) if source == fused else shutil.copyfile(source, out)
    return steps


def _quantize_dynamic(source: Path, out: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_quantisers():
        # DefaultTensorType: the fused operators (com.microsoft domain) have no ONNX type
        # inference, so the quantiser is told their outputs are float
        quantize_dynamic(str(source), str(out), weight_type=QuantType.QInt8, per_channel=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def _finish_openvino(raw: Path, tmp: Path, quantize: str,
                     job: StaticJob | None = None) -> list[str]:
    import openvino as ov

    steps = ["torch.onnx.export", "openvino.convert_model"]
    model = ov.convert_model(str(raw))
    if job is not None:
        from embedkit.encoders.quantize_static import quantize_openvino

        model, more = quantize_openvino(model, job)
        steps += more
    elif quantize == "int8":
        import nncf

        nncf.set_log_level(logging.ERROR)  # its bit-width table and progress bar
        with quiet_quantisers(), contextlib.redirect_stdout(io.StringIO()):
            model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
        steps.append("nncf.compress_weights (INT8_ASYM)")
    ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)
    return steps
