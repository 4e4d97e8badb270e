"""Sentence-pair tasks: declarative specs, validating readers, local and hub loading.

>>> from embedkit.data import get_task
>>> get_task("ATEC").hub.id
'C-MTEB/ATEC'
"""

from typing import TYPE_CHECKING

from embedkit import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from embedkit.data.loading import (
        DataDir,
        DataOptions,
        check_split,
        data_dir_from_env,
        data_source,
        data_source_line,
        find_data_dir,
        load_split,
        load_task,
        resolve_file,
        task_splits,
    )
    from embedkit.data.pairs import PairSplit, read_pair_file
    from embedkit.data.registry import (
        DEFAULT_TASKS,
        builtin_tasks,
        get_task,
        parse_tasks,
        task_names,
    )
    from embedkit.data.spec import TaskSpec, canonical_split

_LAZY = {
    "DataDir": "embedkit.data.loading",
    "DataOptions": "embedkit.data.loading",
    "check_split": "embedkit.data.loading",
    "data_dir_from_env": "embedkit.data.loading",
    "data_source": "embedkit.data.loading",
    "data_source_line": "embedkit.data.loading",
    "find_data_dir": "embedkit.data.loading",
    "load_split": "embedkit.data.loading",
    "load_task": "embedkit.data.loading",
    "resolve_file": "embedkit.data.loading",
    "task_splits": "embedkit.data.loading",
    "PairSplit": "embedkit.data.pairs",
    "read_pair_file": "embedkit.data.pairs",
    "DEFAULT_TASKS": "embedkit.data.registry",
    "builtin_tasks": "embedkit.data.registry",
    "get_task": "embedkit.data.registry",
    "parse_tasks": "embedkit.data.registry",
    "task_names": "embedkit.data.registry",
    "TaskSpec": "embedkit.data.spec",
    "canonical_split": "embedkit.data.spec",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = [
    "DEFAULT_TASKS", "DataDir", "DataOptions", "PairSplit", "TaskSpec", "builtin_tasks",
    "canonical_split", "check_split", "data_dir_from_env", "data_source", "data_source_line",
    "find_data_dir", "get_task", "load_split", "load_task", "parse_tasks", "read_pair_file",
    "resolve_file", "task_names", "task_splits",
]
