"""Which sentences a postprocessor is fitted on (``fit_on``), and the one ``TASK[:SPLIT]`` parser.

:func:`collect_fit_sentences` resolves ``fit_on``:

- relative to a task (bench and sweep): ``task`` (every split of the task, both sentences of
  every pair: the published protocol), a split name (``train``, ``valid``, ``test``) or a file
  with one sentence a line;
- absolute (whiten): ``TASK`` (every split), ``TASK:SPLIT``, several of these comma-separated,
  or a FILE of sentences.

Pairs contribute ``s1, s2`` in file order, splits in the task's order; ``unique`` keeps the first
occurrence of each sentence only.

>>> import os, tempfile
>>> f = os.path.join(tempfile.mkdtemp(), "s.txt")
>>> _ = open(f, "w", encoding="utf-8").write("你好\\n\\n再见\\n你好\\n")
>>> fs = collect_fit_sentences(f, unique=True)
>>> fs.sentences, fs.description == f"file:{f}", fs.max_length
(['你好', '再见'], True, 64)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedkit.aliases import JSONDict, StrPath
from embedkit.data.loading import load_task
from embedkit.data.pairs import PairSplit
from embedkit.data.registry import get_task
from embedkit.data.spec import TaskSpec, canonical_split
from embedkit.errors import ConfigError, DataError
from embedkit.io.textfile import read_bytes, read_sentences
from embedkit.provenance import sha256_text

__all__ = ["FILE_MAX_LENGTH", "FitSentences", "collect_fit_sentences",
           "pair_sentences", "parse_task_split"]

_FIT_SPLITS = ("train", "valid", "test")
#: Max length (tokens, counting [CLS] and [SEP]) for sentences that come from a plain file.
FILE_MAX_LENGTH = 64


@dataclass
class FitSentences:
    """The sentences a postprocessor is fitted on and how they were chosen.

    ``description`` is what the records show (``task:ATEC:train+valid+test``,
    ``file:fit.txt``, comma-joined for several); ``max_length`` the default encoding length for
    them (the largest of the tasks' own, 64 for files); ``parts`` one entry per source.

    >>> fs = FitSentences(["a", "b"], "file:x.txt", unique=True)
    >>> fs.record()["n_sentences"], fs.record()["unique"], fs.sha256 == sha256_text("a\\nb")
    (2, True, True)
    """

    sentences: list[str]
    description: str
    max_length: int = FILE_MAX_LENGTH
    unique: bool = False
    parts: list[JSONDict] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        """sha256 of the sentences joined by newlines (what ``fit_data_sha256`` records)."""
        return sha256_text("\n".join(self.sentences))

    def record(self) -> dict[str, Any]:
        """JSON-ready summary for a run record: ``on``, ``n_sentences``, ``unique``, ``sha256``."""
        return {"on": self.description, "n_sentences": len(self.sentences),
                "unique": self.unique, "sha256": self.sha256}


def pair_sentences(splits: Sequence[PairSplit]) -> list[str]:
    """Both sentences of every pair of the splits, in order: ``s1, s2, s1, s2, ...``."""
    return [t for s in splits for pair in zip(s.sentences1, s.sentences2, strict=True)
            for t in pair]


def _read_sentence_file(path: StrPath) -> list[str]:
    """The non-blank lines of a UTF-8 file (kept as they are, blank lines dropped); a file
    without any is a :class:`DataError` naming it (``param="fit_on"``)."""
    sentences = read_sentences(path, "fit_on sentence")
    if not sentences:
        why = "is empty" if not read_bytes(path).strip(b"\xef\xbb\xbf") else (
            "holds only blank lines")
        raise DataError(f"no sentences to fit on (the file {why})", path=str(path),
                        param="fit_on")
    return sentences


def _task_or_none(name: str) -> TaskSpec | None:
    try:
        return get_task(name)
    except ConfigError:
        if name.endswith(".json") and Path(name).is_file():
            raise  # a broken spec file: its own message says what is wrong
        return None


def _check_split(spec: TaskSpec, split: str, item: str, param: str | None) -> str:
    split = canonical_split(split)
    if split not in spec.splits:
        raise ConfigError(f"{item}: task {spec.name} has no {split} split (it has "
                          f"{', '.join(spec.splits)})", param=param)
    return split


def parse_task_split(item: str, param: str | None = None) -> tuple[TaskSpec, str | None]:
    """``TASK`` -> (spec, None); ``TASK:SPLIT`` -> (spec, canonical split). TASK is a built-in
    name or a spec file (whose path may hold colons: a trailing ``:SPLIT`` is taken as a split
    only when TASK before it is a task). ``param`` is the parameter named in errors.

    >>> spec, split = parse_task_split("ATEC:dev")
    >>> spec.name, split
    ('ATEC', 'valid')
    >>> parse_task_split("ATEC")[1] is None
    True
    """
    name, sep, split = item.rpartition(":")
    if sep and name and "/" not in split and "\\" not in split and not split.endswith(".json"):
        spec = _task_or_none(name)
        if spec is not None:
            return spec, _check_split(spec, split, item, param)
    spec = _task_or_none(item)
    return (spec if spec is not None else get_task(item)), None  # get_task: the registry's error


def _task_sentences(spec: TaskSpec, splits: Sequence[str], data: Mapping[str, PairSplit] | None,
                    opts: dict[str, Any]) -> tuple[list[str], str]:
    have = dict(data or {})
    missing = [s for s in splits if s not in have]
    if missing:
        have.update(load_task(spec, missing, **opts))
    chosen = [have[s] for s in splits]
    return pair_sentences(chosen), f"task:{spec.name}:{'+'.join(s.split for s in chosen)}"


def _dedupe(sents: list[str], unique: bool) -> list[str]:
    return list(dict.fromkeys(sents)) if unique else sents


def collect_fit_sentences(fit_on: str, spec: TaskSpec | None = None,
                          data: Mapping[str, PairSplit] | None = None, *,
                          data_dir: StrPath | None = None, source: str = "auto",
                          skip_invalid: bool = False, unique: bool = False) -> FitSentences:
    """Resolve ``fit_on`` into the sentences to fit on (see the module docstring).

    With ``spec`` (``data`` its already loaded splits) the relative forms apply: ``task``, a
    split name, or a file. Without it, the absolute forms: ``TASK``, ``TASK:SPLIT``,
    comma-separated lists of these, or a file. Errors name ``fit_on`` (``param="fit_on"``).
    """
    if not isinstance(fit_on, str) or not fit_on.strip():
        raise ConfigError("fit_on: empty; give task, a split name, TASK, TASK:SPLIT or a file",
                          param="fit_on")
    opts = {"data_dir": data_dir, "source": source, "skip_invalid": skip_invalid}
    if spec is not None:
        return _relative(fit_on.strip(), spec, data, opts, unique)
    return _absolute(fit_on.strip(), opts, unique)


def _relative(fit_on: str, spec: TaskSpec, data: Mapping[str, PairSplit] | None,
              opts: dict[str, Any], unique: bool) -> FitSentences:
    if fit_on == "task":
        sents, what = _task_sentences(spec, list(spec.splits), data, opts)
    elif canonical_split(fit_on) in _FIT_SPLITS:
        split = _check_split(spec, fit_on, f"fit_on {fit_on}", "fit_on")
        sents, what = _task_sentences(spec, [split], data, opts)
    elif Path(fit_on).is_file():
        sents, what = _read_sentence_file(fit_on), f"file:{fit_on}"
    else:
        raise ConfigError(f"fit_on {fit_on!r} is neither task, train, valid, test nor a file",
                          param="fit_on")
    return FitSentences(_dedupe(sents, unique), what, spec.max_length, unique,
                        [{"on": what, "n_sentences": len(sents)}])


def _absolute(fit_on: str, opts: dict[str, Any], unique: bool) -> FitSentences:
    sentences: list[str] = []
    parts: list[JSONDict] = []
    lengths: list[int] = []
    for item in (s.strip() for s in fit_on.split(",")):
        if not item:
            continue
        if Path(item).is_file() and not item.lower().endswith(".json"):
            sents, what = _read_sentence_file(item), f"file:{item}"
            lengths.append(FILE_MAX_LENGTH)
        else:
            spec, split = _fit_task(item)
            sents, what = _task_sentences(spec, [split] if split else list(spec.splits), None,
                                          opts)
            lengths.append(spec.max_length)
        sentences += sents
        parts.append({"on": what, "n_sentences": len(sents)})
    if not parts:
        raise ConfigError("fit_on: empty; give TASK, TASK:SPLIT or a file", param="fit_on")
    if not sentences:
        raise ConfigError(f"fit_on {fit_on!r}: no sentences to fit on", param="fit_on")
    return FitSentences(_dedupe(sentences, unique), ",".join(p["on"] for p in parts),
                        max(lengths), unique, parts)


def _fit_task(item: str) -> tuple[TaskSpec, str | None]:
    """``parse_task_split`` with fit_on's hints (a folder, a missing file)."""
    if Path(item).is_dir():
        raise ConfigError(f"fit_on {item!r} is a folder; give a file with one sentence a line",
                          param="fit_on")
    try:
        return parse_task_split(item, param="fit_on")
    except ConfigError as e:
        if "has no" in str(e):
            raise ConfigError(f"fit_on {e}", param="fit_on") from None
        raise ConfigError(f"fit_on {item!r}: not a task name, TASK:SPLIT or an existing file of "
                          f"sentences (one a line) ({e})", param="fit_on") from None
