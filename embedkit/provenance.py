"""What a result needs to be reproduced: library versions, file checksums, the machine.

>>> v = library_versions()
>>> sorted(k for k in v if k in ("embedkit", "numpy", "python"))
['embedkit', 'numpy', 'python']
"""

from __future__ import annotations

import hashlib
import os
import platform
from importlib import metadata

_LIBRARIES = (
    "numpy",
    "scipy",
    "scikit-learn",
    "torch",
    "transformers",
    "tokenizers",
    "safetensors",
    "faiss-cpu",
    "datasets",
    "sentence-transformers",
)


def library_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Versions of embedkit, Python and the installed libraries it uses (missing ones left out)."""
    from embedkit import __version__

    out = {"embedkit": __version__, "python": platform.python_version()}
    for name in (*_LIBRARIES, *extra):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def machine_description() -> dict[str, str | int]:
    """A short description of the machine: processor, core count, OS."""
    cpu = platform.processor() or platform.machine()
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    native_bf16 = sorted(flags & {"avx512_bf16", "amx_bf16"})
    return {"cpu": cpu, "cores": os.cpu_count() or 0,
            "os": f"{platform.system()} {platform.release()}",
            "cpu_bf16": ", ".join(native_bf16) if native_bf16 else "none (emulated)"}


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    """Hex sha256 of a string's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
