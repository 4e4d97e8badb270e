"""The built-in tasks: the spec files in the project's ``data/tasks/`` folder.

Installed packages find them under ``<prefix>/share/embedkit/tasks`` (setup.cfg's data_files);
a source checkout or editable install reads ``data/tasks`` beside the package.

>>> get_task("stsb").name, get_task("PAWSX").max_length
('STS-B', 128)
>>> [t for t in task_names() if t != "AFQMC"]
['ATEC', 'BQ', 'LCQMC', 'PAWSX', 'STS-B']
"""

from __future__ import annotations

import functools
import site
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from embedkit.errors import ConfigError

if TYPE_CHECKING:  # the library is imported where the work is
    from embedkit.data.spec import TaskSpec

#: The five tasks of the BERT-whitening papers' tables, in their order.
DEFAULT_TASKS = ("ATEC", "BQ", "LCQMC", "PAWSX", "STS-B")


def _task_dirs() -> list[Path]:
    here = Path(__file__).resolve().parents[2] / "data" / "tasks"
    prefixes = [sys.prefix, getattr(site, "USER_BASE", None) or ""]
    return [here] + [Path(p) / "share" / "embedkit" / "tasks" for p in prefixes if p]


@functools.lru_cache(maxsize=1)
def builtin_tasks() -> dict[str, TaskSpec]:
    """All built-in task specs by name, in file-name order (cached)."""
    from embedkit.data.spec import TaskSpec

    for d in _task_dirs():
        files = sorted(d.glob("*.json"))
        if files:
            specs = [TaskSpec.from_file(f) for f in files]
            order = {n: i for i, n in enumerate(DEFAULT_TASKS)}
            specs.sort(key=lambda s: (order.get(s.name, len(order)), s.name))
            return {s.name: s for s in specs}
    raise ConfigError("embedkit's task specs (data/tasks/*.json) are missing from this install; "
                      "reinstall embedkit")


def task_names() -> list[str]:
    """Names of the built-in tasks."""
    return list(builtin_tasks())


def _norm(name: str) -> str:
    return name.replace("-", "").replace("_", "").lower()


def get_task(name_or_path: str) -> TaskSpec:
    """A built-in task by name (case and dashes ignored: ``stsb`` = ``STS-B``) or a spec file path."""
    from embedkit.data.spec import TaskSpec

    p = Path(name_or_path)
    if name_or_path.endswith(".json") or p.is_file():
        return TaskSpec.from_file(p)
    tasks = builtin_tasks()
    for name, spec in tasks.items():
        if _norm(name) == _norm(name_or_path):
            return spec
    raise ConfigError(f"unknown task {name_or_path!r}; built-in tasks: {', '.join(tasks)} "
                      "(or give the path of a task spec .json file)")


def parse_tasks(arg: str | None) -> list[TaskSpec]:
    """Comma-separated task names or spec paths; ``None``/``""`` gives the five default tasks."""
    names = [t.strip() for t in (arg or "").split(",") if t.strip()] or list(DEFAULT_TASKS)
    return [get_task(n) for n in names]
