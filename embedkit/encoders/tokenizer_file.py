"""A model folder's tokenizer and config read from its files alone (``tokenizer.json`` through
the ``tokenizers`` library, ``tokenizer_config.json``, ``config.json``), importing neither
transformers nor torch: importing transformers' tokenizer or config classes imports torch
whenever torch is installed, about a second of a short run's start-up. The exported backends
use it where their export checked (:func:`same_as_transformers`, once, with transformers at
hand) that it gives transformers' token ids, special tokens and sizes; elsewhere they load
transformers' own (:func:`~embedkit.encoders.base.load_tokenizer`).

>>> _token({"content": "[PAD]", "lstrip": False}), _token("[SEP]"), _token(None)
('[PAD]', '[SEP]', None)
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

logger = logging.getLogger(__name__)

#: transformers' ``model_max_length`` when the tokenizer's config gives none
_NO_LIMIT = int(1e30)
_SPECIAL = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
            "mask_token")
#: the config values the encoders read (:class:`~embedkit.encoders.base.TokenizedEncoder`)
_CONFIG_FIELDS = ("hidden_size", "num_hidden_layers", "max_position_embeddings", "n_positions",
                  "model_type")
#: texts the check tokenises: cased and uncased Latin, Chinese, digits, accents, long text
_PROBES = ("Hello World! It's 3.14 o'clock.", "一个人正在切黄瓜。", "Café naïve ÉCOLE résumé",
           "海龟在水中游泳, and a turtle swims 2 km " * 12, "  spaces\tand\nlines  ", "")


def _token(value: Any) -> str | None:
    """A special token as ``tokenizer_config.json`` writes it (a string or an AddedToken)."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def has_files(folder: str) -> bool:
    """Whether ``folder`` holds what :class:`FileTokenizer` and :func:`file_config` read."""
    path = Path(folder)
    return all((path / n).is_file() for n in ("tokenizer.json", "config.json"))


class FileTokenizer:
    """The tokenizer of ``tokenizer.json`` with ``tokenizer_config.json``'s special tokens,
    sides and maximum length, called as transformers' tokenizers are for ids only
    (``tok(texts, truncation=..., max_length=...)["input_ids"]``)."""

    def __init__(self, folder: str) -> None:
        from tokenizers import Tokenizer

        path = Path(folder)
        self._tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        self._tok.no_padding()
        self._lock = threading.Lock()  # truncation is the tokenizer's state
        cfg = _json(path / "tokenizer_config.json")
        self.padding_side = str(cfg.get("padding_side") or "right")
        self.truncation_side = str(cfg.get("truncation_side") or "right")
        self.model_max_length = int(cfg.get("model_max_length") or _NO_LIMIT)
        self.add_eos_token = cfg.get("add_eos_token") is True
        ids = {n: self._id(_token(cfg.get(n))) for n in _SPECIAL}
        for name, value in ids.items():  # pad_token_id, eos_token_id, cls_token_id, ...
            setattr(self, f"{name}_id", value)
        extra = [self._id(_token(t)) for t in cfg.get("additional_special_tokens") or ()]
        self.all_special_ids = sorted({i for i in [*ids.values(), *extra] if i is not None})

    def _id(self, token: str | None) -> int | None:
        return None if token is None else self._tok.token_to_id(token)

    @property
    def backend_tokenizer(self) -> Any:
        """The ``tokenizers.Tokenizer`` (transformers' name for it)."""
        return self._tok

    def get_vocab(self) -> dict[str, int]:
        """Token -> id, added tokens included (as transformers')."""
        return dict(self._tok.get_vocab(with_added_tokens=True))

    def __call__(self, texts: Sequence[str], *, truncation: bool = False,
                 max_length: int | None = None, **_: Any) -> dict[str, list[list[int]]]:
        with self._lock:
            if truncation and max_length:
                self._tok.enable_truncation(max_length, strategy="longest_first",
                                            direction=self.truncation_side)
            else:
                self._tok.no_truncation()
            encoded = self._tok.encode_batch(list(texts))
        return {"input_ids": [e.ids for e in encoded]}


#: the names some architectures' configs give the values the encoders read (transformers'
#: ``attribute_map``: GPT-2's ``n_embd``, DistilBERT's ``dim``, ...)
_CONFIG_ALIASES = {"hidden_size": ("n_embd", "d_model", "dim"),
                   "num_hidden_layers": ("n_layer", "num_layers", "n_layers"),
                   "max_position_embeddings": ("n_positions",)}


def file_config(folder: str) -> SimpleNamespace:
    """``config.json`` as an object, read as the encoders read transformers' config.

    >>> import tempfile; d = tempfile.mkdtemp()
    >>> _ = (Path(d) / "config.json").write_text('{"n_embd": 32, "n_layer": 2}')
    >>> c = file_config(d); c.hidden_size, c.num_hidden_layers
    (32, 2)
    """
    values = _json(Path(folder) / "config.json")
    for name, aliases in _CONFIG_ALIASES.items():
        found = [values[a] for a in aliases if a in values]
        if name not in values and found:
            values[name] = found[0]
    return SimpleNamespace(**{k: v for k, v in values.items() if k.isidentifier()},
                           _commit_hash=None)


def _described(tok: Any, config: Any) -> dict[str, Any]:
    """What the encoders read of a tokenizer and a config, to compare two loaders."""
    runs: list[Any] = [tok(list(_PROBES), truncation=False)["input_ids"]]
    runs += [tok(list(_PROBES), truncation=True, max_length=n)["input_ids"] for n in (5, 16, 64)]
    facts = {n: getattr(tok, n, None) for n in (
        "padding_side", "truncation_side", "model_max_length", "pad_token_id", "eos_token_id",
        "cls_token_id", "bos_token_id")}
    facts["vocab"] = sorted(tok.get_vocab().items())
    facts["add_eos_token"] = bool(getattr(tok, "add_eos_token", False))
    facts["all_special_ids"] = sorted(getattr(tok, "all_special_ids", ()) or ())
    facts["config"] = {n: getattr(config, n, None) for n in _CONFIG_FIELDS}
    return {"ids": [[list(x) for x in r] for r in runs], **facts}


def same_as_transformers(folder: str, revision: str | None = None) -> bool:
    """Whether :class:`FileTokenizer` and :func:`file_config` give what transformers'
    ``AutoTokenizer`` and ``AutoConfig`` give for ``folder`` (False where it has no such files,
    or where they differ in anything the encoders read)."""
    from embedkit.encoders.base import load_tokenizer

    if not has_files(folder):
        return False
    try:
        mine = _described(FileTokenizer(folder), file_config(folder))
    except Exception as e:  # tokenizers raises its own types for a file it cannot read
        logger.info("%s/tokenizer.json does not load alone (%s)", folder, e)
        return False
    theirs = _described(*load_tokenizer(folder, folder, revision))
    differ = sorted(k for k in theirs if theirs[k] != mine.get(k))
    if differ:
        logger.info("%s: tokenizer.json alone differs from transformers' tokenizer in %s; the "
                    "exported backends load transformers' (and torch)", folder, ", ".join(differ))
    return not differ
