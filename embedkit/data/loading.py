"""Load a task's splits from a local data directory or from the Hugging Face hub.

The data directory (the ``data_dir`` argument or ``EMBEDKIT_DATA``) is the folder that holds
``senteval_cn/`` and ``AFQMC/``, or a folder holding the task folders directly, whatever its name
(``senteval_cn/`` itself, or ``DIR/LCQMC/LCQMC.test.data``); see :func:`data_dir_candidates`.

>>> import tempfile, os
>>> d = tempfile.mkdtemp(); f = os.path.join(d, "p.tsv")
>>> _ = open(f, "w", encoding="utf-8").write("a\\tb\\t1\\n")
>>> spec = TaskSpec.from_dict({"name": "p", "files": {"test": f}})
>>> load_task(spec)["test"].n_pairs
1
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from embedkit.data.pairs import PairSplit, read_pair_file, rows_to_split
from embedkit.data.registry import get_task
from embedkit.data.spec import TaskSpec, canonical_split
from embedkit.errors import ConfigError, DataError, EmbedkitError

SOURCES = ("auto", "local", "hub")



@dataclass(frozen=True)
class DataOptions:
    """Where task data comes from: a local folder (``None``: ``EMBEDKIT_DATA``, else the hub),
    the source (``auto``, ``local``, ``hub``), and whether malformed rows are skipped."""

    data_dir: str | os.PathLike | None = None
    source: str = "auto"
    skip_invalid: bool = False


def data_dir_from_env(data_dir: str | os.PathLike | None = None) -> Path | None:
    """``data_dir`` if given, else ``$EMBEDKIT_DATA``, else None (then the hub is used)."""
    value = data_dir if data_dir not in (None, "") else os.environ.get("EMBEDKIT_DATA")
    return Path(value).expanduser() if value else None


def data_dir_candidates(rel: Path, data_dir: Path) -> list[Path]:
    """Where a ``data-dir`` relative path may lie, in order, for the three layouts of the data
    folder: the folder holding ``senteval_cn/`` and ``AFQMC/``; a folder holding the task
    folders directly, whatever its name (``senteval_cn/`` itself, or ``DIR/LCQMC/...``), with
    AFQMC inside it or beside it; and a task folder itself (``DIR`` named ``AFQMC``).

    A file of a collection (``senteval_cn/LCQMC/LCQMC.test.data``) is never looked for beside
    the data folder: a wrong folder must not pick up a neighbour's data silently.

    >>> [str(p) for p in data_dir_candidates(Path("senteval_cn/BQ/BQ.test.data"), Path("d"))]
    ['d/senteval_cn/BQ/BQ.test.data', 'd/BQ/BQ.test.data']
    >>> [str(p) for p in data_dir_candidates(Path("AFQMC/dev.txt"), Path("x/senteval_cn"))]
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
    """Where ``spec``'s file for ``split`` lies (the first of :func:`data_dir_candidates` that
    exists; else the first, which may not exist)."""
    rel = Path(spec.files[split])
    if rel.is_absolute():
        return rel
    if spec.base == "spec":
        return Path(spec.spec_dir or ".") / rel
    if data_dir is None:
        raise ConfigError(f"task {spec.name}: no data directory; give data_dir or set "
                          "EMBEDKIT_DATA to the folder holding senteval_cn/", param="data_dir")
    candidates = data_dir_candidates(rel, data_dir)
    return next((c for c in candidates if c.is_file()), candidates[0])


def load_split(spec: TaskSpec, split: str, *, data_dir: str | os.PathLike | None = None,
               source: str = "auto", skip_invalid: bool = False) -> PairSplit:
    """Load one split of a task (see :func:`load_task`)."""
    split = canonical_split(split)
    if source not in SOURCES:
        raise ConfigError(f"source {source!r} is not one of {', '.join(SOURCES)}")
    ddir = data_dir_from_env(data_dir)
    has_local = split in spec.files
    use_local = source == "local" or (source == "auto" and has_local and (ddir or spec.base == "spec"))
    if use_local:
        if not has_local:
            raise ConfigError(f"task {spec.name} has no local file for split {split!r}; "
                              f"its splits: {', '.join(spec.files) or 'none'}")
        path = resolve_file(spec, split, ddir)
        if not path.exists():
            hint = (" (set data_dir or EMBEDKIT_DATA to the folder holding senteval_cn/, or "
                    "the one holding the task folders)" if spec.base == "data-dir" else "")
            raise DataError(f"file not found{hint}", path=str(path))
        return read_pair_file(spec, split, str(path), skip_invalid=skip_invalid)
    return load_hub_split(spec, split, skip_invalid=skip_invalid)


def load_hub_split(spec: TaskSpec, split: str, skip_invalid: bool = False) -> PairSplit:
    """Load a split from the hub through ``datasets`` at the spec's pinned revision."""
    if spec.hub is None:
        raise ConfigError(f"task {spec.name} has no hub source; give data_dir", param="data_dir")
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
              data_dir: str | os.PathLike | None = None, source: str = "auto",
              skip_invalid: bool = False) -> dict[str, PairSplit]:
    """Load the given splits (default: the task's default splits) of a task, by split name.

    ``task`` is a built-in name, a spec file path or a :class:`TaskSpec`.
    """
    spec = get_task(task) if isinstance(task, str) else task
    wanted = [canonical_split(s) for s in (splits or spec.default_splits)]
    return {s: load_split(spec, s, data_dir=data_dir, source=source, skip_invalid=skip_invalid)
            for s in wanted}
