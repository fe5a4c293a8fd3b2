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
    """Predicted loss against compute along the planned frontier; the law's fitted compute range shaded."""
    fig, ax = _figure()
    pts = [p for p in front.points if p.feasible]
    c = np.array([p.compute for p in pts])
    loss = np.array([p.loss for p in pts])
    extrapolated = np.array([p.extrapolation > 1 for p in pts])
    ax.plot(c, loss, color="tab:blue", lw=1.5, label=f"planned optimum ({front.law})")
    ax.scatter(c[~extrapolated], loss[~extrapolated], color="tab:blue", zorder=3, label="inside the fitted domain")
    ax.scatter(c[extrapolated], loss[extrapolated], facecolor="white", edgecolor="tab:red", zorder=3,
               label="extrapolated")
    if front.fitted_compute:
        ax.axvspan(*front.fitted_compute, color="tab:green", alpha=0.12, label="fitted compute range (6·N_a·D)")
    _finish(ax, "training compute C (FLOPs)", LOSS, "Compute-optimal MoE frontier", legend=True)
    return fig


def iso_flop_figure(curves) -> object:
    """Loss against activated parameters at fixed compute, one curve per budget, optima marked."""
    fig, ax = _figure()
    for curve in curves:
        line = ax.plot(curve["n_a"], curve["loss"], lw=1.5, label=f"C = {curve['compute']:.0e} FLOPs")[0]
        ax.scatter([curve["best_n_a"]], [curve["best_loss"]], marker="*", s=120, color=line.get_color(), zorder=3)
    _finish(ax, "activated parameters N_a (non-embedding)", LOSS,
            "Iso-FLOP curves (best buildable configuration per N_a; * = optimum)", legend=True)
    return fig


def band_figure(band) -> object:
    """The near-optimal band in the (N_a/N, G) plane, coloured by loss."""
    fig, ax = _figure()
    sc = ax.scatter(band["ratio"], band["G"], c=band["loss"], cmap="viridis", s=14)
    fig.colorbar(sc, ax=ax, label=LOSS)
    from matplotlib.ticker import MaxNLocator

    _finish(ax, "activation ratio N_a/N", "activated experts G = top_k + shared",
            f"Near-optimal band: {len(band['loss'])} configurations within {band['tolerance']:g}")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


def pareto_figure(front) -> object:
    """Best predicted loss against total parameters (the exact Pareto front, swept over caps)."""
    fig, ax = _figure()
    ax.plot(front["total_params"], front["loss"], marker="o", color="tab:purple")
    _finish(ax, "total parameters (all)", LOSS, "Pareto front: loss against total parameters")
    return fig


def save(fig, path: Path) -> Path:
    """Save as PNG or SVG (by suffix), atomically: never a half-written image."""
    from moeplan.files import write_atomic

    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in ("png", "svg"):
        raise MoeplanError(f"{path}: plots are written as .png or .svg")
    return write_atomic(path, lambda tmp: fig.savefig(tmp, format=suffix, dpi=120), suffix=f".{suffix}",
                        parents=True)


def with_suffix(path: Path, name: str) -> Path:
    """`plan.png` -> `plan-isoflop.png`: one file per figure of a command."""
    path = Path(path)
    return path.with_name(f"{path.stem}-{name}{path.suffix}")
