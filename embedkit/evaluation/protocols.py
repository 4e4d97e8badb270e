"""Named evaluation protocols: which splits and which max length a published table used.

- ``whitening`` (default): the BERT-whitening / SimCSE-zh papers: max length 64 tokens
  (128 for PAWSX), the splits asked for (test by default).
- ``cmteb``: C-MTEB: the test split (AFQMC: dev), the model's own maximum length.

Protocol knowledge lives here, not in the task specs: a protocol's per-task split choices are
its own override table.

>>> from embedkit.data import get_task
>>> get_protocol("whitening").max_length(get_task("PAWSX"), model_max=512)
128
>>> get_protocol("cmteb").splits(get_task("AFQMC"))
('valid',)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from embedkit.data.spec import TaskSpec
from embedkit.errors import ConfigError


@dataclass(frozen=True)
class EvalProtocol:
    """How a published table evaluated: max length (the task's, or the model's own) and the
    splits scored when none are asked for (per-task overrides, else ``default_splits``)."""

    name: str
    description: str
    use_model_max_length: bool
    default_splits: tuple[str, ...] | None = None   # None: each task's own default splits
    split_overrides: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def max_length(self, task: TaskSpec, model_max: int, override: int | None = None) -> int:
        if override:
            return int(override)
        return int(model_max) if self.use_model_max_length else int(task.max_length)

    def splits(self, task: TaskSpec, requested: tuple[str, ...] | None = None) -> tuple[str, ...]:
        if requested:
            return tuple(requested)
        if task.name in self.split_overrides:
            return self.split_overrides[task.name]
        if self.default_splits is not None:
            return tuple(s for s in self.default_splits if s in task.splits) or (
                task.default_splits)
        return task.default_splits


_PROTOCOLS = {
    "whitening": EvalProtocol("whitening", "BERT-whitening papers: max length 64 (PAWSX 128), "
                              "splits as requested (default test)", False),
    "cmteb": EvalProtocol("cmteb", "C-MTEB: test split (AFQMC dev), the model's own max length",
                          True, default_splits=("test",),
                          split_overrides={"AFQMC": ("valid",)}),
}


def get_protocol(name: str) -> EvalProtocol:
    """The protocol called ``name`` (``whitening`` or ``cmteb``)."""
    try:
        return _PROTOCOLS[name.lower().replace("-", "")]
    except KeyError:
        raise ConfigError(f"unknown protocol {name!r}; valid: {', '.join(_PROTOCOLS)}",
                          param="protocol") from None
