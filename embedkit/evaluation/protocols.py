"""Named evaluation protocols: which splits and which max length a published table used.

- ``whitening`` (default): the BERT-whitening / SimCSE-zh papers: max length 64 tokens
  (128 for PAWSX), the splits asked for (test by default).
- ``cmteb``: C-MTEB: the test split (AFQMC: dev), the model's own maximum length.

>>> from embedkit.data import get_task
>>> get_protocol("whitening").max_length(get_task("PAWSX"), model_max=512)
128
>>> get_protocol("cmteb").splits(get_task("AFQMC"))
('valid',)
"""

from __future__ import annotations

from dataclasses import dataclass

from embedkit.data.spec import TaskSpec
from embedkit.errors import ConfigError


@dataclass(frozen=True)
class Protocol:
    name: str
    description: str
    use_model_max_length: bool
    use_cmteb_splits: bool

    def max_length(self, task: TaskSpec, model_max: int, override: int | None = None) -> int:
        if override:
            return int(override)
        return int(model_max) if self.use_model_max_length else int(task.max_length)

    def splits(self, task: TaskSpec, requested: tuple[str, ...] | None = None) -> tuple[str, ...]:
        if requested:
            return tuple(requested)
        return task.cmteb_splits if self.use_cmteb_splits else task.default_splits


PROTOCOLS = {
    "whitening": Protocol("whitening", "BERT-whitening papers: max length 64 (PAWSX 128), "
                          "splits as requested (default test)", False, False),
    "cmteb": Protocol("cmteb", "C-MTEB: test split (AFQMC dev), the model's own max length",
                      True, True),
}


def get_protocol(name: str) -> Protocol:
    try:
        return PROTOCOLS[name.lower().replace("-", "")]
    except KeyError:
        raise ConfigError(f"unknown protocol {name!r}; valid: {', '.join(PROTOCOLS)}") from None
