"""What every backend shares: tokenising (prompt, casing, truncation), length-ordered batches,
pooling checks and the output arrays. A backend (torch, ONNX Runtime, OpenVINO) only supplies
:meth:`TokenizedEncoder._forward`, one padded batch in, pooled float32 arrays out, so that every
backend tokenises, batches and orders exactly alike.

>>> prompt_setting("query: ")
'prompt="query: "'
>>> prompt_setting("")
''
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedkit.encoders.batching import pad_numpy, plan_batches
from embedkit.encoders.pooling import Pooling, uniem_declared
from embedkit.encoders.prompts import prompt_length
from embedkit.encoders.st_folder import STFolder, declared_pooling, read_st_folder
from embedkit.errors import ConfigError

logger = logging.getLogger(__name__)

#: a prompt that leaves fewer tokens than this for the sentence under the max length is warned
#: about (longer sentences are cut to what is left); one that leaves none is refused
PROMPT_ROOM_WARNING = 8


def prompt_setting(prompt: str) -> str:
    """The identity part a prompt adds (empty for none)."""
    return f"prompt={json.dumps(prompt, ensure_ascii=False)}" if prompt else ""


@contextlib.contextmanager
def quiet_loading(name: str) -> Iterator[None]:
    """Load a model without transformers' "Loading weights" bar and advisory lines: one log
    line says what is loaded instead. The caller's settings are restored afterwards."""
    from transformers.utils import logging as hf_logging

    logger.debug("loading model %s", name)
    verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()


def tokenize_ids(tokenizer: Any, texts: Sequence[str], max_length: int,
                 eos_id: int | None = None) -> list[list[int]]:
    """Token ids of each text alone, ``[CLS] ... [SEP]`` truncated to ``max_length``; with
    ``eos_id``, that token ends every sentence that the tokenizer did not end with it (the
    last text token gives way when the sentence is ``max_length`` long)."""
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False,
                    return_attention_mask=False, return_token_type_ids=False)
    ids = [list(x) for x in enc["input_ids"]]
    if eos_id is not None:
        ids = [x if x and x[-1] == eos_id else x[:max_length - 1] + [eos_id] for x in ids]
    return ids


def eos_to_append(tokenizer: Any, folder: str | None) -> int | None:
    """The EOS id when the model asks for it at the end of every sentence and its tokenizer
    may not put it there: ``add_eos_token`` set on the tokenizer or in the folder's
    ``tokenizer_config.json`` (transformers 5 no longer acts on the latter). A tokenizer whose
    post-processor appends EOS itself (Qwen3-Embedding's) needs nothing: None then.

    >>> class T: add_eos_token, eos_token_id = True, 7
    >>> eos_to_append(T(), None)
    7
    """
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        return None
    asked = bool(getattr(tokenizer, "add_eos_token", False))
    cfg = Path(folder) / "tokenizer_config.json" if folder else None
    if not asked and cfg is not None and cfg.is_file():
        try:
            asked = json.loads(cfg.read_text(encoding="utf-8")).get("add_eos_token") is True
        except (OSError, ValueError, AttributeError):
            asked = False
    return int(eos) if asked else None


def max_positions(config: Any) -> int:
    """The positions a model's config allows: ``max_position_embeddings`` (BERT), else
    ``n_positions`` (GPT-2), else 512."""
    return int(getattr(config, "max_position_embeddings", None)
               or getattr(config, "n_positions", None) or 512)


def folder_parts(path: str) -> tuple[STFolder | None, str]:
    """A model's sentence-transformers modules (None for a plain or hub model) and the folder
    its tokenizer and weights load from (the modules' Transformer folder, else ``path``)."""
    st = read_st_folder(path if os.path.isdir(path) else None)
    return st, str(st.transformer_dir) if st is not None else path


def pad_id(tokenizer: Any) -> int:
    """The padding token's id; the EOS token's where there is none (GPT-2), as
    sentence-transformers pads such models. Padded positions are masked either way."""
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    return 0


class TokenizedEncoder:
    """The shared half of an encoder. Subclasses set ``name``, ``path``, ``tokenizer``,
    ``default_pooling``, ``has_pooler``, ``max_positions``, ``batch_size``, ``lowercase``,
    ``prompt``, ``token_budget`` and implement :meth:`_forward` and :attr:`dim`."""

    name: str
    path: str
    tokenizer: Any
    default_pooling: Pooling
    has_pooler: bool
    max_positions: int
    batch_size: int
    lowercase: bool = False
    prompt: str = ""
    token_budget: int | None = None
    model_identity: str = ""
    st: STFolder | None = None       # the folder's sentence-transformers modules, if any
    truncate_dim: int | None = None  # keep the first K dimensions, after the modules
    similarity: str = "cosine"       # what the folder declares its vectors are compared with
    include_prompt: bool = True      # False: the prompt's tokens are masked out of the pooling
    instruction: str | None = None  # the task instruction in ``prompt`` (None: none given)
    eos_id: int | None = None   # appended where the model asks for EOS (:func:`eos_to_append`)

    @property
    def padding_side(self) -> str:
        """``left`` where the tokenizer says so (decoder embedders), else ``right``."""
        return "left" if getattr(self.tokenizer, "padding_side", "right") == "left" else "right"

    @property
    def dim(self) -> int:  # pragma: no cover - every backend overrides it
        raise NotImplementedError

    def _use_folder(self, st: STFolder | None, pooling: str | None, width: int,
                    truncate_dim: int | None) -> None:
        """Take from the model folder what changes the vectors after the forward pass: the
        default pooling (the one given, else the folder's), ``include_prompt``, the modules
        after the pooling (in the model identity), ``truncate_dim`` (the one given, else the
        folder's) and the declared similarity."""
        self.st = st
        folder = self.path if os.path.isdir(self.path) else None
        uniem = uniem_declared(folder) if st is None else None
        self.default_pooling = Pooling(pooling) if pooling else (
            st.pooling() if st is not None else Pooling(uniem or "cls"))
        if st is not None:
            st.check_width(width)
            self.include_prompt, self.similarity = st.include_prompt, st.similarity or "cosine"
            if st.tail:
                self.model_identity += f";st={st.digest}"
        k = truncate_dim if truncate_dim is not None else (st.truncate_dim if st else None)
        full = st.out_dim(width) if st is not None else width
        if k is not None and not 1 <= k <= full:
            raise ConfigError(f"truncate_dim must be between 1 and the model's {full} "
                              f"dimensions, not {k}", param="truncate_dim")
        self.truncate_dim = k if k != full else None
        self._declared = declared_pooling(st.folder) if st is not None else None
        self._noticed: set[str] = set()

    def _output_dim(self, width: int) -> int:
        """The vectors' dimension for a pooled ``width`` (modules after the pooling, truncation)."""
        full = self.st.out_dim(width) if self.st is not None else width
        return self.truncate_dim or full

    def _folder_settings(self) -> list[str]:
        """The identity parts the folder's settings add (beyond the modules' digest)."""
        out = [f"truncate_dim={self.truncate_dim}"] if self.truncate_dim else []
        return out + (["include_prompt=false"] if self.prompt and not self.include_prompt else [])

    def _folder_describe(self) -> dict[str, Any]:
        return {"st_folder": self.st.describe() if self.st is not None else None,
                "truncate_dim": self.truncate_dim, "similarity": self.similarity,
                "include_prompt": self.include_prompt}

    def _finish(self, pooled: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The folder's modules after the pooling, then the truncation, on pooled vectors."""
        st, k = self.st, self.truncate_dim
        for name in pooled:
            if st is not None and name != self._declared and name not in self._noticed:
                self._noticed.add(name)
                logger.info("%s declares sentence-transformers pooling %r; pooling %s overrides "
                            "it (the modules after the pooling still run)", self.name,
                            st.st_mode, name)
        out = {n: st.apply(v) if st is not None else v for n, v in pooled.items()}
        return {n: np.ascontiguousarray(v[:, :k]) if k else v for n, v in out.items()}

    def _pool_mask(self, mask: np.ndarray) -> np.ndarray:
        """The mask the pooling reads: the attention mask, less the prompt's tokens when the
        folder's Pooling has ``include_prompt=False`` (as sentence-transformers: the padding
        before the text, if any, and the prompt's tokens after it)."""
        if self.include_prompt or not self.prompt:
            return mask
        n = prompt_length(self.tokenizer, self.prompt)
        start = (mask != 0).argmax(axis=1)[:, None]
        keep = np.arange(mask.shape[1])[None, :] >= start + n
        return (mask * keep).astype(mask.dtype)

    def model_max_length(self) -> int:
        """The model's own maximum sequence length (the C-MTEB protocol uses it)."""
        tok_max = getattr(self.tokenizer, "model_max_length", None) or self.max_positions
        return int(min(tok_max, self.max_positions))

    def _texts(self, sentences: Sequence[str]) -> list[str]:
        texts = [t.lower() for t in sentences] if self.lowercase else list(sentences)
        return [self.prompt + t for t in texts] if self.prompt else texts

    def count_truncated(self, sentences: Sequence[str], max_length: int) -> int:
        """How many sentences (prompt included) are longer than ``max_length`` tokens, counting
        the special tokens: what truncation cuts. Tokenises only; nothing is encoded."""
        limit = min(max_length, self.max_positions)
        texts = self._texts(sentences)
        if not texts:
            return 0
        enc = self.tokenizer(texts, truncation=False, padding=False,
                             return_attention_mask=False, return_token_type_ids=False)
        eos = self.eos_id
        return sum(len(x) + int(eos is not None and (not x or x[-1] != eos)) > limit
                   for x in enc["input_ids"])

    def check_prompt(self, max_length: int) -> None:
        """Refuse a prompt that leaves no token of the sentence under ``max_length`` (counting
        ``[CLS]`` and ``[SEP]``): every vector would be the prompt's, every cosine 1. Warn (once
        per prompt and max length) when it leaves fewer than :data:`PROMPT_ROOM_WARNING`."""
        if not self.prompt:
            return
        limit = min(max_length, self.max_positions)
        checked: set[tuple[str, int]] = self.__dict__.setdefault("_prompt_checked", set())
        if (self.prompt, limit) in checked:
            return
        enc = self.tokenizer([self.prompt], truncation=False, padding=False,
                             return_attention_mask=False, return_token_type_ids=False)
        used = len(enc["input_ids"][0])  # the prompt and the special tokens
        room = limit - used
        said = (f"the prompt {self.prompt!r} takes {used} tokens with [CLS] and [SEP], and "
                f"the max length is {limit}")
        if room <= 0:
            raise ConfigError(f"{said}: no token of any sentence is left (every vector would be "
                              "the prompt's); shorten the prompt or raise the max length")
        if room < PROMPT_ROOM_WARNING:
            logger.warning("%s: only %d token(s) of each sentence are kept; shorten the prompt "
                           "or raise the max length", said, room)
        checked.add((self.prompt, limit))

    def check_pooling(self, pooling: Pooling) -> None:
        if pooling.needs_pooler and not self.has_pooler:
            raise ConfigError(f"pooling {str(pooling)!r} needs pooler weights, and {self.name} "
                              "has none in its checkpoint (transformers would initialise them "
                              "randomly); choose cls, last-avg or first-last-avg",
                              param="pooling")
        if self.prompt and not self.include_prompt and not pooling.masked:
            raise ConfigError(f"{self.name} leaves the prompt out of its pooling "
                              f"(include_prompt=false), which pooling {str(pooling)!r} cannot "
                              "do; choose a mean-type pooling (last-avg, max, mean-sqrt-len) "
                              "or no prompt", param="pooling")

    def encode(self, sentences: Sequence[str], pooling: str | None = None, *,
               max_length: int = 64, batch_size: int | None = None) -> np.ndarray:
        """Encode sentences into an (n, d) float32 array, in input order."""
        p = Pooling(pooling or self.default_pooling)
        return self.encode_multi(sentences, [p], max_length=max_length,
                                 batch_size=batch_size)[str(p)]

    def encode_multi(self, sentences: Sequence[str], poolings: Sequence[str], *,
                     max_length: int = 64, batch_size: int | None = None
                     ) -> dict[str, np.ndarray]:
        """Encode once and pool several ways: ``{pooling: (n, d) float32}``, in input order.

        Each sentence is encoded alone as ``[CLS] ... [SEP]`` (after the prompt, if any),
        truncated to ``max_length`` tokens counting the special tokens; batches are formed
        longest first.
        """
        pools = list(dict.fromkeys(Pooling(p) for p in poolings))
        for p in pools:
            self.check_pooling(p)
        if max_length < 3:
            raise ConfigError("max_length must be at least 3 ([CLS], one token, [SEP])",
                              param="max_length")
        self.check_prompt(max_length)
        texts = list(sentences)
        if not texts:
            return {str(p): np.zeros((0, self.dim), np.float32) for p in pools}
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, not {batch_size}",
                              param="batch_size")
        return self._finish(self._run(texts, pools, min(max_length, self.max_positions),
                                      batch_size or self.batch_size))

    def _run(self, texts: list[str], pools: list[Pooling], max_length: int,
             batch_size: int) -> dict[str, np.ndarray]:
        ids, batches = self._plan(texts, max_length, batch_size)
        out: dict[str, np.ndarray] = {}
        for sel in batches:
            self._store(out, len(texts), sel, self._forward(*self._pad(ids, sel), pools))
        return out

    def _plan(self, texts: list[str], max_length: int,
              batch_size: int) -> tuple[list[list[int]], list[list[int]]]:
        """The texts' token ids and the batches (indices, longest first) they are run in."""
        ids = tokenize_ids(self.tokenizer, self._texts(texts), max_length, self.eos_id)
        return ids, plan_batches([len(x) for x in ids], batch_size, self.token_budget)

    def _pad(self, ids: list[list[int]], sel: list[int]) -> tuple[np.ndarray, np.ndarray]:
        return pad_numpy([ids[i] for i in sel], pad_id(self.tokenizer), self.padding_side)

    @staticmethod
    def _store(out: dict[str, np.ndarray], n: int, sel: list[int],
               pooled: dict[str, np.ndarray]) -> None:
        """Put one batch's pooled rows at their sentences' places (arrays made on first use)."""
        for name, arr in pooled.items():
            if name not in out:
                out[name] = np.empty((n, arr.shape[1]), dtype=np.float32)
            out[name][sel] = arr

    def _forward(self, input_ids: np.ndarray, mask: np.ndarray,
                 pools: list[Pooling]) -> dict[str, np.ndarray]:  # pragma: no cover
        raise NotImplementedError
