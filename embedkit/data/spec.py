"""Declarative task specs: a pair dataset described by metadata, not code (as mteb's tasks are).

The built-in tasks (ATEC, BQ, LCQMC, PAWSX, STS-B, AFQMC) are JSON files in the project's
``data/tasks/`` folder; a user adds a dataset by writing one more such file and passing its path
wherever a task name is accepted (``tasks=["my-pairs.json"]``; on the command line, the tasks option).

A minimal spec for a headered TSV file next to the spec::

    {"name": "my-pairs", "format": "tsv", "header": true,
     "files": {"test": "pairs.tsv"},
     "fields": {"sentence1": "query", "sentence2": "candidate", "label": "score"},
     "label_range": [0, 1], "label_type": "float"}

>>> spec = TaskSpec.from_dict({"name": "x", "files": {"test": "x.tsv"}}, origin="inline")
>>> spec.format, spec.max_length, spec.fields["label"]
('tsv', 64, 'label')
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedkit.errors import ConfigError

#: Canonical split names; the aliases users type are mapped onto them.
SPLIT_ALIASES = {"dev": "valid", "validation": "valid", "val": "valid", "eval": "valid"}
FORMATS = ("tsv", "csv", "jsonl")
_DEFAULT_FIELDS = {"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"}
_KEYS = {
    "name", "description", "format", "header", "columns", "fields", "files", "base",
    "label_range", "label_type", "max_length", "default_splits", "cmteb_splits", "hub",
    "encoding", "license",
}


def canonical_split(split: str) -> str:
    """Map a user's split name onto embedkit's (``dev``/``validation`` -> ``valid``).

    >>> canonical_split("dev"), canonical_split("test")
    ('valid', 'test')
    """
    s = split.strip().lower()
    return SPLIT_ALIASES.get(s, s)


@dataclass(frozen=True)
class HubSource:
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
    cmteb_splits: tuple[str, ...] = ()  # optional: the splits C-MTEB scores, if the author says
    hub: HubSource | None = None
    description: str = ""
    encoding: str = "utf-8"
    origin: str = ""
    spec_dir: str = ""

    @property
    def splits(self) -> tuple[str, ...]:
        """Splits this task has (local files, else the hub's)."""
        if self.files:
            return tuple(self.files)
        return tuple(self.hub.splits) if self.hub else ()

    @property
    def is_binary(self) -> bool:
        """True when labels are 0/1 (used, e.g., to choose retrieval positives)."""
        return tuple(self.label_range or ()) == (0, 1)

    @classmethod
    def from_dict(cls, d: dict[str, Any], origin: str = "", spec_dir: str = "") -> TaskSpec:
        """Build and validate a spec; errors name the spec's origin and the bad key."""
        where = origin or "task spec"

        def bad(msg: str) -> ConfigError:
            return ConfigError(f"{where}: {msg}")

        if not isinstance(d, dict):
            raise bad("a task spec must be a JSON object")
        unknown = sorted(set(d) - _KEYS)
        if unknown:
            raise bad(f"unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(_KEYS))}")
        if not d.get("name") or not isinstance(d["name"], str):
            raise bad("'name' (a string) is required")
        fmt = d.get("format", "tsv")
        if fmt not in FORMATS:
            raise bad(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
        files = {canonical_split(k): str(v) for k, v in (d.get("files") or {}).items()}
        hub = None
        if d.get("hub"):
            h = d["hub"]
            if not isinstance(h, dict) or "id" not in h:
                raise bad("'hub' must be an object with at least an 'id'")
            hub = HubSource(
                id=h["id"],
                revision=h.get("revision"),
                splits={canonical_split(k): v for k, v in (h.get("splits") or {}).items()},
                fields={**_DEFAULT_FIELDS, **(h.get("fields") or {})},
                config=h.get("config"),
            )
        if not files and hub is None:
            raise bad("give 'files' (split -> path) or a 'hub' source")
        fields = {**_DEFAULT_FIELDS, **(d.get("fields") or {})}
        columns = tuple(d.get("columns") or ("sentence1", "sentence2", "label"))
        if fmt != "jsonl" and not d.get("header", False):
            missing = [f for f in fields.values() if f not in columns]
            if missing:
                raise bad(f"fields {missing} are not among the columns {list(columns)}")
        label_range = d.get("label_range")
        if label_range is not None:
            if len(label_range) != 2 or not all(isinstance(x, (int, float)) for x in label_range):
                raise bad("'label_range' must be [low, high]")
            label_range = (label_range[0], label_range[1])
        label_type = d.get("label_type", "float")
        if label_type not in ("int", "float"):
            raise bad("'label_type' must be 'int' or 'float'")
        base = d.get("base", "spec")
        if base not in ("spec", "data-dir"):
            raise bad("'base' must be 'spec' or 'data-dir'")
        max_length = d.get("max_length", 64)
        if not isinstance(max_length, int) or max_length < 3:
            raise bad("'max_length' must be an integer >= 3 (it counts [CLS] and [SEP])")
        splits = tuple(files) or (tuple(hub.splits) if hub else ())
        default_splits = tuple(canonical_split(s) for s in d.get("default_splits", [])) or (
            ("test",) if "test" in splits else splits[-1:]
        )
        return cls(
            name=d["name"],
            files=files,
            format=fmt,
            header=bool(d.get("header", False)),
            columns=columns,
            fields=fields,
            base=base,
            label_range=label_range,
            label_type=label_type,
            max_length=max_length,
            default_splits=default_splits,
            cmteb_splits=tuple(canonical_split(s) for s in d.get("cmteb_splits", ())),
            hub=hub,
            description=d.get("description", ""),
            encoding=d.get("encoding", "utf-8"),
            origin=origin,
            spec_dir=spec_dir,
        )

    @classmethod
    def from_file(cls, path: str | Path) -> TaskSpec:
        """Read a JSON spec file; relative data paths are resolved against its folder."""
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: task spec file not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            line = getattr(e, "lineno", None)
            raise ConfigError(f"{path}:{line or 1}: not a valid JSON task spec ({e})") from None
        return cls.from_dict(d, origin=str(path), spec_dir=str(path.resolve().parent))
