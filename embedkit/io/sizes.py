"""Sizes as people write them: ``300MB``, ``2GB``, ``512MiB`` (imports nothing heavy: the
command line parses memory budgets with it).

>>> parse_size("300MB"), parse_size("2GB"), parse_size("1.5GiB"), parse_size("4096")
(300000000, 2000000000, 1610612736, 4096)
"""

from __future__ import annotations

import re

from embedkit.errors import ConfigError

__all__ = ["parse_size"]

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(value: str | int, param: str | None = None) -> int:
    """Bytes of ``value`` (decimal kB/MB/GB/TB, binary KiB/MiB/GiB/TiB, or a plain number);
    :class:`ConfigError` (naming ``param``) for anything else or a size that is not
    positive."""
    if isinstance(value, int):
        n = float(value)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([A-Za-z]*)\s*", str(value))
        unit = m.group(2).upper() if m else ""
        if m is None or unit not in _UNITS:
            raise ConfigError(f"cannot read {value!r} as a size; write it like 300MB, 2GB or "
                              "512MiB", param=param)
        n = float(m.group(1)) * _UNITS[unit]
    if n <= 0:
        raise ConfigError(f"a size must be positive, got {value!r}", param=param)
    return int(round(n))
