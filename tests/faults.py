"""Fault injection for reliability tests: "killed between these two system calls", simulated by
raising at the exact step (no strace or real signals needed).

:class:`SimulatedKill` derives from ``BaseException``, so the library's ``except Exception``
handlers cannot swallow it, as they could not swallow a real kill; what is on disk afterwards
is what a kill at that instant would leave.

>>> import os, tempfile
>>> d = tempfile.mkdtemp(); a, b = os.path.join(d, "a"), os.path.join(d, "b")
>>> _ = open(a, "w").write("x")
>>> with kill_at("os.replace", call=1) as hits:
...     try:
...         os.replace(a, b)
...     except SimulatedKill:
...         pass
>>> hits.calls, os.path.exists(a), os.path.exists(b)
(1, True, False)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock


class SimulatedKill(BaseException):
    """Raised where the process is "killed"."""


@dataclass
class Hits:
    calls: int = 0


def _resolve(target: str) -> tuple[Any, str]:
    module, _, attr = target.rpartition(".")
    try:
        return importlib.import_module(module), attr
    except ImportError:  # a class attribute: "pkg.mod.Class.method"
        mod, _, cls = module.rpartition(".")
        return getattr(importlib.import_module(mod), cls), attr


@contextmanager
def kill_at(target: str, call: int = 1, *, after: bool = False) -> Iterator[Hits]:
    """Patch ``target`` (``"os.replace"``, ``"embedkit.io.atomic.os.replace"``,
    ``"pkg.mod.Class.method"``) so that its ``call``-th call raises :class:`SimulatedKill`:
    before the real call runs, or just after it returned (``after=True``)."""
    owner, attr = _resolve(target)
    real: Callable[..., Any] = getattr(owner, attr)
    hits = Hits()

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        hits.calls += 1
        if hits.calls == call and not after:
            raise SimulatedKill(f"killed before call {call} of {target}")
        result = real(*args, **kwargs)
        if hits.calls == call and after:
            raise SimulatedKill(f"killed after call {call} of {target}")
        return result

    with mock.patch.object(owner, attr, wrapper):
        yield hits
