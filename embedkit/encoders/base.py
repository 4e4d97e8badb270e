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
from typing import Any

import numpy as np

from embedkit.encoders.batching import pad_numpy, plan_batches
from embedkit.encoders.pooling import Pooling
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


def available_cores() -> int:
    """The cores this process may run on (the default thread count of every backend)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def tokenize_ids(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids of each text alone, ``[CLS] ... [SEP]`` truncated to ``max_length``."""
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False,
                    return_attention_mask=False, return_token_type_ids=False)
    return [list(x) for x in enc["input_ids"]]


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

    @property
    def dim(self) -> int:  # pragma: no cover - every backend overrides it
        raise NotImplementedError

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
        return sum(len(x) > limit for x in enc["input_ids"])

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
        return self._run(texts, pools, min(max_length, self.max_positions),
                         batch_size or self.batch_size)

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
        ids = tokenize_ids(self.tokenizer, self._texts(texts), max_length)
        return ids, plan_batches([len(x) for x in ids], batch_size, self.token_budget)

    def _pad(self, ids: list[list[int]], sel: list[int]) -> tuple[np.ndarray, np.ndarray]:
        return pad_numpy([ids[i] for i in sel], self.tokenizer.pad_token_id or 0)

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
