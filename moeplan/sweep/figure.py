"""The comparison figure: where each design spends its runs, and the true regret of the plans it leads to."""

from __future__ import annotations

import numpy as np

from moeplan.errors import MoeplanError

COLOURS = ("tab:blue", "tab:orange", "tab:green")
REGRET_FLOOR = 1e-7  # an exact plan (regret 0) is drawn here on the log axis


def comparison_figure(designed, sim=None) -> object:
    """Left: active size against compute of every run of the designed sweep and the references.
    Right (with a simulation): each repetition's true regret of the plan at the target, per design."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MoeplanError("plots need matplotlib: pip install 'moeplan[plot]'") from None
    fig = Figure(figsize=(11.0 if sim else 6.5, 4.5), layout="constrained")
    axes = fig.subplots(1, 2) if sim else [fig.add_subplot()]
    runs = {f"designed ({designed.request.criterion})": designed.chosen, **designed.references}
    ax = axes[0]
    for (name, r), colour, marker in zip(runs.items(), COLOURS, "o^s", strict=True):
        v = r.variables()
        ax.scatter(r.compute, v["N_a"], s=14 + 2 * v["G"], color=colour, marker=marker, alpha=0.7,
                   label=f"{name}: {len(r)} runs, {r.compute.sum():.2g} FLOPs")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training compute of the run (FLOPs)")
    ax.set_ylabel("activated parameters N_a (non-embedding)")
    ax.set_title("Runs of each design (marker size: G)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    if sim:
        ax = axes[1]
        rng = np.random.default_rng(0)
        for k, (d, colour) in enumerate(zip(sim.designs, COLOURS, strict=True)):
            regret = np.maximum(np.asarray(d.regrets, dtype=float), REGRET_FLOOR)
            ax.scatter(k + rng.uniform(-0.15, 0.15, len(regret)), regret, color=colour, s=12, alpha=0.7)
            if d.regret is not None:
                ax.hlines(max(d.regret.median, REGRET_FLOOR), k - 0.3, k + 0.3, color="black", lw=2)
        ax.set_yscale("log")
        ax.set_xticks(range(len(sim.designs)), [d.design for d in sim.designs], fontsize=8)
        ax.set_ylabel(f"true regret of the plan (nats; {REGRET_FLOOR:g} = exact optimum)")
        ax.set_title(f"{sim.repetitions} simulated sweeps, noise {sim.noise:g} (bar: median)")
        ax.grid(True, axis="y", which="both", alpha=0.3)
    return fig
