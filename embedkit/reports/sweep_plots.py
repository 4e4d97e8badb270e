"""The plots of ``embedkit sweep`` (:func:`~embedkit.reports.sweep.write_plots` writes
them): per task and pooling, Spearman against k for every (beta, gamma) on the selection and the
report split, the raw score and the chosen setting. matplotlib is imported when a plot is drawn.
"""

from __future__ import annotations

from typing import Any

from embedkit.errors import EmbedkitError
from embedkit.postprocess.spec import _num
from embedkit.reports._format import x100

__all__ = ["BETA_STYLES", "CHOSEN_STYLE", "RAW_STYLE", "sweep_figure"]


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise EmbedkitError("write_plots needs matplotlib: pip install 'embedkit[plot]'") from exc
    return plt


#: line style per beta (in grid order); the raw baseline is drawn apart from all of them
BETA_STYLES: tuple[Any, ...] = ("-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)))
RAW_STYLE: dict[str, Any] = {"color": "#d62728", "linestyle": "-", "linewidth": 2.5, "alpha": 0.6}
CHOSEN_STYLE: dict[str, Any] = {"marker": "*", "markersize": 16, "markerfacecolor": "#ffd700",
                "markeredgecolor": "black", "linestyle": "none", "zorder": 5}


def sweep_figure(record: dict, task: str, pooling: str) -> Any:
    """The figure of one task and pooling: the selection split's curves beside the report
    split's (Spearman x 100 against k, one line per (beta, gamma): colour = gamma, line style =
    beta), the raw score as a thick red line, the setting chosen on the selection split as a
    gold star on both, ``k=all`` labelled ``all (d=D)``. The legends say what colour and line
    style mean. Close it with ``matplotlib.pyplot.close``.
    """
    plt = _pyplot()
    s = record["settings"]
    r = record["results"][task][pooling]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    for ax, role in zip(axes, ("select", "report"), strict=True):
        split = s["select_on"] if role == "select" else s["report_on"]
        what = "selection" if role == "select" else "report"
        _plot_one(ax, plt, r, role)
        ax.set_title(f"{what} split: {split}")
    axes[0].set_ylabel("Spearman x 100")
    fig.suptitle(f"{task}, {pooling}: whitening sweep ({record['model']['name']})")
    _legends(fig, plt, r, s["select_on"], s["report_on"])
    fig.subplots_adjust(left=0.06, right=0.78, top=0.86, wspace=0.05)
    return fig


def _grid(r: dict) -> tuple[list[float], list[float]]:
    betas = sorted({float(x["beta"]) for x in r["settings"]})
    gammas = sorted({float(x["gamma"]) for x in r["settings"]})
    return betas, gammas


def _gamma_color(plt: Any, gammas: list[float], gamma: float) -> Any:
    return plt.get_cmap("viridis")(gammas.index(gamma) / max(1, len(gammas) - 1) * 0.9)


def _plot_one(ax: Any, plt: Any, r: dict, role: str) -> None:
    """One split's lines (``role``: select or report): per (beta, gamma), score against k."""
    lines: dict[tuple, list] = {}
    for x in r["settings"]:
        lines.setdefault((float(x["beta"]), float(x["gamma"])), []).append(
            (x["k_dim"], x[role]))
    betas, gammas = _grid(r)
    for (beta, gamma), pts in lines.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker="o", markersize=3,
                color=_gamma_color(plt, gammas, gamma),
                linestyle=BETA_STYLES[betas.index(beta) % len(BETA_STYLES)],
                label=f"beta={_num(beta)}, gamma={_num(gamma)}")
    ax.axhline(100 * r["raw"][role], label="raw", **RAW_STYLE)
    best = r.get("best")
    if best is not None:
        ax.plot([best["k_dim"]], [100 * best[role]], label="chosen", **CHOSEN_STYLE)
    kd = sorted({x["k_dim"] for x in r["settings"]})
    if len(kd) > 1 and kd[-1] / kd[0] >= 4:
        ax.set_xscale("log", base=2)
    ax.set_xticks(kd)
    ax.set_xticklabels([_k_label(r, k) for k in kd])
    ax.set_xlabel("k (dimensions kept)")
    ax.grid(True, alpha=0.3)


def _k_label(r: dict, k_dim: int) -> str:
    """A tick: ``16``, ``all (d=32)``, or ``32 = all`` when an integer k is also d."""
    ks = {x["k"] for x in r["settings"] if x["k_dim"] == k_dim}
    if "all" not in ks:
        return str(k_dim)
    return f"{k_dim} = all" if len(ks) > 1 else f"all (d={k_dim})"


def _legends(fig: Any, plt: Any, r: dict, select_on: str, report_on: str) -> None:
    """Three figure legends: colour = gamma, line style = beta, and raw / chosen."""
    from matplotlib.lines import Line2D

    betas, gammas = _grid(r)
    colour = [Line2D([], [], color=_gamma_color(plt, gammas, g), linewidth=2,
                     label=f"gamma={_num(g)}") for g in gammas]
    style = [Line2D([], [], color="black", linestyle=BETA_STYLES[i % len(BETA_STYLES)],
                    label=f"beta={_num(b)}") for i, b in enumerate(betas)]
    other = [Line2D([], [], label=f"raw (no postprocessing)\n{x100(r['raw']['select'])} "
                    f"{select_on}, {x100(r['raw']['report'])} {report_on}", **RAW_STYLE)]
    best = r.get("best")
    if best is not None:
        other.append(Line2D([], [], label=f"chosen on {select_on}\nbeta={_num(best['beta'])}, "
                            f"gamma={_num(best['gamma'])}, k={best['k']}", **CHOSEN_STYLE))
    top = 0.88
    for title, handles, rows in (("colour = gamma", colour, len(colour)),
                                 ("line style = beta", style, len(style)),
                                 ("baseline and choice", other, 2 * len(other))):
        fig.legend(handles=handles, title=title, loc="upper left", fontsize=8,
                   title_fontsize=9, bbox_to_anchor=(0.785, top), frameon=False,
                   alignment="left")
        top -= 0.07 + 0.037 * rows
