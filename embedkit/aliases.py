"""Type aliases the whole package shares (a base module: every layer may import it).

>>> StrPath, JSONDict
(str | os.PathLike[str], dict[str, typing.Any])
"""

from __future__ import annotations

import os
from typing import Any, TypeAlias

__all__ = ["JSONDict", "StrPath"]

#: a file or folder argument: a ``str`` or anything ``os.fspath`` turns into one
StrPath: TypeAlias = str | os.PathLike[str]
#: a JSON object as records and manifests hold it
JSONDict: TypeAlias = dict[str, Any]
