"""What every runner that fits postprocessors takes, importing nothing heavy (a run without
postprocessors imports no scikit-learn)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PostOptions:
    """What every runner that fits postprocessors takes (bench, sweep, diagnose, index eval,
    whiten): postprocessor chains (specs of :func:`~embedkit.postprocess.parse_post`, or a saved
    transform file's path, as :func:`~embedkit.postprocess.resolve_post` tells them apart), what
    they are fitted on, and whether a saved map fitted for another model or pooling is used
    anyway (``force``). ``fit_on``: ``task`` (every split of the task), a split name, a file
    of sentences, or what the runner fits on besides (``corpus``, ``TASK:SPLIT`` lists);
    ``fit_unique``: unique sentences instead of every occurrence. A runner that makes its own
    chains (sweep, whiten) leaves ``chains`` empty."""

    chains: tuple[str, ...] = ()
    fit_on: str = "task"
    fit_unique: bool = False
    force: bool = False
