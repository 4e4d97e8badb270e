"""Speed beside quality in ``embedkit compare``: each entry's sentences/s (from its record's
``speed`` block, :class:`~embedkit.runs.record.SpeedBlock`), marked ``†`` when measured on other
hardware or threads than the rest of the column (another hardware fingerprint), ``cached`` when
every vector came from the cache, ``-`` when the record does not say; and the PNG of quality
against speed (:func:`save_speed_plot`). :mod:`embedkit.reports.compare` draws the column.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from embedkit.aliases import StrPath
from embedkit.errors import ConfigError
from embedkit.io.atomic import atomic_path
from embedkit.reports._format import pyplot
from embedkit.reports.bench import rate_text
from embedkit.runs.compare import Comparison, Entry


def measured_rate(e: Entry) -> float | None:
    """The entry's measured sentences/s (None: cached, not measured, or not recorded)."""
    rate = (e.speed or {}).get("sentences_per_second")
    return float(rate) if isinstance(rate, int | float) and rate > 0 else None


def _digests(cmp: Comparison) -> dict[str, str]:
    """Per entry whose record states one, its hardware fingerprint digest."""
    return {e.label: str(e.speed["hardware"]) for e in cmp.entries
            if isinstance(e.speed, Mapping) and e.speed.get("hardware")}


def reference_hardware(cmp: Comparison) -> str:
    """The column's hardware: the most common fingerprint digest ("" when none is stated)."""
    digests = list(_digests(cmp).values())
    return Counter(digests).most_common(1)[0][0] if digests else ""


def other_hardware(cmp: Comparison) -> set[str]:
    """The entries whose speed was measured on other hardware (or threads) than the
    :func:`reference_hardware`."""
    ref = reference_hardware(cmp)
    return {label for label, d in _digests(cmp).items() if d != ref}


def speed_texts(cmp: Comparison) -> dict[str, str] | None:
    """Per entry, its sentences/s cell: the rate, ``†`` when measured on other hardware,
    ``cached`` when every vector came from the cache, ``-`` when the record does not say;
    None when no entry has a speed block (records older than it, mteb folders): no column."""
    if not any(isinstance(e.speed, Mapping) for e in cmp.entries):
        return None
    other = other_hardware(cmp)
    out = {}
    for e in cmp.entries:
        rate = measured_rate(e)
        status = (e.speed or {}).get("status") if isinstance(e.speed, Mapping) else None
        text = (rate_text(rate) if rate is not None
                else "cached" if status == "cached" else "-")
        out[e.label] = text + ("†" if e.label in other and rate is not None else "")
    return out


def speed_tip(e: Entry) -> str:
    """How an entry's speed was measured (backend, precision, threads, hardware digest)."""
    sp = e.speed
    if not isinstance(sp, Mapping):
        return "the record does not say how fast it encoded"
    return (f"{sp.get('backend')} {sp.get('precision')}, {sp.get('threads') or '?'} threads, "
            f"hardware {sp.get('hardware') or '?'}; {sp.get('encoded', 0)} sentences encoded, "
            f"{sp.get('cache_hits', 0)} from the cache")


def speed_notes(cmp: Comparison) -> list[str]:
    """What the sentences/s column means, and one line per entry marked ``†``."""
    if speed_texts(cmp) is None:
        return []
    ref, other = reference_hardware(cmp), other_hardware(cmp)
    notes = ["sentences/s: how fast each record encoded (cached: every vector came from the "
             "cache, no speed; -: the record does not say)"]
    notes += [f"† {e.label}: measured on other hardware or threads (fingerprint "
              f"{e.speed.get('hardware')}, {e.speed.get('threads') or '?'} threads) than the "
              f"rest of the column ({ref}): its speed is not comparable" for e in cmp.ordered()
              if e.label in other and measured_rate(e) is not None]
    return notes


def save_speed_plot(cmp: Comparison, path: StrPath) -> Path:
    """A PNG of quality against speed: one labelled point per entry with a measured speed, x
    its sentences/s (log scale), y its average score x 100; a triangle marks an entry measured
    on other hardware than the rest (needs matplotlib). No entry with a measured speed (older
    records, mteb folders, cached runs): a :class:`ConfigError`."""
    points = [(e, rate, 100 * cmp.average(e)) for e in cmp.ordered()
              if (rate := measured_rate(e)) is not None and math.isfinite(cmp.average(e))]
    if not points:
        raise ConfigError("no input records a measured encoding speed (records written before "
                          "the speed block, mteb folders and runs whose vectors all came from "
                          "the cache have none): nothing to plot", param="speed_plot")
    plt = pyplot("speed_plot")
    from matplotlib.ticker import FuncFormatter

    other = other_hardware(cmp)
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for e, rate, score in points:
        ax.scatter([rate], [score], marker="^" if e.label in other else "o", s=36)
        ax.annotate(e.label + (" †" if e.label in other else ""), (rate, score), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    rates = [r for _, r, _ in points]
    ax.set_xscale("log")
    ax.set_xlim(min(rates) / 1.6, max(rates) * 4)  # room for the labels on the right
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
    ax.set_xlabel("sentences/s (log scale)")
    ax.set_ylabel(f"average {cmp.metric} x 100 ({cmp.split})")
    ax.set_title("quality against speed"
                 + (" (△ †: other hardware or threads)" if other else ""))
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(out, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    finally:
        plt.close(fig)
    return out
