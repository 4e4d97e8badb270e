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
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from embedkit.encoders.base import (
    OnBatch,
    TokenizedEncoder,
    default_token_budget,
    quiet_loading,
    tokenize_ids,
)
from embedkit.encoders.batching import pad_numpy
from embedkit.encoders.choices import canonical_dtype, check_cpu_precision
from embedkit.encoders.models import is_local, weight_files
from embedkit.encoders.pooling import Pooling
from embedkit.errors import ConfigError, EmbedkitError

if TYPE_CHECKING:
    from embedkit.encoders import EncoderConfig

logger = logging.getLogger(__name__)

# torch's unpicklers: an error raised inside them is a weights file torch would not load
_UNPICKLER_FILES = {"serialization.py", "_weights_only_unpickler.py"}

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
          "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

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
    """Whether the model has segment embeddings fed by ``token_type_ids`` (BERT does). GPT-2's
    forward takes the argument too but has no segment table: it would add the embedding of
    token 0 to every position, so it gets none (as its tokenizer returns none)."""
    return ("token_type_ids" in inspect.signature(model.forward).parameters
            and bool(getattr(model.config, "type_vocab_size", 0)))


def takes_positions(model: Any, padding_side: str) -> bool:
    """Whether batches get ``position_ids`` counted from each sentence's first real token: a
    left-padded batch on a model that takes them (GPT-2's absolute positions would otherwise
    start at the padding's length, and rotary ones lose a little precision)."""
    return padding_side == "left" and "position_ids" in inspect.signature(
        model.forward).parameters


def positions_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """0, 1, 2 ... from each row's first unmasked position (0 on the padding before it).

    >>> positions_from_mask(torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])).tolist()
    [[0, 0, 0, 1], [0, 1, 2, 3]]
    """
    return (mask.long().cumsum(dim=1) - 1).clamp(min=0)


def check_precision(device: str | None, dtype: str) -> None:
    """Refuse, in one line, a dtype the device cannot run well (on the CPU:
    :func:`~embedkit.encoders.choices.check_cpu_precision`), and CUDA where torch sees none."""
    name = canonical_dtype(dtype)
    if device is not None and device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device} was asked for but torch sees no CUDA device "
                              f"(torch {torch.__version__}); use cpu", param="device")
        return
    if device is None and torch.cuda.is_available():
        return
    check_cpu_precision("torch", name)


def forward_pooled(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   poolings: Sequence[Pooling], *, token_type_ids: bool,
                   position_ids: bool = False,
                   pool_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """One forward pass, pooled several ways: ``{pooling: float32 (batch, d)}``.

    Every sentence is segment 0 (``token_type_ids`` all zero where the model takes them);
    ``position_ids``: positions counted from each sentence's first token
    (:func:`positions_from_mask`, for left-padded batches); ``pool_mask``: the mask the
    poolings read when it is not the attention mask (a prompt left out). Used by evaluation
    (under ``torch.inference_mode``) and by training (with gradients).
    """
    need_hidden = any(p.needs_hidden_states for p in poolings)
    extra = {"token_type_ids": torch.zeros_like(input_ids)} if token_type_ids else {}
    if position_ids:
        extra["position_ids"] = positions_from_mask(attention_mask)
    outputs = model(input_ids=input_ids, attention_mask=attention_mask, **extra,
                    output_hidden_states=need_hidden, return_dict=True)
    mask = attention_mask if pool_mask is None else pool_mask
    return {str(p): p.pool(outputs, mask, model) for p in poolings}


def _load(path: str, name: str, revision: str | None,
          dtype: str = "float32") -> tuple[Any, Any, dict[str, Any]]:
    """The tokenizer and model, its weights loaded straight in ``dtype`` (a 7B model never
    passes through float32). Weights come from safetensors files where the folder has them;
    ``.bin`` files go through ``torch.load(weights_only=True)`` (transformers' default), which
    refuses anything but tensors; remote code is never run (``trust_remote_code`` stays off).
    Attention is transformers' default for the model (sdpa where the model has it); a decoder's
    causal mask is left as the model defines it."""
    from transformers import AutoModel, AutoTokenizer

    try:
        with quiet_loading(name):
            tokenizer = AutoTokenizer.from_pretrained(path, revision=revision)
            model, info = AutoModel.from_pretrained(path, revision=revision, dtype=DTYPES[dtype],
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
    """A transformers encoder with the BERT-whitening poolings and length-sorted batches, built
    from an :class:`~embedkit.encoders.config.EncoderConfig` (its ``device``: ``cpu``,
    ``cuda``, ``cuda:1`` ... or ``None`` for cuda when available; ``dtype``: the weights';
    ``threads``: torch's intra-op threads, ``None`` for torch's default, the cores available;
    ``token_budget``: ``None`` cuts batches by sentences on the cpu and by
    :data:`~embedkit.encoders.base.CUDA_TOKEN_BUDGET` padded tokens on a GPU).

    A sentence-transformers folder runs whole (:mod:`embedkit.encoders.st_folder`): its
    Transformer, its Pooling as the default pooling, and its modules after the pooling.
    """

    def __init__(self, config: EncoderConfig) -> None:
        self.device = torch.device(config.device or (
            "cuda" if torch.cuda.is_available() else "cpu"))
        self.threads = config.threads or torch.get_num_threads()
        super().__init__(config)

    def _load(self, load_path: str) -> Any:
        self.tokenizer, self.model, info = _load(load_path, self.name, self.revision,
                                                 self.dtype_name)
        missing = set(info.get("missing_keys", []))
        self.has_pooler = getattr(self.model, "pooler", None) is not None and not any(
            "pooler" in k for k in missing)
        self.model.eval().to(self.device, dtype=DTYPES[self.dtype_name])
        return self.model.config

    def _prepare(self, load_path: str) -> None:
        """What decoder embedders need besides the EOS: positions counted from each
        sentence's start in left-padded batches, no key/value cache."""
        self._token_types = takes_token_types(self.model)
        self._positions = takes_positions(self.model, self.padding_side)
        if hasattr(self.model.config, "use_cache"):
            self.model.config.use_cache = False

    def _default_budget(self) -> int | None:
        return default_token_budget("torch", self.device.type)

    def _run_facts(self) -> dict[str, Any]:
        return {"attention": getattr(self.model.config, "_attn_implementation", None),
                "threads": self.threads}

    def _tail_facts(self) -> dict[str, Any]:
        return {"versions": {"torch": torch.__version__}}

    def _run(self, texts: list[str], pools: list[Pooling], max_length: int,
             batch_size: int, on_batch: OnBatch | None = None) -> dict[str, np.ndarray]:
        """As the base class, with torch's intra-op threads set for the call only (torch and
        FAISS share one OpenMP pool: a setting left behind would change FAISS's too)."""
        before = torch.get_num_threads()
        if self.threads != before:
            torch.set_num_threads(self.threads)
        try:
            return super()._run(texts, pools, max_length, batch_size, on_batch)
        finally:
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)

    @torch.inference_mode()
    def _forward(self, input_ids: np.ndarray, mask: np.ndarray,
                 pools: list[Pooling]) -> dict[str, np.ndarray]:
        pool_mask = self._pool_mask(mask)
        pooled = forward_pooled(self.model, torch.from_numpy(input_ids).to(self.device),
                                torch.from_numpy(mask).to(self.device), pools,
                                token_type_ids=self._token_types, position_ids=self._positions,
                                pool_mask=None if pool_mask is mask
                                else torch.from_numpy(pool_mask).to(self.device))
        return {name: vecs.cpu().numpy() for name, vecs in pooled.items()}
