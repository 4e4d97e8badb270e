"""Figures of the diagnostics (matplotlib, the optional ``plot`` extra), drawn from
:func:`~embedkit.diagnostics.profile.profile` dicts, one line per labelled embedding set:

- :func:`plot_spectra`: the covariance eigenvalues as shares of the total variance, log scale;
- :func:`plot_occurrence`: the N_k histogram (how many points occur N_k times in the k-NN lists);
- :func:`plot_jl`: the measured JL distortion against the target dimension, with the practical
  estimate ``8.33 ln N`` and the JL lemma's bound drawn.

Each writes one PNG atomically and returns its path.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from embedkit.aliases import StrPath
from embedkit.errors import EmbedkitError
from embedkit.io.atomic import atomic_path

__all__ = ["plot_cosine_histograms", "plot_jl", "plot_occurrence", "plot_spectra",
           "require_matplotlib"]


def require_matplotlib() -> Any:
    """``matplotlib.pyplot`` on the Agg backend, or an error saying how to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise EmbedkitError("the diagnostics plots need matplotlib: "
                            "pip install 'embedkit[plot]'", param="plots") from exc
    return plt


@contextmanager
def _figure(path: StrPath, title: str) -> Iterator[Any]:
    plt = require_matplotlib()
    fig, ax = plt.subplots(figsize=(8, 5))
    try:
        yield ax
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        fig.tight_layout()
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(fig)


def _plain_ticks(ax: Any) -> None:
    """x tick labels as plain numbers (64, not 2^6)."""
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def plot_spectra(path: StrPath, title: str,
                 profiles: Mapping[str, dict[str, Any]]) -> Path:
    """Eigenvalue ``i`` over the total variance against ``i`` (1-based), log y, one line per
    profile; a flat line is an isotropic spectrum."""
    with _figure(path, title) as ax:
        for label, p in profiles.items():
            eig = np.asarray(p["spectrum"]["eigenvalues"], dtype=np.float64)
            share = eig / eig.sum()
            keep = share > 0
            ax.plot(np.arange(1, eig.size + 1)[keep], share[keep], label=label, linewidth=1.2)
        ax.set_yscale("log")
        ax.set_xlabel("component i (eigenvalues of the covariance, descending)")
        ax.set_ylabel("lambda_i / sum lambda (log scale)")
    return Path(path)


def plot_occurrence(path: StrPath, title: str,
                    profiles: Mapping[str, dict[str, Any]]) -> Path:
    """The N_k histogram of each profile (points against their k-occurrence, log y); the
    mean k is a dotted line. A long right tail is hubness, a tall bar at 0 antihubs."""
    k = None
    with _figure(path, title) as ax:
        for label, p in profiles.items():
            hist = np.asarray(p["hubness"]["nk_histogram"], dtype=np.float64)
            k = p["hubness"]["k"]
            nz = hist > 0
            ax.plot(np.arange(hist.size)[nz], hist[nz], drawstyle="steps-mid", linewidth=1.2,
                    label=f"{label} (skew {p['hubness']['skewness']:.1f})")
        if k is not None:
            ax.axvline(k, color="grey", linestyle=":", linewidth=1, label=f"mean N_k = k = {k}")
        ax.set_yscale("log")
        ax.set_xscale("symlog", linthresh=max(1, k or 1))
        _plain_ticks(ax)
        ax.set_xlabel(f"N_k: occurrences in the other points' {k} nearest neighbours (cosine)")
        ax.set_ylabel("number of points (log scale)")
    return Path(path)


def plot_jl(path: StrPath, title: str, profiles: Mapping[str, dict[str, Any]]) -> Path:
    """The 99th percentile of ``|d'^2/d^2 - 1|`` under a Gaussian random projection against the
    target dimension (log x), one line per profile; vertical lines: the practical estimate
    ``8.33 ln N`` and the JL bound at each eps; horizontal dotted lines: those eps."""
    first: dict[str, Any] | None = None
    with _figure(path, title) as ax:
        for label, p in profiles.items():
            jl = p["jl"]
            first = first or jl
            pts = [(q["dim"], q["distance_p99"]) for q in jl["projections"]
                   if q["distance_p99"] is not None]
            ax.plot([d for d, _ in pts], [v for _, v in pts], marker="o", markersize=3,
                    linewidth=1.2, label=f"{label} (d={p['dim']})")
        if first is not None:
            n = first["n_vectors"]
            ax.axvline(first["practical_min_dim"], color="black", linewidth=1.2,
                       label=f"8.33 ln N = {first['practical_min_dim']} (N = {n})")
            styles = ["--", "-.", ":"]
            for i, b in enumerate(first["jl_min_dim"]):
                ax.axvline(b["min_dim"], color="tab:red", linestyle=styles[i % 3], linewidth=1,
                           label=f"JL bound, eps={b['eps']:g}: {b['min_dim']}")
                ax.axhline(b["eps"], color="tab:red", linestyle=styles[i % 3], linewidth=0.6,
                           alpha=0.5)
        ax.set_xscale("log", base=2)
        _plain_ticks(ax)
        ax.set_xlabel("target dimension m of the random projection (log scale)")
        ax.set_ylabel("99th percentile of |d'^2 / d^2 - 1| over random pairs")
    return Path(path)


def plot_cosine_histograms(path: StrPath, title: str,
                           panels: Mapping[str, tuple[Any, Any, float | None]]) -> Path:
    """One panel per row (raw, each postprocessor): the histogram of the pairs' cosine by
    label (0 and 1), with the row's calibrated threshold as a vertical line when given.
    ``panels`` maps a row label to ``(cosines, labels, threshold)``; whitening's change of the
    score scale shows as the two histograms moving apart and the threshold moving."""
    plt = require_matplotlib()
    n = max(1, len(panels))
    fig, axes = plt.subplots(n, 1, figsize=(8, 2.4 * n), squeeze=False)
    try:
        for ax, (label, (cos, labels, thr)) in zip(axes[:, 0], panels.items(), strict=False):
            c, y = np.asarray(cos, dtype=np.float64), np.asarray(labels, dtype=np.float64)
            bins = np.linspace(float(c.min()), float(c.max()) + 1e-9, 50)
            for value, colour in ((0, "tab:red"), (1, "tab:blue")):
                ax.hist(c[y == value], bins=bins, alpha=0.5, color=colour,
                        label=f"label {value} ({int(np.sum(y == value))})")
            if thr is not None:
                ax.axvline(thr, color="black", linewidth=1, label=f"threshold {thr:.3f}")
            ax.set_title(label, fontsize=9)
            ax.legend(fontsize=7)
        axes[-1, 0].set_xlabel("cosine similarity of the pair")
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=90)
    finally:
        plt.close(fig)
    return Path(path)
