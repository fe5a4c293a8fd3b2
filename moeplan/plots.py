"""Figures a planner reads at a glance. Each function takes plot data (moeplan.planner.curves) and returns a
matplotlib `Figure`, drawn with the object-oriented API (no pyplot state); callers save it as PNG or SVG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from moeplan.errors import MoeplanError


def _figure(width: float = 7.0, height: float = 4.5, ncols: int = 1):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MoeplanError("plots need matplotlib: pip install 'moeplan[plot]'") from None
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(1, ncols) if ncols > 1 else fig.add_subplot()


def _label_minor_ticks(axis) -> None:
    """Label 2x and 5x between the decades too: a log axis that names only 10^k is hard to read off."""
    from matplotlib.ticker import LogFormatterSciNotation, LogLocator

    axis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
    axis.set_minor_formatter(LogFormatterSciNotation(base=10, labelOnlyBase=False, minor_thresholds=(3, 1)))


def _finish(ax, xlabel: str, ylabel: str, title: str, legend: bool = False) -> None:
    """Log x axis, labels with units, a light grid: what every moeplan figure shares."""
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if legend:
        ax.legend(fontsize=8)


LOSS = "predicted loss (nats/token)"


def frontier_figure(front) -> object:
    """Left: predicted loss against compute along the planned frontier, the law's fitted compute range shaded.
    Right: what to build at each budget: total N, activated N_a (non-embedding) and tokens D against compute."""
    fig, (ax, sizes) = _figure(width=12.0, ncols=2)
    pts = [p for p in front.points if p.feasible]
    c = np.array([p.compute for p in pts])
    loss = np.array([p.loss for p in pts])
    extrapolated = np.array([p.extrapolation > 1 for p in pts])
    ax.plot(c, loss, color="tab:blue", lw=1.5, label=f"planned optimum ({front.law})")
    ax.scatter(c[~extrapolated], loss[~extrapolated], color="tab:blue", zorder=3, label="inside the fitted domain")
    ax.scatter(c[extrapolated], loss[extrapolated], facecolor="white", edgecolor="tab:red", zorder=3,
               label="extrapolated")
    if front.fitted_compute:
        for a in (ax, sizes):
            a.axvspan(*front.fitted_compute, color="tab:green", alpha=0.12, label="fitted compute range (6·N_a·D)")
    _finish(ax, "training compute C (FLOPs)", LOSS, "Compute-optimal MoE frontier", legend=True)
    for values, label, colour in (([p.law_N for p in pts], "total parameters N (non-embedding)", "tab:purple"),
                                  ([p.law_N_a for p in pts], "activated parameters N_a (non-embedding)", "tab:blue"),
                                  ([p.tokens for p in pts], "training tokens D", "tab:orange")):
        sizes.plot(c, values, marker="o", ms=3, lw=1.5, color=colour, label=label)
    sizes.set_yscale("log")
    _finish(sizes, "training compute C (FLOPs)", "count (parameters or tokens)", "What to build: N, N_a and D",
            legend=True)
    return fig


def iso_flop_figure(curves) -> object:
    """Loss against activated parameters at fixed compute, one curve per budget, optima marked."""
    fig, ax = _figure()
    for curve in curves:
        line = ax.plot(curve["n_a"], curve["loss"], lw=1.5, label=f"C = {curve['compute']:.0e} FLOPs")[0]
        ax.scatter([curve["best_n_a"]], [curve["best_loss"]], marker="*", s=120, color=line.get_color(), zorder=3)
    _finish(ax, "activated parameters N_a (non-embedding)", LOSS,
            "Iso-FLOP curves (best buildable configuration per N_a; * = optimum)", legend=True)
    _label_minor_ticks(ax.xaxis)
    return fig


def band_figure(band, plan=None) -> object:
    """The near-optimal band in the (N_a/N in %, G) plane, coloured by loss; the chosen plan marked."""
    fig, ax = _figure()
    sc = ax.scatter(100 * np.asarray(band["ratio"]), band["G"], c=band["loss"], cmap="viridis", s=14)
    fig.colorbar(sc, ax=ax, label=LOSS)
    if plan is not None:
        n = plan.counts
        ratio = n.active.without_embeddings / n.total.without_embeddings
        ax.scatter([100 * ratio], [n.activated_experts], marker="*", s=220, facecolor="tab:red",
                   edgecolor="black", zorder=4, label=f"the plan (loss {plan.law.loss:.4f})")
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    _finish(ax, "activation ratio N_a/N (non-embedding, %)", "activated experts G = top_k + shared",
            f"Near-optimal band: {len(band['loss']):,} configurations within {band['tolerance']:g}",
            legend=plan is not None)
    ax.xaxis.set_major_formatter(PercentFormatter(decimals=None))
    ax.xaxis.set_minor_formatter(PercentFormatter(decimals=None))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


def pareto_figure(front, bytes_per_param: float = 2.0) -> object:
    """Best predicted loss against weight memory (the exact loss-versus-size front, swept over parameter caps)."""
    fig, ax = _figure()
    gb = np.asarray(front["total_params"], dtype=float) * bytes_per_param / 1e9
    ax.plot(gb, front["loss"], marker="o", color="tab:purple")
    _finish(ax, f"weight memory (GB at {bytes_per_param:g} bytes per parameter, all parameters)", LOSS,
            "Best loss under a memory cap")
    _label_minor_ticks(ax.xaxis)
    return fig


FORMATS = ("png", "svg")


def save(fig, path: Path, dpi: int = 120, force: bool = True) -> Path:
    """Save as PNG or SVG (by suffix), atomically: never a half-written image, nor a replaced one without
    `force`. Commands check the path first (moeplan.files.check_output), before any work."""
    from moeplan.files import write_atomic

    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise MoeplanError(f"{path}: plots are written as .png or .svg")
    return write_atomic(path, lambda tmp: fig.savefig(tmp, format=suffix, dpi=dpi), suffix=f".{suffix}",
                        parents=True, force=force)


def with_suffix(path: Path, name: str) -> Path:
    """`plan.png` -> `plan-isoflop.png`: one file per figure of a command."""
    path = Path(path)
    return path.with_name(f"{path.stem}-{name}{path.suffix}")
