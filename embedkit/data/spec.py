"""Declarative task specs: a pair dataset described by metadata, not code (as mteb's tasks are).

The built-in tasks (ATEC, BQ, LCQMC, PAWSX, STS-B, AFQMC) are JSON files in the project's
``data/tasks/`` folder; a user adds a dataset by writing one more such file and passing its path
wherever a task name is accepted (``tasks=["my-pairs.json"]``; on the command line, the tasks option).

A minimal spec for a headered TSV file next to the spec::

    {"name": "my-pairs", "format": "tsv", "header": true,
     "files": {"test": "pairs.tsv"},
     "fields": {"sentence1": "query", "sentence2": "candidate", "label": "score"},
     "label_range": [0, 1], "label_type": "float"}

Specs are validated by a pydantic schema with strict types (``"header": "no"`` or
``"default_splits": "test"`` are refused, not coerced) and no unknown keys; errors name the file
and the key.

Relative ``files`` resolve against the spec's folder (or the data folder for ``base:
"data-dir"``); an absolute path is used as it is, so a spec may name any file its user can read.

>>> spec = TaskSpec.from_dict({"name": "x", "files": {"test": "x.tsv"}}, origin="inline")
>>> spec.format, spec.max_length, spec.fields["label"]
('tsv', 64, 'label')
"""

from __future__ import annotations

import codecs
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from embedkit.errors import ConfigError
from embedkit.io.textfile import read_bytes

#: Canonical split names; the aliases users type are mapped onto them.
_SPLIT_ALIASES = {"dev": "valid", "validation": "valid", "val": "valid", "eval": "valid"}
FORMATS = ("tsv", "csv", "jsonl")
_DEFAULT_FIELDS = {"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"}


def canonical_split(split: str) -> str:
    """Map a user's split name onto embedkit's (``dev``/``validation`` -> ``valid``).

    >>> canonical_split("dev"), canonical_split("test")
    ('valid', 'test')
    """
    s = split.strip().lower()
    return _SPLIT_ALIASES.get(s, s)


@dataclass(frozen=True)
class _HubSource:
    """Where the same data lives on the Hugging Face hub (loaded through ``datasets``)."""

    id: str
    revision: str | None = None
    splits: dict[str, str] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=lambda: dict(_DEFAULT_FIELDS))
    config: str | None = None


@dataclass(frozen=True)
class TaskSpec:
    """Metadata of one sentence-pair task.

    ``files`` maps canonical split names to paths; ``base`` says what relative paths are
    relative to: ``"spec"`` (the spec file's folder, the default for user specs) or
    ``"data-dir"`` (the data directory given as ``data_dir`` / ``EMBEDKIT_DATA``).
    ``sha256`` maps splits to the sha256 of the published files (the built-in tasks carry the
    shared data folder's ``SHA256SUMS``): a file with other bytes is not that data, and mteb
    result files name the official dataset revision only for data with these checksums.
    """

    name: str
    files: dict[str, str]
    format: str = "tsv"
    header: bool = False
    columns: tuple[str, ...] = ("sentence1", "sentence2", "label")
    fields: dict[str, str] = field(default_factory=lambda: dict(_DEFAULT_FIELDS))
    base: str = "spec"
    label_range: tuple[float, float] | None = None
    label_type: str = "float"
    max_length: int = 64
    default_splits: tuple[str, ...] = ("test",)
    hub: _HubSource | None = None
    #: split -> sha256 of the published file (a copy with other bytes is not that data)
    sha256: dict[str, str] = field(default_factory=dict)
    description: str = ""
    encoding: str = "utf-8"
    #: the task told to instruction-following embedders (Qwen3-Embedding, gte-Qwen2), made into
    #: their prompt by :func:`embedkit.encoders.prompts.instruction_prompt`
    instruction: str | None = None
    origin: str = ""
    spec_dir: str = ""
    #: ``"pairs"`` (sentence pairs with labels) or ``"retrieval"`` (BEIR / mteb layout:
    #: ``corpus`` and ``queries`` JSON lines files, ``files`` mapping each split to its qrels TSV)
    kind: str = "pairs"
    corpus: str = ""
    queries: str = ""

    @property
    def splits(self) -> tuple[str, ...]:
        """Splits this task has (local files, else the hub's)."""
        if self.files:
            return tuple(self.files)
        return tuple(self.hub.splits) if self.hub else ()

    @property
    def is_retrieval(self) -> bool:
        """True for a retrieval task (corpus, queries, qrels per split)."""
        return self.kind == "retrieval"

    @property
    def is_binary(self) -> bool:
        """True when labels are 0/1 (used, e.g., to choose retrieval positives)."""
        return tuple(self.label_range or ()) == (0, 1)

    @classmethod
    def from_dict(cls, d: Any, origin: str = "", spec_dir: str = "") -> TaskSpec:
        """Build a spec from its JSON object, validated by a schema (:class:`_SpecModel`, strict
        types: ``"header": "no"`` is refused, not read as true); every error names the spec's
        origin and the key, as ``my.json: label_range: must be [low, high] with low < high,
        got [5, 0]``, raised as :class:`ConfigError`."""
        where = origin or "task spec"
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: a task spec must be a JSON object")
        try:
            m = _SpecModel.model_validate(d)
        except ValidationError as e:
            raise ConfigError(f"{where}: {_describe(e, d)}") from None
        files = m.canonical_files()
        hub = None
        if m.hub is not None:
            hub = _HubSource(id=m.hub.id, revision=m.hub.revision,
                            splits={canonical_split(k): v for k, v in m.hub.splits.items()},
                            fields=m.hub.fields.model_dump(), config=m.hub.config)
        splits = tuple(files) or (tuple(hub.splits) if hub else ())
        default_splits = tuple(canonical_split(x) for x in m.default_splits) or (
            ("test",) if "test" in splits else splits[-1:])
        return cls(
            name=m.name, files=files, format=m.format, header=m.header,
            columns=tuple(m.columns or ("sentence1", "sentence2", "label")),
            fields=m.fields.model_dump(), base=m.base,
            label_range=(m.label_range[0], m.label_range[1]) if m.label_range else None,
            label_type=m.label_type, max_length=m.max_length, default_splits=default_splits,
            hub=hub,
            sha256={canonical_split(k): v.lower() for k, v in m.sha256.items()},
            description=m.description, encoding=m.encoding, instruction=m.instruction,
            origin=origin, spec_dir=spec_dir, kind=m.kind, corpus=m.corpus or "",
            queries=m.queries or "")

    @classmethod
    def from_file(cls, path: str | Path) -> TaskSpec:
        """Read a JSON spec file; relative data paths are resolved against its folder.

        A missing, unreadable or folder path, invalid JSON or a key given twice is a
        :class:`ConfigError` naming the file."""
        path = Path(path)
        data = read_bytes(path, "task spec")  # MissingFileError (a ConfigError) naming it
        try:
            d = json.loads(data.decode("utf-8-sig"), object_pairs_hook=_no_duplicate_keys)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            line = getattr(e, "lineno", None)
            raise ConfigError(f"{path}:{line or 1}: not a valid JSON task spec ({e})") from None
        except _DuplicateKey as e:
            raise ConfigError(f"{path}: key {e.args[0]!r} is given twice") from None
        return cls.from_dict(d, origin=str(path), spec_dir=str(path.resolve().parent))


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d: dict[str, Any] = {}
    for k, v in pairs:
        if k in d:
            raise _DuplicateKey(k)
        d[k] = v
    return d


# -- the schema -------------------------------------------------------------------------------
# pydantic v2 with strict scalar types: a string is never read as a boolean or a number, a
# string never as a list, and unknown keys are refused. Cross-key rules (a split named twice,
# fields not among the columns, default splits the spec lacks) are model validators.

def _finite(x: float) -> float:
    if not math.isfinite(x):
        raise ValueError("not finite")
    return x


def _known_encoding(name: str) -> str:
    try:
        codecs.lookup(name)
    except LookupError:
        raise ValueError("unknown encoding") from None
    return name


def _distinct(xs: list[str]) -> list[str]:
    if not xs or len(set(xs)) != len(xs):
        raise ValueError("empty or repeated")
    return xs


def _ordered(r: tuple[float, float]) -> tuple[float, float]:
    if not r[0] < r[1]:
        raise ValueError("low >= high")
    return r


_Text = Annotated[StrictStr, Field(min_length=1)]
_Sha256 = Annotated[StrictStr, Field(pattern=r"^[0-9a-fA-F]{64}$")]
_Number = Annotated[StrictInt | StrictFloat, AfterValidator(_finite)]

#: what each key must be, for the error messages (``KEY: must be ..., got VALUE``)
_EXPECTED = {
    "name": "must be a non-empty string",
    "description": "must be a string",
    "format": f"must be one of {', '.join(FORMATS)}",
    "header": "must be true or false",
    "columns": "must be a list of distinct column names (strings)",
    "fields": "must map sentence1, sentence2 and label to column names (strings)",
    "files": "must map split names to file paths (strings)",
    "base": "must be 'spec' or 'data-dir'",
    "label_range": "must be [low, high] with low < high",
    "label_type": "must be 'int' or 'float'",
    "max_length": "must be an integer >= 3 (it counts [CLS] and [SEP])",
    "default_splits": "must be a list of split names",
    "hub": "must be an object with at least an 'id' (and optionally revision, splits, fields, "
           "config)",
    "sha256": "must map split names to the sha256 (64 hex digits) of the published files",
    "encoding": "must be the name of a text encoding Python knows (utf-8, gb18030, ...)",
    "license": "must be a string",
    "kind": "must be 'pairs' or 'retrieval'",
    "corpus": "must be the path of the corpus JSON lines file (_id, title, text)",
    "queries": "must be the path of the queries JSON lines file (_id, text)",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Fields(_Strict):
    sentence1: _Text = "sentence1"
    sentence2: _Text = "sentence2"
    label: _Text = "label"


class _Hub(_Strict):
    id: _Text
    revision: _Text | None = None
    splits: dict[_Text, _Text] = {}
    fields: _Fields = _Fields()
    config: _Text | None = None


class _SpecError(ValueError):
    """A cross-key rule broken: ``key`` is the key named in the message."""

    def __init__(self, key: str, problem: str):
        super().__init__(problem)
        self.key, self.problem = key, problem


def _one_line_text(value: str) -> str:
    if not value.strip() or "\n" in value:
        raise ValueError("must be one line of text (the task, as an instruction-following "
                         "embedder is told it)")
    return value.strip()


class _SpecModel(_Strict):
    name: _Text
    description: StrictStr = ""
    format: Literal["tsv", "csv", "jsonl"] = "tsv"
    header: StrictBool = False
    columns: Annotated[list[_Text], AfterValidator(_distinct)] | None = None
    fields: _Fields = _Fields()
    files: dict[_Text, _Text] = {}
    base: Literal["spec", "data-dir"] = "spec"
    label_range: Annotated[tuple[_Number, _Number], AfterValidator(_ordered)] | None = None
    label_type: Literal["int", "float"] = "float"
    max_length: Annotated[StrictInt, Field(ge=3)] = 64
    default_splits: list[_Text] = []
    hub: _Hub | None = None
    sha256: dict[_Text, _Sha256] = {}
    encoding: Annotated[_Text, AfterValidator(_known_encoding)] = "utf-8"
    license: StrictStr | None = None
    instruction: Annotated[StrictStr, AfterValidator(_one_line_text)] | None = None
    kind: Literal["pairs", "retrieval"] = "pairs"
    corpus: _Text | None = None
    queries: _Text | None = None

    def canonical_files(self) -> dict[str, str]:
        return {canonical_split(k): v for k, v in self.files.items()}

    @model_validator(mode="after")
    def _cross_key_rules(self) -> _SpecModel:
        _check_split_names("files", list(self.files))
        if self.hub is not None:
            _check_split_names("hub", list(self.hub.splits))
        if self.kind == "retrieval":
            _check_retrieval(self)
        elif self.corpus is not None or self.queries is not None:
            raise _SpecError("kind", "'corpus' and 'queries' belong to a retrieval task; set "
                                     "'kind': 'retrieval'")
        if not self.files and self.hub is None:
            raise _SpecError("", "give 'files' (split -> path) or a 'hub' source")
        columns = list(self.columns or ("sentence1", "sentence2", "label"))
        missing = [f for f in self.fields.model_dump().values() if f not in columns]
        if self.format != "jsonl" and not self.header and missing:
            raise _SpecError("fields", f"{missing} are not among the columns {columns}; "
                                       "name them in 'columns', or set 'header': true")
        splits = list(self.canonical_files()) or [canonical_split(s) for s in
                                                  (self.hub.splits if self.hub else {})]
        _check_split_names("sha256", list(self.sha256))
        for key in ("default_splits", "sha256"):
            for split in getattr(self, key):
                if canonical_split(split) not in splits:
                    raise _SpecError(key, f"{split!r} is not among the splits "
                                          f"({', '.join(splits)})")
        return self


def _check_retrieval(m: _SpecModel) -> None:
    """A retrieval spec: corpus, queries and qrels files (split -> TSV), no hub source."""
    for key in ("corpus", "queries"):
        if getattr(m, key) is None:
            raise _SpecError(key, f"required for a retrieval task ({_EXPECTED[key][8:]})")
    if not m.files:
        raise _SpecError("files", "a retrieval task maps each split to its qrels TSV "
                                  "(query-id, corpus-id, score), e.g. {\"test\": "
                                  "\"qrels/test.tsv\"}")
    if m.hub is not None:
        raise _SpecError("hub", "a retrieval task is read from local files only")


def _check_split_names(key: str, names: list[str]) -> None:
    seen: dict[str, str] = {}
    for n in names:
        c = canonical_split(n)
        if c in seen:
            raise _SpecError(key, f"{seen[c]} and {n} name the same split ({c})")
        seen[c] = n


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _describe(error: ValidationError, d: dict[str, Any]) -> str:
    """One line for a validation error: unknown keys first, else ``KEY: expectation, got
    VALUE`` for each key at fault (``;``-separated), else the cross-key rule broken."""
    errs = error.errors()
    unknown = [str(e["loc"][0]) for e in errs if e["type"] == "extra_forbidden"
               and len(e["loc"]) == 1]
    if unknown:
        return (f"unknown key(s) {', '.join(unknown)}; valid keys: "
                f"{', '.join(sorted(_SpecModel.model_fields))}")
    messages: list[str] = []
    for e in errs:
        cause = (e.get("ctx") or {}).get("error")
        if isinstance(cause, _SpecError):
            text = f"{cause.key}: {cause.problem}" if cause.key else cause.problem
        else:
            key = str(e["loc"][0]) if e["loc"] else ""
            if e["type"] == "missing" and len(e["loc"]) == 1:
                text = f"{key}: required ({_EXPECTED[key].removeprefix('must be ')})"
            else:
                text = f"{key}: {_EXPECTED.get(key, 'is invalid')}, got {_shown(d.get(key))}"
        if text not in messages:
            messages.append(text)
    return "; ".join(messages)
