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

from embedkit.aliases import StrPath

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


def _cpuinfo() -> tuple[str | None, set[str]]:
    """The first processor's model name and flags in /proc/cpuinfo (None and none elsewhere)."""
    cpu, flags = None, set()
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
    return cpu, flags


def native_bf16_flags() -> list[str]:
    """The CPU's bfloat16 instructions (``avx512_bf16``, ``amx_bf16``), read at run time; empty
    where bfloat16 is only emulated (slow, and what torch's CPU kernels then compute is not
    what the model was measured with)."""
    return sorted(_cpuinfo()[1] & {"avx512_bf16", "amx_bf16"})


def machine_description() -> dict[str, str | int]:
    """A short description of the machine: processor, core count, OS."""
    cpu = _cpuinfo()[0] or platform.processor() or platform.machine()
    native_bf16 = native_bf16_flags()
    return {"cpu": cpu, "cores": os.cpu_count() or 0,
            "os": f"{platform.system()} {platform.release()}",
            "cpu_bf16": ", ".join(native_bf16) if native_bf16 else "none (emulated)"}


def sha256_file(path: StrPath, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    """Hex sha256 of a string's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
