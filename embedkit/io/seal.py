"""Seals of JSON files whose values say how vectors were made: each value's sha256 kept beside
it (:data:`CHECKSUMS_KEY`), so a hand edit is refused naming the key (``index.json``, an encode
folder's ``manifest.json``, a FAISS transform's ``PATH.json``)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from embedkit.errors import ConfigError
from embedkit.provenance import sha256_text

#: the key of a sealed file that holds the checksums of its other values
CHECKSUMS_KEY = "values_sha256"


def _canonical_sha256(value: Any) -> str:
    return sha256_text(json.dumps(value, ensure_ascii=False, sort_keys=True,
                                  separators=(",", ":")))


def value_checksums(meta: Mapping[str, Any]) -> dict[str, str]:
    """The sha256 of the canonical JSON of each value of a sealed file (each key of a ``recipe``
    apart, as ``recipe.KEY``), the checksums key itself left out.

    >>> sorted(value_checksums({"ntotal": 3, "recipe": {"pooling": "cls"}}))
    ['ntotal', 'recipe.pooling']
    """
    out: dict[str, str] = {}
    for key, value in meta.items():
        if key == CHECKSUMS_KEY:
            continue
        if key == "recipe" and isinstance(value, dict):
            out.update({f"recipe.{k}": _canonical_sha256(v) for k, v in value.items()})
        else:
            out[key] = _canonical_sha256(value)
    return out


def seal_values(meta: Mapping[str, Any]) -> dict[str, Any]:
    """``meta`` as JSON reads it back, with :data:`CHECKSUMS_KEY` holding the checksums of its
    values (:func:`value_checksums`): what :func:`check_values` later compares against. The seal
    of ``index.json``, of an encode folder's ``manifest.json`` and of a FAISS transform's
    ``PATH.json``.

    >>> sealed = seal_values({"dim": 4, "recipe": {"pooling": "cls"}})
    >>> sorted(sealed[CHECKSUMS_KEY])
    ['dim', 'recipe.pooling']
    """
    out = {k: v for k, v in meta.items() if k != CHECKSUMS_KEY}
    out = dict(json.loads(json.dumps(out, ensure_ascii=False)))  # the values as read back
    out[CHECKSUMS_KEY] = value_checksums(out)
    return out


def check_values(path: Path, meta: dict[str, Any], *, saved: str, redo: str) -> None:
    """``meta`` (read from ``path``) holds the values it was sealed with (:func:`seal_values`),
    else :class:`ConfigError` naming the keys changed, removed or added; ``saved`` says when it
    was sealed and ``redo`` how to make it again. Unsealed (older) files only warn."""
    stored = meta.get(CHECKSUMS_KEY)
    if stored is None:
        warnings.warn(f"{path}: saved by an older embedkit, without checksums of its values: "
                      f"a hand edit of its recipe cannot be detected; {redo} to add them",
                      UserWarning, stacklevel=4)
        return
    if not isinstance(stored, dict):
        raise ConfigError(f"{path}: key {CHECKSUMS_KEY!r} must be a JSON object; put the file "
                          f"back as it was or {redo}")
    now = value_checksums(meta)
    changed = sorted(k for k in stored.keys() & now.keys() if stored[k] != now[k])
    parts = [f"{what} {', '.join(keys)}" for what, keys in (
        ("changed", changed), ("removed", sorted(stored.keys() - now.keys())),
        ("added", sorted(now.keys() - stored.keys()))) if keys]
    if parts:
        raise ConfigError(
            f"{path}: edited since {saved} ({'; '.join(parts)}): its values say how the "
            "vectors were made and how queries are encoded, so they cannot change "
            f"afterwards; put the file back as it was or {redo} with the new settings")
