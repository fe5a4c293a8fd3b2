"""Plot data, computed apart from any rendering: the compute frontier, iso-FLOP curves, band, Pareto front.

Everything comes from the exact branch and bound over the request's buildable space, so each curve is the
discrete optimum (or the set of configurations within a tolerance of it), not a continuous approximation.
"""

from __future__ import annotations

import os

import numpy as np
from pydantic import BaseModel, ConfigDict

from moeplan.errors import MoeplanError
from moeplan.laws.model import Law
from moeplan.planner.plan import load_law
from moeplan.planner.request import PlanRequest
from moeplan.planner.solve import branch_and_bound, solve
from moeplan.planner.space import AXES, Space

_FROZEN = ConfigDict(frozen=True)
# band members the plots draw: the best of the band by loss (a curve's bin appears if any member of it is
# kept, and then with its exact minimum); memory stays bounded whatever the band's size
PLOT_KEEP = 200_000


class FrontierPoint(BaseModel):
    """The planned architecture at one budget (or why there is none)."""

    model_config = _FROZEN

    compute: float
    feasible: bool
    reason: str = ""
    n_layers: int | None = None
    d_hidden: int | None = None
    d_expert: int | None = None
    n_experts: int | None = None
    top_k: int | None = None
    n_shared_experts: int | None = None
    loss: float | None = None
    total_params: int | None = None
    active_params: int | None = None
    law_N: float | None = None
    law_N_a: float | None = None
    tokens: float | None = None
    activation_ratio: float | None = None
    extrapolation: float | None = None  # largest factor by which an input leaves the law's fitted domain


class Frontier(BaseModel):
    model_config = _FROZEN

    law: str
    points: list[FrontierPoint]
    fitted_compute: tuple[float, float] | None  # 6·N_a·D at the corners of the law's fitted domain


def budgets(start: float, stop: float, per_decade: int) -> np.ndarray:
    if not 0 < start <= stop:
        raise MoeplanError(f"--from {start:g} must be positive and at most --to {stop:g}")
    if per_decade < 1:
        raise MoeplanError("--per-decade must be at least 1")
    steps = int(round(np.log10(stop / start) * per_decade))
    return start * 10 ** (np.arange(steps + 1) / per_decade)


def _point(space: Space, compute: float, incumbent: float = np.inf) -> tuple[FrontierPoint, dict | None]:
    """The optimum at one budget, given a known feasible loss `incumbent` (or the seeds' when infinite)."""
    if np.isfinite(incumbent):
        band = branch_and_bound(space, 0.0, incumbent=incumbent, keep=1, max_memory_gb=space.request.max_memory_gb)
    else:
        band = solve(space, 0.0, keep=1, max_memory_gb=space.request.max_memory_gb)[0]
    if len(band) == 0:
        return FrontierPoint(compute=compute, feasible=False,
                             reason=f"no buildable model gets {space.request.priors.min_tokens_per_param:g} "
                                    "tokens per parameter, or the caps exclude all"), None
    values = {a: int(v) for a, v in space.values(*band.point(0)).items()}
    ev = space.evaluate_values({a: [v] for a, v in values.items()})
    out = space.law.extrapolation(**{k: float(np.ravel(v)[0]) for k, v in ev.inputs.items()})
    return FrontierPoint(compute=compute, feasible=True, **values, loss=float(band.loss[0]),
                         total_params=int(ev.total[0]), active_params=int(ev.active[0]), law_N=float(ev.n[0]),
                         law_N_a=float(ev.n_a[0]), tokens=float(ev.tokens[0]),
                         activation_ratio=float(ev.n_a[0] / ev.n[0]),
                         extrapolation=max([e.factor for e in out], default=1.0)), values


def _in_order(request: PlanRequest, law: Law, computes) -> list[FrontierPoint]:
    """Budgets solved in increasing order, each warm-started: the previous optimum, re-costed at the next
    budget, is a feasible configuration there when it satisfies the caps, so its loss is an incumbent that
    bounds the next optimum from above and prunes from the first box (still exact: only pruning changes)."""
    points, previous = [], None
    for c in computes:
        space = at_budget(request, law, c)
        incumbent = np.inf
        if previous is not None:
            ev = space.evaluate_values({a: [v] for a, v in previous.items()})
            if ev.feasible[0]:
                incumbent = float(ev.loss[0])
            # the previous optimum's (top_k, shared) usually stays optimal: its own optimum, a search of one
            # combo in eighty, is a far better incumbent
            combo = np.flatnonzero((space.combos[0] == previous["top_k"])
                                   & (space.combos[1] == previous["n_shared_experts"]))
            near = branch_and_bound(space, 0.0, combos=combo, incumbent=incumbent, keep=1,
                                    max_memory_gb=request.max_memory_gb)
            if len(near):
                incumbent = min(incumbent, float(near.loss[0]))
        point, values = _point(space, float(c), incumbent)
        previous = values or previous
        points.append(point)
    return points


def at_budget(request: PlanRequest, law: Law, compute: float) -> Space:
    """The request's space with its budget replaced by `compute` FLOPs (same priors and caps)."""
    return Space(request.model_copy(update={"flops": float(compute), "gpu_hours": None}), law)


def fitted_compute(law: Law) -> tuple[float, float] | None:
    domain = {v.name: v.domain for v in law.variables}
    if domain.get("N_a") and domain.get("D"):
        return 6 * domain["N_a"][0] * domain["D"][0], 6 * domain["N_a"][1] * domain["D"][1]
    return None


def frontier(request: PlanRequest, computes) -> Frontier:
    """The planned optimum at each budget: same priors and caps, the budget replaced. Budgets are solved in
    increasing order, warm-started from the previous optimum; two runs of consecutive budgets use both cores."""
    law = load_law(request)
    computes = [float(c) for c in computes]
    order = np.argsort(computes, kind="stable")
    ascending = [computes[k] for k in order]
    if len(ascending) >= 8 and (os.cpu_count() or 1) >= 2:
        import multiprocessing

        half = len(ascending) // 2
        context = multiprocessing.get_context("fork")  # the children share the parent's imports
        with context.Pool(2) as pool:
            runs = pool.starmap(_in_order, [(request, law, ascending[:half]), (request, law, ascending[half:])])
        solved = runs[0] + runs[1]
    else:
        solved = _in_order(request, law, ascending)
    points = [None] * len(computes)
    for k, p in zip(order, solved, strict=True):
        points[k] = p
    return Frontier(law=law.name, points=points, fitted_compute=fitted_compute(law))


def iso_flop(request: PlanRequest, computes, tolerance: float = 0.03, bins: int = 36) -> list[dict]:
    """Loss against N_a at fixed compute: the best configuration in each log-N_a bin, within `tolerance`."""
    law = load_law(request)
    curves = []
    for c in computes:
        space = at_budget(request, law, c)
        band = branch_and_bound(space, tolerance, keep=PLOT_KEEP, max_memory_gb=request.max_memory_gb)
        if len(band) == 0:
            continue
        ev = space.evaluate(band.pair, band.combo, band.j, band.i)
        edges = np.geomspace(ev.n_a.min(), ev.n_a.max() * (1 + 1e-9), bins + 1)
        which = np.clip(np.searchsorted(edges, ev.n_a, side="right") - 1, 0, bins - 1)
        best = np.full(bins, np.inf)
        np.minimum.at(best, which, band.loss)
        keep = np.isfinite(best)
        centres = np.sqrt(edges[:-1] * edges[1:])
        curves.append({"compute": float(c), "n_a": centres[keep], "loss": best[keep],
                       "best_n_a": float(ev.n_a[0]), "best_loss": float(band.loss[0])})
    return curves


def band_points(request: PlanRequest) -> dict:
    """The configurations within the request's tolerance (the best PLOT_KEEP of them): N_a/N, G and loss."""
    space = Space(request, load_law(request))
    band = branch_and_bound(space, request.tolerance, keep=PLOT_KEEP, max_memory_gb=request.max_memory_gb)
    if len(band) == 0:
        raise MoeplanError("no buildable configuration for this request")
    ev = space.evaluate(band.pair, band.combo, band.j, band.i)
    g = space.combos[0][band.combo] + space.combos[1][band.combo]
    return {"ratio": ev.n_a / ev.n, "G": g, "loss": band.loss, "tolerance": request.tolerance}


def pareto(request: PlanRequest, caps: int = 12) -> dict:
    """Best loss under a sweep of total-parameter caps: the exact loss-versus-size Pareto front."""
    law = load_law(request)
    space = Space(request, law)
    free = branch_and_bound(space, 0.0)
    if len(free) == 0:
        raise MoeplanError("no buildable configuration for this request")
    top = int(space.evaluate(*[x[:1] for x in (free.pair, free.combo, free.j, free.i)]).total[0])
    totals, losses, archs = [], [], []
    for cap in np.geomspace(top / 100, top, caps):
        capped = request.model_copy(update={"max_params": float(cap)})
        s = Space(capped, law)
        b = branch_and_bound(s, 0.0)
        if len(b):
            values = {a: int(v) for a, v in s.values(*b.point(0)).items()}
            totals.append(int(s.evaluate_values({a: [v] for a, v in values.items()}).total[0]))
            losses.append(float(b.loss[0]))
            archs.append(values)
    return {"total_params": np.array(totals), "loss": np.array(losses), "architectures": archs, "axes": AXES}
