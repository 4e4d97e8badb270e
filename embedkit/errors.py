"""Errors that the command line turns into one clear line and an exit code, never a traceback."""

from __future__ import annotations

import numbers
from typing import Any


class EmbedkitError(Exception):
    """A problem caused by the user's input or environment, with a message saying what to do.

    The CLI prints ``embedkit: error: <message>`` and exits with :attr:`exit_code`.
    """

    exit_code = 2

    def __init__(self, *args: object, param: str | None = None) -> None:
        super().__init__(*args)
        #: the library parameter at fault (``"fit_on"``), when there is one: the command line
        #: prefixes the option that sets it (``--fit-on``)
        self.param = param


def check_int(value: Any, name: str, minimum: int | None = 1, maximum: int | None = None, *,
              param: str | None = None) -> int:
    """``value`` as an ``int`` in ``[minimum, maximum]`` (None: unbounded on that side), else a
    :class:`ConfigError` naming the parameter (``param``, by default ``name``). The one integer
    and range validator of the library: bools are refused, numpy integers accepted.

    >>> check_int(3, "k")
    3
    >>> check_int(0, "k")
    Traceback (most recent call last):
    ...
    embedkit.errors.ConfigError: k must be an integer >= 1; got 0
    >>> check_int(9, "bits", 1, 8)
    Traceback (most recent call last):
    ...
    embedkit.errors.ConfigError: bits must be an integer in [1, 8]; got 9
    """
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if ok and ((minimum is not None and value < minimum)
               or (maximum is not None and value > maximum)):
        ok = False
    if not ok:
        if minimum is not None and maximum is not None:
            rule = f" in [{minimum}, {maximum}]"
        elif minimum is not None:
            rule = f" >= {minimum}"
        elif maximum is not None:
            rule = f" <= {maximum}"
        else:
            rule = ""
        raise ConfigError(f"{name} must be an integer{rule}; got {value!r}",
                          param=param or name)
    return int(value)


class DataError(EmbedkitError):
    """A malformed data file: the message names the file, the line and the problem.

    >>> str(DataError("bad label 'x'", path="a.tsv", line=3))
    "a.tsv:3: bad label 'x'"
    """

    def __init__(self, problem: str, path: str | None = None, line: int | None = None, *,
                 param: str | None = None):
        self.problem = problem
        self.path = path
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + problem, param=param)


class ConfigError(EmbedkitError):
    """A bad setting: unknown pooling, task, dtype, spec field, mismatched matrix, and so on."""


class UnsupportedModuleError(ConfigError):
    """A model folder holds a module embedkit cannot reproduce (a sentence-transformers module
    type or setting it does not run): refused, never skipped, since skipping it would give
    other vectors than the model's.

    >>> issubclass(UnsupportedModuleError, ConfigError)
    True
    """


class MissingFileError(DataError, ConfigError):
    """An input file that does not exist or cannot be read: a data problem and a setting problem
    (the path given) at once, so callers may catch either.

    >>> str(MissingFileError("file not found", path="x.tsv"))
    'x.tsv: file not found'
    """


class WorkKept(KeyboardInterrupt):
    """An interrupt (Ctrl-C) after which the work done so far was kept: still a
    :class:`KeyboardInterrupt` to every caller; the CLI prints its message in one line and exits
    with status 130.

    >>> isinstance(WorkKept(3, "the embedding cache /c"), KeyboardInterrupt)
    True
    >>> str(WorkKept(3, "the embedding cache /c"))
    'kept the 3 sentences encoded so far in the embedding cache /c; rerun the same command to resume (they are not encoded again)'
    """

    def __init__(self, kept: int, where: str, *, read_only: bool = False) -> None:
        self.kept = kept
        self.where = where
        if read_only:
            text = (f"nothing was kept: {where} is read-only, so a rerun encodes again what this "
                    "run encoded")
        else:
            text = (f"kept the {kept} sentences encoded so far in {where}; rerun the same "
                    "command to resume (they are not encoded again)")
        super().__init__(text)
