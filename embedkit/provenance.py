"""What a result needs to be reproduced: library versions, file checksums, the machine.

>>> v = library_versions()
>>> sorted(k for k in v if k in ("embedkit", "numpy", "python"))
['embedkit', 'numpy', 'python']
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from importlib import metadata
from typing import Any

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


CPUINFO = "/proc/cpuinfo"  # where the processor is described (tests point it elsewhere)


def _cpuinfo() -> tuple[str | None, set[str]]:
    """The first processor's model name and flags in /proc/cpuinfo (None and none elsewhere)."""
    cpu, flags = None, set()
    try:
        with open(CPUINFO, encoding="utf-8") as fh:
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


#: the CPU flags that change how fast an encoder runs (wide vectors, int8 dot products,
#: bfloat16 and matrix units), in the order a report names them
SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16",
               "amx_int8")


def available_cores() -> int:
    """The cores this process may run on (``os.sched_getaffinity``; the CPU count elsewhere):
    the default thread count of every backend."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _gpu_name(device: str | None) -> str | None:
    """The GPU an encoder ran on: its name when ``device`` is cuda and torch is already
    imported (this never imports torch), else None."""
    torch = sys.modules.get("torch")
    if torch is None or not str(device or "").startswith("cuda"):
        return None
    try:
        return str(torch.cuda.get_device_name(str(device)))
    except Exception:  # noqa: BLE001 - a name is provenance, never worth failing a run
        return "cuda (name unknown)"


def hardware_fingerprint(threads: int | None = None, device: str | None = None
                         ) -> dict[str, Any]:
    """What the speed of an encoding depends on: the CPU model, its :data:`SPEED_FLAGS`
    present, the cores this process may use, the ``threads`` the encoder ran with, the GPU's
    name when ``device`` was cuda; and ``fingerprint``, a 12-digit digest of them, equal for two
    records measured on the same hardware with the same threads.

    >>> fp = hardware_fingerprint(threads=2)
    >>> fp["threads"], len(fp["fingerprint"]), fp == hardware_fingerprint(threads=2)
    (2, 12, True)
    >>> fp["fingerprint"] != hardware_fingerprint(threads=3)["fingerprint"]
    True
    """
    cpu, flags = _cpuinfo()
    out: dict[str, Any] = {
        "cpu": cpu or platform.processor() or platform.machine(),
        "cpu_flags": [f for f in SPEED_FLAGS if f in flags],
        "cores_available": available_cores(), "threads": threads, "gpu": _gpu_name(device)}
    text = json.dumps(out, sort_keys=True, ensure_ascii=False)
    return {**out, "fingerprint": hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]}


def machine_description(threads: int | None = None, device: str | None = None
                        ) -> dict[str, Any]:
    """A short description of the machine: processor, core count, OS, bfloat16 instructions,
    then its :func:`hardware_fingerprint` for an encoder run with ``threads`` on ``device``."""
    native_bf16 = native_bf16_flags()
    return {"cpu": _cpuinfo()[0] or platform.processor() or platform.machine(),
            "cores": os.cpu_count() or 0,
            "os": f"{platform.system()} {platform.release()}",
            "cpu_bf16": ", ".join(native_bf16) if native_bf16 else "none (emulated)",
            **hardware_fingerprint(threads, device)}


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
