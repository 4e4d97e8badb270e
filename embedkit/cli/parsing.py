"""Turning the command line's comma lists into typed values (the library takes lists)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from embedkit.encoders.models import ALIASES
from embedkit.errors import ConfigError

if TYPE_CHECKING:  # torch: imported where poolings are parsed, not to parse arguments
    from embedkit.encoders import Pooling


def split_list(text: str | None, sep: str = ",") -> list[str]:
    """Non-empty, stripped items of a separated list.

    >>> split_list(" valid, test ,,"), split_list(None)
    (['valid', 'test'], [])
    """
    return [t.strip() for t in (text or "").split(sep) if t.strip()]


def split_poolings(arg: str | Sequence[str] | None) -> list[Pooling]:
    """Parse ``--pooling`` values: comma-separated and/or repeated; ``layers-avg:1,-1`` keeps its
    comma-separated layer indices.

    >>> split_poolings(["cls,layers-avg:1,-1", "mean"])
    ['cls', 'layers-avg:1,-1', 'last-avg']
    """
    from embedkit.encoders import Pooling

    if arg is None:
        return []
    items = [arg] if isinstance(arg, str) else list(arg)
    out: list[str] = []
    for item in items:
        for tok in split_list(item):
            if out and ":" in out[-1] and tok.lstrip("-").isdigit():
                out[-1] += "," + tok
            else:
                out.append(tok)
    return list(dict.fromkeys(Pooling(p) for p in out))


_MODEL_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def _names_a_model(name: str) -> bool:
    """An alias, an existing folder, or a hub id's shape (``name`` or ``org/name``)."""
    return (name in ALIASES or Path(name).expanduser().is_dir()
            or bool(_MODEL_NAME.fullmatch(name)))


def split_models(arg: str | Sequence[str] | None, default: str = "m3e-small") -> list[str]:
    """Parse ``--model`` values: repeated and/or comma-separated, each model once, in order. A
    value is split on ``,`` only when it is not itself an existing path and every part is an
    alias, an existing folder or a hub id (``org/name``), so a local path holding a comma stays
    whole.

    >>> split_models(["m3e-small,moka-ai/m3e-base", "bert-base-chinese", "m3e-small"])
    ['m3e-small', 'moka-ai/m3e-base', 'bert-base-chinese']
    >>> split_models(None), split_models("/no/such,dir")
    (['m3e-small'], ['/no/such,dir'])
    """
    items = [arg] if isinstance(arg, str) else list(arg or ())
    out: list[str] = []
    for item in items:
        parts = split_list(item)
        whole = "," not in item or Path(item).expanduser().exists()
        out += [item.strip()] if whole or not all(map(_names_a_model, parts)) else parts
    return list(dict.fromkeys(m for m in out if m)) or [default]


# FAISS factory components that need a following component (a coarse quantizer or a transform)
_FACTORY_PREFIX = re.compile(r"^(IVF|IMI|OPQ|PCA|PCAR|PCAW|PCAWR|RR|ITQ|L2norm|IDMap|IDMap2|Pad)",
                             re.IGNORECASE)
# components that complete an HNSW graph's storage (HNSW32,PQ16 / HNSW32,SQ8)
_HNSW_STORAGE = re.compile(r"^(PQ|SQ|RaBitQ)", re.IGNORECASE)


def _group_factory_tokens(tokens: list[str]) -> list[str]:
    """Group a comma list's components into factories (see :func:`split_factories`)."""
    out: list[str] = []
    current: list[str] = []
    for tok in tokens:
        last = current[-1] if current else ""
        joins = bool(current) and (bool(_FACTORY_PREFIX.match(last)) or (
            last.upper().startswith("HNSW") and len(current) == 1
            and bool(_HNSW_STORAGE.match(tok))))
        if joins:
            current.append(tok)
        else:
            if current:
                out.append(",".join(current))
            current = [tok]
    if current:
        out.append(",".join(current))
    return out


def split_factories(arg: str | Sequence[str] | None) -> list[str]:
    """FAISS factory strings from ``--factories`` / repeated ``--factory`` values.

    ``;`` separates factories unambiguously. Without it a comma list is grouped: a prefix
    component (IVF..., OPQ..., PCA...) takes the next component with it, HNSWn takes a PQ / SQ
    storage that follows; everything else starts a new factory. Repeats are dropped.

    >>> split_factories("Flat,IVF1024,Flat,HNSW32,IVF1024,PQ32")
    ['Flat', 'IVF1024,Flat', 'HNSW32', 'IVF1024,PQ32']
    >>> split_factories(["HNSW32,SQ8;Flat", "IVF16,PQ8"])
    ['HNSW32,SQ8', 'Flat', 'IVF16,PQ8']
    """
    if arg is None:
        return []
    out: list[str] = []
    for item in [arg] if isinstance(arg, str) else list(arg):
        if ";" in item:
            out += split_list(item, ";")
        else:
            out += _group_factory_tokens(split_list(item))
    return list(dict.fromkeys(out))


def parse_int_list(arg: str | Sequence[int] | None, name: str) -> list[int]:
    """``"1,8,32"`` -> [1, 8, 32]; each value must be a positive integer (``name``, the
    option, is named in errors).

    >>> parse_int_list("1, 8,32", "--nprobe")
    [1, 8, 32]
    """
    if arg is None:
        return []
    parts = arg.split(",") if isinstance(arg, str) else list(arg)
    out = []
    for p in parts:
        if isinstance(p, str) and not p.strip():
            continue
        try:
            v = int(str(p).strip())
        except ValueError:
            raise ConfigError(f"{name}: {p!r} is not an integer") from None
        if v < 1:
            raise ConfigError(f"{name}: values must be >= 1, got {v}")
        out.append(v)
    return out


def parse_grid(text: str | Sequence, what: str) -> list:
    """``--beta``/``--gamma`` "0,0.5,1" -> floats; ``--k`` "64,all" -> positive ints or "all".
    Repeats are dropped; ``what`` (beta, gamma or k) names the option in errors.

    >>> parse_grid("0, 0.5,1", "beta"), parse_grid("64,all", "k")
    ([0.0, 0.5, 1.0], [64, 'all'])
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list = []
    for raw in items:
        tok = str(raw).strip()
        if not tok:
            continue
        try:
            if what == "k":
                value: float | int | str = "all" if tok.lower() == "all" else int(tok)
                if value != "all" and int(value) < 1:
                    raise ValueError
            else:
                value = float(tok)
                if not math.isfinite(value):
                    raise ValueError
        except ValueError:
            expected = "positive integers or 'all'" if what == "k" else "numbers"
            raise ConfigError(f"--{what} {text!r}: {tok!r} is not valid; expected "
                              f"comma-separated {expected}") from None
        if value not in out:
            out.append(value)
    if not out:
        raise ConfigError(f"--{what}: empty grid")
    return out


def parse_k(text: str) -> int | str:
    """``--k`` of one map: a positive integer or "all".

    >>> parse_k("128"), parse_k("ALL")
    (128, 'all')
    """
    tok = str(text).strip()
    if tok.lower() == "all":
        return "all"
    try:
        value = int(tok)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"--k {text!r}: expected a positive integer or 'all'")
    return value
