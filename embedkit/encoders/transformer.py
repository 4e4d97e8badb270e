"""A transformers model as a :class:`~embedkit.encoders.protocol.SentenceEncoder`, and the forward
pass shared with training (tokenise alone, pad, run, pool), so both pool identically.

This layer does no caching, de-duplication or progress display: those are wrappers
(:mod:`embedkit.encoders.wrappers`) that stack around any encoder.

>>> ids = [[101, 7, 102], [101, 102]]
>>> input_ids, mask = pad_batch(ids, pad_id=0)
>>> input_ids.tolist(), mask.tolist()
([[101, 7, 102], [101, 102, 0]], [[1, 1, 1], [1, 1, 0]])
"""

from __future__ import annotations

import inspect
import logging
import pickle
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embedkit.encoders.base import TokenizedEncoder, prompt_setting, quiet_loading, tokenize_ids
from embedkit.encoders.batching import pad_numpy
from embedkit.encoders.models import is_local, model_identity, resolve_model_path, weight_files
from embedkit.encoders.pooling import Pooling
from embedkit.encoders.prompts import resolve_prompt
from embedkit.errors import ConfigError, EmbedkitError

logger = logging.getLogger(__name__)

# torch's unpicklers: an error raised inside them is a weights file torch would not load
_UNPICKLER_FILES = {"serialization.py", "_weights_only_unpickler.py"}

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
          "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def canonical_dtype(dtype: str) -> str:
    """``float32``, ``bfloat16`` or ``float16`` (``fp32``/``bf16``/``fp16`` accepted).

    >>> canonical_dtype("bf16")
    'bfloat16'
    """
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; valid: float32, bfloat16, float16",
                          param="dtype")
    return _DTYPE_NAMES.get(dtype, dtype)


def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int,
             lowercase: bool = False) -> list[list[int]]:
    """Token ids of each text alone, ``[CLS] ... [SEP]`` truncated to ``max_length``."""
    return tokenize_ids(tokenizer, [t.lower() for t in texts] if lowercase else list(texts),
                        max_length)


def pad_batch(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists into ``(input_ids, attention_mask)`` long tensors."""
    input_ids, mask = pad_numpy(ids, pad_id)
    return torch.from_numpy(input_ids), torch.from_numpy(mask)


def takes_token_types(model: Any) -> bool:
    """Whether the model's forward accepts ``token_type_ids`` (BERT does, others may not)."""
    return "token_type_ids" in inspect.signature(model.forward).parameters


def forward_pooled(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   poolings: Sequence[Pooling], *, token_type_ids: bool) -> dict[str, torch.Tensor]:
    """One forward pass, pooled several ways: ``{pooling: float32 (batch, d)}``.

    Every sentence is segment 0 (``token_type_ids`` all zero where the model takes them). Used by
    evaluation (under ``torch.inference_mode``) and by training (with gradients).
    """
    need_hidden = any(p.needs_hidden_states for p in poolings)
    extra = {"token_type_ids": torch.zeros_like(input_ids)} if token_type_ids else {}
    outputs = model(input_ids=input_ids, attention_mask=attention_mask, **extra,
                    output_hidden_states=need_hidden, return_dict=True)
    return {str(p): p.pool(outputs, attention_mask, model) for p in poolings}


def _load(path: str, name: str, revision: str | None) -> tuple[Any, Any, dict]:
    """The tokenizer and model. Weights come from safetensors files where the folder has them;
    ``.bin`` files go through ``torch.load(weights_only=True)`` (transformers' default), which
    refuses anything but tensors; remote code is never run (``trust_remote_code`` stays off)."""
    from transformers import AutoModel, AutoTokenizer

    try:
        with quiet_loading(name):
            tokenizer = AutoTokenizer.from_pretrained(path, revision=revision)
            model, info = AutoModel.from_pretrained(path, revision=revision,
                                                    output_loading_info=True)
    except (OSError, ValueError) as e:  # an empty or wrong folder raises ValueError
        hint = ("" if is_local(path) else " (offline? pass a local folder, or set "
                "HF_HUB_OFFLINE=0 with network access)")
        raise EmbedkitError(f"cannot load model {name!r} from {path}: "
                            f"{_first_line(e)}{hint}", param="model") from None
    except Exception as e:  # classified below; re-raised unless the weights are at fault
        raise _weights_error(e, name, path) from None
    return tokenizer, model, info


def _weights_error(e: Exception, name: str, path: str) -> Exception:
    """The one-line error for weights torch or safetensors could not read, else ``e`` itself."""
    from safetensors import SafetensorError

    files = {Path(f.filename).name for f in traceback.extract_tb(e.__traceback__)}
    if isinstance(e, (pickle.UnpicklingError, EOFError)) or files & _UNPICKLER_FILES:
        return EmbedkitError(
            f"cannot load model {name!r}: torch refused to unpickle the weights in {path} "
            f"({_weights_named(path)}): not a valid checkpoint, or it holds objects other than "
            "tensors, which embedkit never loads; re-download it, or (only if you trust where it "
            f"came from) convert it to model.safetensors ({type(e).__name__})", param="model")
    if isinstance(e, (RuntimeError, SafetensorError)):  # a damaged file, torch's zip reader
        return EmbedkitError(f"cannot load model {name!r}: the weights in {path} "
                             f"({_weights_named(path)}) are damaged or do not fit its "
                             f"config.json ({_first_line(e)}); re-download or re-save them",
                             param="model")
    return e


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def _weights_named(path: str) -> str:
    names = [p.name for p in weight_files(path)] if is_local(path) else []
    return ", ".join(names) or "its weight files"


class TransformerEncoder(TokenizedEncoder):
    """A transformers encoder with the BERT-whitening poolings and length-sorted batches.

    Args:
        model: hub id (``moka-ai/m3e-small``), local folder, or alias (``m3e-small``).
        pooling: default pooling; ``None`` takes the one the model folder declares, else ``cls``.
        device: ``cpu``, ``cuda``, ``cuda:1`` ...; ``None`` picks cuda when available.
        dtype: ``float32`` (default), ``bfloat16`` or ``float16`` for the model's weights.
        lowercase: lower-case text before tokenising (the published Keras code does).
        batch_size: sentences per forward pass.
        revision: hub revision (branch, tag or commit) when ``model`` is a hub id.
        prompt: text put before every sentence (``None``: the folder's declared default).
        threads: torch's intra-op threads (``None``: torch's default, the cores available).
        token_budget: cut batches by padded tokens instead of ``batch_size`` sentences.
    """

    backend = "torch"
    quantize = "none"

    def __init__(self, model: str, pooling: str | None = None, *, device: str | None = "cpu",
                 dtype: str = "float32", lowercase: bool = False, batch_size: int = 64,
                 revision: str | None = None, prompt: str | None = None,
                 threads: int | None = None, token_budget: int | None = None) -> None:
        self.name = model
        self.path = resolve_model_path(model, revision=revision)
        self.dtype_name = canonical_dtype(dtype)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device cuda was asked for but torch sees no CUDA device; use cpu",
                              param="device")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, not {batch_size}",
                              param="batch_size")
        self.threads = threads or torch.get_num_threads()
        self.tokenizer, self.model, info = _load(self.path, model, revision)
        missing = set(info.get("missing_keys", []))
        self.has_pooler = getattr(self.model, "pooler", None) is not None and not any(
            "pooler" in k for k in missing)
        self.model.eval().to(self.device, dtype=DTYPES[dtype])
        self.model_identity = model_identity(self.path, getattr(self.model.config,
                                                                "_commit_hash", None))
        declared = Pooling.from_folder(self.path if is_local(self.path) else None)
        self.default_pooling = Pooling(pooling) if pooling else declared or Pooling("cls")
        self.lowercase = lowercase
        self.batch_size = batch_size
        self.token_budget = token_budget
        self.revision = revision
        self.prompt = resolve_prompt(prompt, self.path)
        self.max_positions = int(getattr(self.model.config, "max_position_embeddings", 512))
        self._token_types = takes_token_types(self.model)

    @property
    def identity(self) -> str:
        """The weights' identity, plus every setting besides pooling and max length that changes
        the vectors (dtype, casing, prompt) when it is not the default."""
        extra = [f"dtype={self.dtype_name}"] if self.dtype_name != "float32" else []
        extra += ["lowercase"] if self.lowercase else []
        extra += [prompt_setting(self.prompt)] if self.prompt else []
        return ";".join([self.model_identity, *extra])

    @property
    def dim(self) -> int:
        return int(getattr(self.model.config, "hidden_size", 0))

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "identity": self.model_identity,
                "revision": self.revision, "backend": "torch", "quantize": "none",
                "default_pooling": str(self.default_pooling), "dtype": self.dtype_name,
                "device": str(self.device), "lowercase": self.lowercase, "prompt": self.prompt,
                "threads": self.threads, "token_budget": self.token_budget,
                "hidden_size": self.dim,
                "num_layers": int(getattr(self.model.config, "num_hidden_layers", 0)),
                "versions": {"torch": torch.__version__}}

    def _run(self, texts: list[str], pools: list[Pooling], max_length: int,
             batch_size: int) -> dict[str, np.ndarray]:
        """As the base class, with torch's intra-op threads set for the call only (torch and
        FAISS share one OpenMP pool: a setting left behind would change FAISS's too)."""
        before = torch.get_num_threads()
        if self.threads != before:
            torch.set_num_threads(self.threads)
        try:
            return super()._run(texts, pools, max_length, batch_size)
        finally:
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)

    @torch.inference_mode()
    def _forward(self, input_ids: np.ndarray, mask: np.ndarray,
                 pools: list[Pooling]) -> dict[str, np.ndarray]:
        pooled = forward_pooled(self.model, torch.from_numpy(input_ids).to(self.device),
                                torch.from_numpy(mask).to(self.device), pools,
                                token_type_ids=self._token_types)
        return {name: vecs.cpu().numpy() for name, vecs in pooled.items()}
