"""Sentence-pair tasks: declarative specs, validating readers, local and hub loading.

>>> from embedkit.data import get_task
>>> get_task("ATEC").hub.id
'C-MTEB/ATEC'
"""

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
from embedkit.data.registry import DEFAULT_TASKS, builtin_tasks, get_task, parse_tasks, task_names
from embedkit.data.spec import TaskSpec, canonical_split

__all__ = [
    "DEFAULT_TASKS", "DataDir", "DataOptions", "PairSplit", "TaskSpec", "builtin_tasks",
    "canonical_split", "check_split", "data_dir_from_env", "data_source", "data_source_line",
    "find_data_dir", "get_task", "load_split", "load_task", "parse_tasks", "read_pair_file",
    "resolve_file", "task_names", "task_splits",
]
