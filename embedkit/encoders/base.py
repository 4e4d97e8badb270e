"""What every backend shares: tokenising (prompt, casing, truncation), length-ordered batches,
pooling checks and the output arrays. A backend (torch, ONNX Runtime, OpenVINO) only supplies
:meth:`TokenizedEncoder._forward`, one padded batch in, pooled float32 arrays out, so that every
backend tokenises, batches and orders exactly alike.

>>> _prompt_setting("query: ")
'prompt="query: "'
>>> _prompt_setting("")
''
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embedkit.encoders.batching import Prefetch, pad_numpy, plan_batches
from embedkit.encoders.calibration import static_digest
from embedkit.encoders.models import is_local, model_identity, resolve_model_path
from embedkit.encoders.pooling import Pooling, uniem_declared
from embedkit.encoders.prompts import instruction_prompt, prompt_length, resolve_prompt
from embedkit.encoders.st_folder import STFolder, declared_pooling, read_st_folder
from embedkit.errors import ConfigError, EmbedkitError

if TYPE_CHECKING:  # config.py builds the backends, which import this module
    from embedkit.encoders import EncoderConfig
    from embedkit.encoders.calibration import CalibrationSet

logger = logging.getLogger(__name__)

#: a prompt that leaves fewer tokens than this for the sentence under the max length is warned
#: about (longer sentences are cut to what is left); one that leaves none is refused
_PROMPT_ROOM_WARNING = 8
#: padded tokens per batch on a GPU when none is given (a batch's memory stays bounded whatever
#: the sentences' lengths)
CUDA_TOKEN_BUDGET = 16384
#: padded tokens per batch on ONNX Runtime and OpenVINO (OpenVINO fp32, 2 cores: 442.5
#: sentences/s against 424.0 with batches of 64, median of 3). Not torch's default on the cpu:
#: in eval/speed.md (3 interleaved rounds, quiet machine; its "embedkit torch fp32" row ran with
#: this budget, the default then) torch gave 365.6 sentences/s with it and 365.1 with batches
#: of 64, at a peak of 1510 MB against 982 MB
EXPORTED_TOKEN_BUDGET = 4096
#: sentences tokenised at a time by the background thread while the model runs the batches
#: before them (a call with more sentences than this is pipelined; a call with fewer is
#: tokenised whole first, as it always was). The sentences are ordered longest first by their
#: characters and cut into chunks, each tokenised, ordered by tokens and cut into batches on its
#: own: batches are as even as one plan over all of them makes them, but not the same batches,
#: so vectors equal those of an unpipelined call within float tolerance (not bit for bit)
PIPELINE_CHUNK = 2048
#: padded batches made ahead of the model at most
_PREFETCH_DEPTH = 4
#: what a batch reports when it is done: the number of its sentences
OnBatch = Callable[[int], None]
#: one batch as the backends run it: its sentences' indices in the call, input ids and mask
Batch = tuple[list[int], np.ndarray, np.ndarray]


def default_token_budget(backend: str, device: str | None) -> int | None:
    """Padded tokens per batch when a config gives none (``token_budget=None``): a budget on
    the exported backends and on a GPU, else None (batches of ``batch_size`` sentences).

    >>> default_token_budget("torch", "cpu"), default_token_budget("torch", "cuda:1")
    (None, 16384)
    >>> default_token_budget("onnx", "cpu")
    4096
    """
    if backend != "torch":
        return EXPORTED_TOKEN_BUDGET
    return CUDA_TOKEN_BUDGET if (device or "").startswith("cuda") else None


def _prompt_setting(prompt: str) -> str:
    """The identity part a prompt adds (empty for none)."""
    return f"prompt={json.dumps(prompt, ensure_ascii=False)}" if prompt else ""


@contextlib.contextmanager
def quiet_loading(name: str) -> Iterator[None]:
    """Load a model without transformers' "Loading weights" bar and advisory lines: one log
    line says what is loaded instead. The caller's settings are restored afterwards."""
    from transformers.utils import logging as hf_logging

    logger.debug("loading model %s", name)
    verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call,unused-ignore]
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call,unused-ignore]
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call,unused-ignore]


@contextlib.contextmanager
def quiet_quantisers(output: bool = False) -> Iterator[None]:
    """The optimiser and the quantisers log through the root logger at INFO/WARNING; with
    ``output``, what they draw on stdout and stderr (progress bars) is silenced too."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        if output:
            with contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(io.StringIO()):
                yield
        else:
            yield
    finally:
        root.setLevel(level)


def load_tokenizer(path: str, name: str, revision: str | None) -> tuple[Any, Any]:
    """A model's tokenizer and config (``config.json``), its weights left unread."""
    from transformers import AutoConfig, AutoTokenizer

    try:
        with quiet_loading(name):
            return (AutoTokenizer.from_pretrained(path, revision=revision),
                    AutoConfig.from_pretrained(path, revision=revision))
    except (OSError, ValueError) as e:
        raise EmbedkitError(f"cannot load model {name!r} from {path}: "
                            f"{str(e).strip().splitlines()[0] if str(e).strip() else e}",
                            param="model") from None


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


def _max_positions(config: Any) -> int:
    """The positions a model's config allows: ``max_position_embeddings`` (BERT), else
    ``n_positions`` (GPT-2), else 512."""
    return int(getattr(config, "max_position_embeddings", None)
               or getattr(config, "n_positions", None) or 512)


def _folder_parts(path: str) -> tuple[STFolder | None, str]:
    """A model's sentence-transformers modules (None for a plain or hub model) and the folder
    its tokenizer and weights load from (the modules' Transformer folder, else ``path``)."""
    st = read_st_folder(path if os.path.isdir(path) else None)
    return st, str(st.transformer_dir) if st is not None else path


def _config_prompt(config: EncoderConfig, path: str) -> tuple[str, str | None]:
    """The prompt and the instruction an encoder runs with: the instruction made into the
    prompt (:func:`instruction_prompt`), else the given prompt, else the folder's declared one;
    the instruction is ``""`` when a prompt or an empty instruction was given (no task's own
    applies then, :func:`~embedkit.encoders.config.for_task`), None when neither was."""
    if config.instruction:
        return instruction_prompt(config.instruction, path), config.instruction.strip()
    given = config.prompt is not None or config.instruction is not None
    return resolve_prompt(config.prompt, path), "" if given else None


def pad_id(tokenizer: Any) -> int:
    """The padding token's id; the EOS token's where there is none (GPT-2), as
    sentence-transformers pads such models. Padded positions are masked either way."""
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    return 0


def _calibration(config: EncoderConfig) -> CalibrationSet | None:
    """The sample ``int8-static`` is calibrated on (None for the other quantisations)."""
    if config.quantize != "int8-static":
        return None
    from embedkit.encoders.calibration import resolve_calibration

    return resolve_calibration(config.calibration)


class TokenizedEncoder:
    """The shared half of an encoder, built from an :class:`EncoderConfig`: resolving the
    model, its identity, the folder's default pooling and modules, the prompt, the positions and
    the batch budget happen here, once for every backend. A backend supplies :meth:`_load`
    (the tokenizer and the model's config, plus its weights or graph), may supply
    :meth:`_prepare` (run once the identity is known), and implements :meth:`_forward`,
    :attr:`dim` and ``describe``."""

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
    backend: str = "torch"
    quantize: str = "none"
    dtype_name: str = "float32"
    revision: str | None = None
    st: STFolder | None = None       # the folder's sentence-transformers modules, if any
    truncate_dim: int | None = None  # keep the first K dimensions, after the modules
    similarity: str = "cosine"       # what the folder declares its vectors are compared with
    include_prompt: bool = True      # False: the prompt's tokens are masked out of the pooling
    instruction: str | None = None  # the task instruction in ``prompt`` (None: none given)
    eos_id: int | None = None   # appended where the model asks for EOS (:func:`eos_to_append`)
    calibration: CalibrationSet | None = None  # int8-static's calibration sample
    #: sentences per tokenising chunk of a pipelined call (None: no pipeline)
    pipeline_chunk: int | None = PIPELINE_CHUNK

    def __init__(self, config: EncoderConfig) -> None:
        self.encoder_config = config
        self.name, self.revision = config.model, config.revision
        self.backend, self.quantize, self.dtype_name = config.backend, config.quantize, config.dtype
        self.lowercase, self.batch_size = config.lowercase, config.batch_size
        self.path = resolve_model_path(config.model, revision=config.revision)
        st, load_path = _folder_parts(self.path)
        self.model_config = model_config = self._load(load_path)
        self.model_identity = model_identity(load_path,
                                             getattr(model_config, "_commit_hash", None))
        self.calibration = _calibration(config)
        self._prepare(load_path)
        self._use_folder(st, config.pooling, int(getattr(model_config, "hidden_size", 0)),
                         config.truncate_dim)
        self.prompt, self.instruction = _config_prompt(config, self.path)
        self.max_positions = _max_positions(model_config)
        self.eos_id = eos_to_append(self.tokenizer, self.path if is_local(self.path) else None)
        # None: the backend's default budget; 0: batches of batch_size sentences
        budget = self._default_budget() if config.token_budget is None else config.token_budget
        self.token_budget = budget or None

    def _load(self, load_path: str) -> Any:  # pragma: no cover - every backend overrides it
        """Set ``tokenizer`` and ``has_pooler`` (and the weights); return the model's config."""
        raise NotImplementedError

    def _prepare(self, load_path: str) -> None:
        """What a backend does once ``model_identity`` is known (an export is keyed by it)."""

    def _default_budget(self) -> int | None:
        """Padded tokens per batch when the config gives none (None: by sentence count)."""
        return default_token_budget(self.backend, self.encoder_config.device)

    @property
    def dim(self) -> int:
        return self._output_dim(int(getattr(self.model_config, "hidden_size", 0)))

    def describe(self) -> dict[str, Any]:
        """What the encoder is and how it runs, for records: the backend's own facts
        (:meth:`_run_facts`, :meth:`_tail_facts`) among those every backend shares."""
        cfg = self.model_config
        return {"name": self.name, "path": self.path, "identity": self.model_identity,
                "revision": self.revision, "backend": self.backend, "quantize": self.quantize,
                "calibration": self._calibration_record(),
                "default_pooling": str(self.default_pooling), "dtype": self.dtype_name,
                "device": self._device_name(), "lowercase": self.lowercase,
                "prompt": self.prompt, "instruction": self.instruction,
                "padding_side": self.padding_side, "append_eos": self.eos_id is not None,
                **self._run_facts(), "token_budget": self.token_budget,
                "hidden_size": int(getattr(cfg, "hidden_size", 0)), "dim": self.dim,
                **self._folder_describe(),
                "num_layers": int(getattr(cfg, "num_hidden_layers", 0)), **self._tail_facts()}

    def _calibration_record(self) -> dict[str, Any] | None:
        """int8-static's calibration: as given (None: the default sample), the identity's
        digest, and the set's record (source, sizes, sha256)."""
        if self.calibration is None:
            return None
        return {"given": self.encoder_config.calibration,
                "digest": static_digest(self.calibration), **self.calibration.record()}

    def _device_name(self) -> str:
        return str(getattr(self, "device", None) or self.encoder_config.device or "cpu")

    def _run_facts(self) -> dict[str, Any]:
        """The backend's facts between ``append_eos`` and ``token_budget`` in :meth:`describe`."""
        return {}

    def _tail_facts(self) -> dict[str, Any]:
        """The backend's facts at the end of :meth:`describe` (its library versions)."""
        return {}

    @property
    def identity(self) -> str:
        """The weights' identity, plus every setting besides pooling and max length that changes
        the vectors when it is not the default: backend, quantisation, dtype, casing, prompt,
        and what the folder's settings add."""
        extra = [f"backend={self.backend}"] if self.backend != "torch" else []
        extra += [f"quantize={self.quantize}"] if self.quantize != "none" else []
        extra += [f"calibration={static_digest(self.calibration)}"] if self.calibration else []
        extra += [f"dtype={self.dtype_name}"] if self.dtype_name != "float32" else []
        extra += ["lowercase"] if self.lowercase else []
        extra += [_prompt_setting(self.prompt)] if self.prompt else []
        return ";".join([self.model_identity, *extra, *self._folder_settings()])

    @property
    def padding_side(self) -> str:
        """``left`` where the tokenizer says so (decoder embedders), else ``right``."""
        return "left" if getattr(self.tokenizer, "padding_side", "right") == "left" else "right"

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
        n = self._prompt_tokens()
        start = (mask != 0).argmax(axis=1)[:, None]
        keep = np.arange(mask.shape[1])[None, :] >= start + n
        return np.asarray(mask * keep, dtype=mask.dtype)

    def _prompt_tokens(self) -> int:
        """:func:`prompt_length` of the prompt, counted once: batches are pooled while another
        thread tokenises, and a fast tokenizer refuses two threads that change its settings."""
        known: dict[str, int] = self.__dict__.setdefault("_prompt_lengths", {})
        if self.prompt not in known:
            known[self.prompt] = prompt_length(self.tokenizer, self.prompt)
        return known[self.prompt]

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
        per prompt and max length) when it leaves fewer than :data:`_PROMPT_ROOM_WARNING`."""
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
        if room < _PROMPT_ROOM_WARNING:
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
                     max_length: int = 64, batch_size: int | None = None,
                     on_batch: OnBatch | None = None) -> dict[str, np.ndarray]:
        """Encode once and pool several ways: ``{pooling: (n, d) float32}``, in input order.

        Each sentence is encoded alone as ``[CLS] ... [SEP]`` (after the prompt, if any),
        truncated to ``max_length`` tokens counting the special tokens; batches are formed
        longest first (:data:`PIPELINE_CHUNK`: how a long call is tokenised while it runs).
        ``on_batch`` is called after each batch with its number of sentences (they add up to
        the call's; from one thread at a time, also on the backends that run batches in
        several threads): how progress moves during one call.
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
        self._prompt_tokens()  # counted here, before a thread tokenises
        return self._finish(self._run(texts, pools, min(max_length, self.max_positions),
                                      batch_size or self.batch_size, on_batch))

    def _run(self, texts: list[str], pools: list[Pooling], max_length: int,
             batch_size: int, on_batch: OnBatch | None = None) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        with self._batches(texts, max_length, batch_size) as batches:
            for sel, input_ids, mask in batches:
                self._store(out, len(texts), sel, self._forward(input_ids, mask, pools))
                if on_batch is not None:
                    on_batch(len(sel))
        return out

    def _batches(self, texts: list[str], max_length: int,
                 batch_size: int) -> contextlib.AbstractContextManager[Iterator[Batch]]:
        """The call's padded batches, in the order they run: made by a background thread,
        :data:`PIPELINE_CHUNK` sentences tokenised at a time, when the call has more sentences
        than a chunk (:attr:`pipeline_chunk`); else all tokenised first, here. Close it (a
        ``with`` block) to stop the thread."""
        chunk = self.pipeline_chunk
        if not chunk or len(texts) <= chunk:
            return contextlib.nullcontext(self._chunk_batches(texts, None, max_length,
                                                              batch_size))
        # longest first by characters (a cheap proxy for tokens), so that each chunk holds
        # sentences of alike lengths and its batches pad as little as one plan over all
        order = np.argsort([-len(t) for t in texts], kind="stable")
        parts = (order[i:i + chunk] for i in range(0, len(texts), chunk))
        return Prefetch((b for rows in parts for b in self._chunk_batches(
            [texts[i] for i in rows], rows, max_length, batch_size)),
            _PREFETCH_DEPTH, name="embedkit-tokenize")

    def _chunk_batches(self, texts: list[str], rows: np.ndarray | None, max_length: int,
                       batch_size: int) -> Iterator[Batch]:
        """The padded batches of ``texts``, tokenised and planned together; ``rows``: their
        indices in the call (None: the texts are the call's)."""
        ids, batches = self._plan(texts, max_length, batch_size)
        for sel in batches:
            yield (sel if rows is None else rows[sel].tolist()), *self._pad(ids, sel)

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

