"""Load a task's splits from a local data directory or from the Hugging Face hub.

The data directory (the ``data_dir`` argument or ``EMBEDKIT_DATA``) is the folder that holds
``senteval_cn/`` and ``AFQMC/``, or a folder holding the task folders directly, whatever its name
(``senteval_cn/`` itself, or ``DIR/LCQMC/LCQMC.test.data``); see :func:`_data_dir_candidates`.

>>> import tempfile, os
>>> d = tempfile.mkdtemp(); f = os.path.join(d, "p.tsv")
>>> _ = open(f, "w", encoding="utf-8").write("a\\tb\\t1\\n")
>>> spec = TaskSpec.from_dict({"name": "p", "files": {"test": f}})
>>> load_task(spec)["test"].n_pairs
1
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedkit.aliases import StrPath
from embedkit.data.pairs import PairSplit, read_pair_file, rows_to_split
from embedkit.data.registry import builtin_tasks, get_task
from embedkit.data.spec import TaskSpec, canonical_split
from embedkit.errors import ConfigError, DataError, EmbedkitError

_SOURCES = ("auto", "local", "hub")
#: The environment variable naming the data folder (after ``data_dir``, before the defaults).
_DATA_ENV = "EMBEDKIT_DATA"

log = logging.getLogger(__name__)
_announced: set[tuple[str, str]] = set()



@dataclass(frozen=True)
class DataOptions:
    """Where task data comes from: a local folder (``None``: ``EMBEDKIT_DATA``, else the hub),
    the source (``auto``, ``local``, ``hub``), and whether malformed rows are skipped."""

    data_dir: StrPath | None = None
    source: str = "auto"
    skip_invalid: bool = False


@dataclass(frozen=True)
class DataDir:
    """The local data folder a run reads (``path``; None: none found) and how it was found
    (``found_by``: ``data_dir``, ``EMBEDKIT_DATA``, ``default`` or ``none``); ``looked``: the
    default places tried."""

    path: Path | None
    found_by: str
    looked: tuple[Path, ...] = ()

    def describe(self) -> str:
        """One phrase for a log line or an error: the folder and where it came from."""
        if self.path is None:
            return ("no local data folder (no data_dir, no $EMBEDKIT_DATA, nothing at "
                    f"{' or '.join(map(str, self.looked)) or 'the defaults'})")
        how = {"data_dir": "given", _DATA_ENV: f"from ${_DATA_ENV}",
               "default": "the default: shared/data beside the checkout"}[self.found_by]
        return f"local data folder {self.path} ({how})"


def default_data_dirs() -> list[Path]:
    """Where the data is looked for when neither ``data_dir`` nor ``$EMBEDKIT_DATA`` names it,
    in order: ``shared/data`` beside this source checkout (the project's layout), then
    ``../shared/data`` from the current folder. An installed (not editable) package only has
    the second.

    >>> all(p.parts[-2:] == ("shared", "data") for p in default_data_dirs())
    True
    """
    root = Path(__file__).resolve().parents[2]
    dirs = [root.parent / "shared" / "data"] if (root / "pyproject.toml").is_file() else []
    dirs.append((Path.cwd().parent / "shared" / "data").resolve())
    return list(dict.fromkeys(dirs))


def find_data_dir(data_dir: StrPath | None = None) -> DataDir:
    """The local data folder: ``data_dir`` if given, else ``$EMBEDKIT_DATA``, else the first of
    :func:`default_data_dirs` that exists (else ``DataDir(None, "none")``: built-in tasks then
    load from the hub). A folder that was named but does not exist is an error, never a silent
    fall-back to the hub.

    >>> find_data_dir("/nonexistent/data")
    Traceback (most recent call last):
    embedkit.errors.ConfigError: data folder /nonexistent/data does not exist; give the folder holding senteval_cn/ (or the task folders), or load from the hub (source hub)
    """
    if data_dir not in (None, ""):
        return _named_dir(Path(data_dir).expanduser(), "data_dir")
    env = os.environ.get(_DATA_ENV)
    if env:
        return _named_dir(Path(env).expanduser(), _DATA_ENV)
    looked = tuple(default_data_dirs())
    found = next((d for d in looked if d.is_dir()), None)
    return DataDir(found, "default", looked) if found else DataDir(None, "none", looked)


def _named_dir(path: Path, found_by: str) -> DataDir:
    if path.is_dir():
        return DataDir(path, found_by)
    what = "does not exist" if not path.exists() else "is not a folder"
    if found_by == _DATA_ENV:
        raise ConfigError(f"${_DATA_ENV} is {path}, which {what}; point it at the folder holding "
                          "senteval_cn/ (or the task folders), or unset it")
    raise ConfigError(f"data folder {path} {what}; give the folder holding senteval_cn/ (or the "
                      "task folders), or load from the hub (source hub)", param="data_dir")


def _announce(ddir: DataDir, what: str) -> None:
    """Say once per process which data folder (or the hub) a run uses."""
    key = (what, str(ddir.path))
    if key not in _announced:
        _announced.add(key)
        log.info("data: %s%s", ddir.describe(), what)


def data_dir_from_env(data_dir: StrPath | None = None) -> Path | None:
    """The local data folder's path (:func:`find_data_dir`), or None (then the hub is used)."""
    return find_data_dir(data_dir).path


def _data_dir_candidates(rel: Path, data_dir: Path) -> list[Path]:
    """Where a ``data-dir`` relative path may lie, in order, for the three layouts of the data
    folder: the folder holding ``senteval_cn/`` and ``AFQMC/``; a folder holding the task
    folders directly, whatever its name (``senteval_cn/`` itself, or ``DIR/LCQMC/...``), with
    AFQMC inside it or beside it; and a task folder itself (``DIR`` named ``AFQMC``).

    A file of a collection (``senteval_cn/LCQMC/LCQMC.test.data``) is never looked for beside
    the data folder: a wrong folder must not pick up a neighbour's data silently.

    >>> [str(p) for p in _data_dir_candidates(Path("senteval_cn/BQ/BQ.test.data"), Path("d"))]
    ['d/senteval_cn/BQ/BQ.test.data', 'd/BQ/BQ.test.data']
    >>> [str(p) for p in _data_dir_candidates(Path("AFQMC/dev.txt"), Path("x/senteval_cn"))]
    ['x/senteval_cn/AFQMC/dev.txt', 'x/AFQMC/dev.txt']
    """
    candidates = [data_dir / rel]
    if len(rel.parts) >= 3:  # COLLECTION/TASK/FILE: DIR may hold the task folders directly
        candidates.append(data_dir / Path(*rel.parts[1:]))
    elif len(rel.parts) == 2:  # TASK/FILE: inside DIR, DIR itself, or beside DIR
        if data_dir.name == rel.parts[0]:
            candidates.append(data_dir / rel.parts[1])
        candidates.append(data_dir.parent / rel)
    return list(dict.fromkeys(candidates))


def resolve_file(spec: TaskSpec, split: str, data_dir: Path | None) -> Path:
    """Where ``spec``'s file for ``split`` lies (the first of :func:`_data_dir_candidates` that
    exists; else the first, which may not exist)."""
    return resolve_path(spec, spec.files[split], data_dir)


def resolve_path(spec: TaskSpec, path: str, data_dir: Path | None) -> Path:
    """Where one of ``spec``'s paths lies: absolute as it is, else against the spec's folder or
    the data folder (``base``), as :func:`resolve_file` resolves a split's file."""
    rel = Path(path)
    if rel.is_absolute():
        return rel
    if spec.base == "spec":
        return Path(spec.spec_dir or ".") / rel
    if data_dir is None:
        raise ConfigError(f"task {spec.name}: no data directory; give data_dir or set "
                          f"{_DATA_ENV} to the folder holding senteval_cn/ ("
                          f"{find_data_dir().describe()})", param="data_dir")
    candidates = _data_dir_candidates(rel, data_dir)
    return next((c for c in candidates if c.is_file()), candidates[0])


def task_splits(spec: TaskSpec) -> list[str]:
    """Every split a task has, local or on the hub, in order.

    >>> task_splits(get_task("STS-B")), task_splits(get_task("ATEC"))
    (['train', 'valid', 'test'], ['valid', 'test'])
    """
    return list(dict.fromkeys([*spec.files, *(spec.hub.splits if spec.hub else ())]))


def check_split(spec: TaskSpec, split: str) -> str:
    """``split`` in canonical form, or a :class:`ConfigError` (``param="splits"``) when the task
    has no such split, locally or on the hub.

    >>> check_split(get_task("ATEC"), "dev")
    'valid'
    >>> check_split(get_task("ATEC"), "train")
    Traceback (most recent call last):
    embedkit.errors.ConfigError: task ATEC has no split 'train'; its splits: valid, test
    """
    name = canonical_split(split)
    known = task_splits(spec)
    if name not in known:
        builtin = builtin_tasks().get(spec.name)
        where = (f" (task spec {spec.origin})"
                 if spec.origin and (builtin is None or builtin.origin != spec.origin) else "")
        raise ConfigError(f"task {spec.name} has no split {name!r}; its splits: "
                          f"{', '.join(known) or 'none'}{where}", param="splits")
    return name


def _needs_data_dir(spec: TaskSpec, split: str) -> bool:
    return (split in spec.files and spec.base == "data-dir"
            and not Path(spec.files[split]).is_absolute())


def load_split(spec: TaskSpec, split: str, *, data_dir: StrPath | None = None,
               source: str = "auto", skip_invalid: bool = False) -> PairSplit:
    """Load one split of a task (see :func:`load_task`).

    ``auto``: the local file when the task's files need no data folder (a spec file's own
    files) or a data folder is known (:func:`find_data_dir`), else the hub. ``local`` never
    falls back to the hub; a data folder that was named but is missing is always an error.
    """
    if source not in _SOURCES:
        raise ConfigError(f"source {source!r} is not one of {', '.join(_SOURCES)}",
                          param="source")
    split = check_split(spec, split)
    if spec.is_retrieval:
        raise ConfigError(f"task {spec.name} is a retrieval task (corpus, queries, qrels), not "
                          "sentence pairs; evaluate it with index eval", param="tasks")
    if source == "hub":
        return _load_hub_split(spec, split, skip_invalid=skip_invalid)
    needs_dir = _needs_data_dir(spec, split)
    ddir = find_data_dir(data_dir) if needs_dir or source == "local" else DataDir(None, "none")
    if source == "local" or (split in spec.files and (not needs_dir or ddir.path is not None)):
        if split not in spec.files:
            raise ConfigError(f"task {spec.name} has no local file for split {split!r} (only "
                              f"the hub has it); its local splits: "
                              f"{', '.join(spec.files) or 'none'}", param="splits")
        path = resolve_file(spec, split, ddir.path)
        if not path.exists():
            hint = (f" (set data_dir or {_DATA_ENV} to the folder holding senteval_cn/, or "
                    "the one holding the task folders)" if needs_dir else "")
            raise DataError(f"file not found{hint}", path=str(path))
        if needs_dir:
            _announce(ddir, "")
        return read_pair_file(spec, split, str(path), skip_invalid=skip_invalid)
    if needs_dir:
        _announce(ddir, "; loading from the Hugging Face hub")
    return _load_hub_split(spec, split, skip_invalid=skip_invalid)


def _load_hub_split(spec: TaskSpec, split: str, skip_invalid: bool = False) -> PairSplit:
    """Load a split from the hub through ``datasets`` at the spec's pinned revision."""
    if spec.hub is None:
        raise ConfigError(f"task {spec.name} has no hub source, only local files "
                          f"({', '.join(spec.files) or 'none'}); load it from them (source "
                          "auto or local)", param="source")
    if split not in spec.hub.splits:
        raise ConfigError(f"task {spec.name} has no split {split!r} on the hub; "
                          f"its splits: {', '.join(spec.hub.splits)}")
    try:
        import datasets
    except ImportError:
        raise ConfigError("loading from the hub needs the 'datasets' package: "
                          "pip install 'embedkit[hub]', or give data_dir", param="data_dir") from None
    h = spec.hub
    try:
        ds = datasets.load_dataset(h.id, h.config, revision=h.revision, split=h.splits[split])
    except Exception as e:  # network, auth, missing revision: all end the same way for the user
        raise EmbedkitError(f"could not load {h.id}@{h.revision} split {h.splits[split]} from the "
                            f"hub ({type(e).__name__}: {str(e)[:200]}); give data_dir to use "
                            "local files") from None
    source = f"hub:{h.id}@{h.revision or 'main'}/{h.splits[split]}"
    fields = h.fields
    local = TaskSpec(**{**spec.__dict__, "fields": fields})
    return rows_to_split(local, split, source, iter(ds), skip_invalid=skip_invalid)


def load_task(task: str | TaskSpec, splits: list[str] | tuple[str, ...] | None = None, *,
              data_dir: StrPath | None = None, source: str = "auto",
              skip_invalid: bool = False) -> dict[str, PairSplit]:
    """Load the given splits (default: the task's default splits) of a task, by split name.

    ``task`` is a built-in name, a spec file path or a :class:`TaskSpec`.
    """
    spec = get_task(task) if isinstance(task, str) else task
    wanted = [canonical_split(s) for s in (splits or spec.default_splits)]
    return {s: load_split(spec, s, data_dir=data_dir, source=source, skip_invalid=skip_invalid)
            for s in wanted}


def data_source(sources: Iterable[str], data_dir: StrPath | None = None
                ) -> dict[str, Any]:
    """Where a run's task data came from, from its splits' ``source`` strings (a file path, or
    ``hub:ID@REVISION/SPLIT``): ``kind`` (``local``, ``hub``, ``local+hub``, or ``none`` when no
    task data was read), ``local`` (the data folder for files inside it, else each file's
    folder), ``found_by`` (how the data folder was found, see :class:`DataDir`) and ``hub``
    (``ID@REVISION``).

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> src = data_source(["hub:C-MTEB/ATEC@0f31/test", f"{d}/senteval_cn/BQ/BQ.test.data"], d)
    >>> src["kind"], src["local"] == [d], src["found_by"], src["hub"]
    ('local+hub', True, 'data_dir', ['C-MTEB/ATEC@0f31'])
    >>> data_source([])
    {'kind': 'none', 'local': [], 'hub': []}
    """
    ddir = _data_dir_or_none(data_dir)
    found = _data_dir_or_none(None)
    if found.path is not None and ddir.path == found.path:  # a record's resolved data_dir
        ddir = found
    local: list[str] = []
    hub: list[str] = []
    used_dir = False
    for src in sources:
        if src.startswith("hub:"):
            hub.append(src[4:].rsplit("/", 1)[0])
            continue
        path = Path(src.split("#", 1)[0]).resolve()
        inside = ddir.path is not None and path.is_relative_to(ddir.path.resolve())
        used_dir = used_dir or inside
        local.append(str(ddir.path) if inside else str(path.parent))
    local, hub = list(dict.fromkeys(local)), list(dict.fromkeys(hub))
    kind = "+".join(k for k, v in (("local", local), ("hub", hub)) if v) or "none"
    out: dict[str, Any] = {"kind": kind, "local": local}
    if used_dir:
        out["found_by"] = ddir.found_by
    out["hub"] = hub
    return out


def _data_dir_or_none(data_dir: StrPath | None) -> DataDir:
    try:
        return find_data_dir(data_dir)
    except ConfigError:  # a source="hub" run may name a folder it never read
        return DataDir(None, "none")


def data_source_line(source: dict[str, Any] | None) -> str:
    """The footer line that says where a record's task data came from ("" for none).

    >>> data_source_line({"kind": "local", "local": ["/d"], "found_by": "default", "hub": []})
    'data: local /d (the default: shared/data beside the checkout)'
    >>> data_source_line({"kind": "hub", "local": [], "hub": ["C-MTEB/BQ@e3dda5e1"]})
    'data: hub C-MTEB/BQ@e3dda5e1'
    """
    if not source or source.get("kind") in (None, "none"):
        return ""
    how = {"data_dir": "given", _DATA_ENV: f"${_DATA_ENV}",
           "default": "the default: shared/data beside the checkout"}
    parts = []
    if source.get("local"):
        found = how.get(source.get("found_by", ""), "")
        parts.append("local " + ", ".join(source["local"]) + (f" ({found})" if found else ""))
    if source.get("hub"):
        parts.append("hub " + ", ".join(source["hub"]))
    return "data: " + "; ".join(parts)
