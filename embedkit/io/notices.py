"""What other libraries may say on stderr: quieted, so that embedkit's own one-line notices are
what a run shows.

:func:`quiet_libraries` turns off the transformers progress bars (its "Loading weights" bar
among them), keeping the Hugging Face hub's download
bars on a terminal (a download's progress is worth a bar there, not in a log file).
Its advisory log lines are off (``TRANSFORMERS_NO_ADVISORY_WARNINGS``).
:func:`warning_line` renders a Python warning as one line without its file and line.

>>> import warnings
>>> warning_line(warnings.WarningMessage("X has feature names", UserWarning, "/sk/base.py", 4))
'notice: UserWarning: X has feature names'
"""

from __future__ import annotations

import os
import sys
import warnings


def quiet_libraries(*, terminal: bool | None = None) -> None:
    """No transformers progress bars (its "Loading weights" bar among them); the hub's download
    bars only when stderr is a terminal (``terminal``: override the check). Cheap: transformers
    is not imported for this. Off a terminal, bars are off before transformers is imported (it
    takes the hub's setting then); once it is imported, its own bar is turned off and the
    hub's bars follow the terminal.

    >>> quiet_libraries(terminal=False)
    >>> from huggingface_hub.utils import are_progress_bars_disabled
    >>> are_progress_bars_disabled()
    True
    """
    tty = sys.stderr.isatty() if terminal is None else terminal
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # also the hub's, turned back on below on a terminal
    if tty and are_progress_bars_disabled() and "HF_HUB_DISABLE_PROGRESS_BARS" not in os.environ:
        enable_progress_bars()
    elif not tty and not are_progress_bars_disabled():
        disable_progress_bars()


def _is_own_warning(category: type[Warning], filename: str) -> bool:
    """A warning embedkit itself raised (its category, or raised from embedkit's code)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return category.__module__.split(".")[0] == "embedkit" or (
        os.path.abspath(filename).startswith(here + os.sep))


def warning_line(w: warnings.WarningMessage) -> str:
    """``warning: MESSAGE`` for embedkit's own warnings, ``notice: CATEGORY: MESSAGE`` for other
    libraries' (the first line of the message; never the file, line or source)."""
    text = str(w.message).strip().splitlines()[0] if str(w.message).strip() else ""
    if _is_own_warning(w.category, w.filename):
        return f"warning: {text}"
    return f"notice: {w.category.__name__}: {text}"
