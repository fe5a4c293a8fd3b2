"""What the user will decide at the target budget, and how errors in the constants change it.

`plan_at` is the planner's exact optimum (branch and bound over the buildable `Space`) without the Optuna
study. `Decision` holds the plan at the prior and its nearest competitors: a fit picks a competitor p_j
instead of the optimum p* when its estimate of the gap Δ_j = L(p_j) − L(p*) turns negative.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moeplan.errors import MoeplanError
from moeplan.laws import optima
from moeplan.laws.model import Law
from moeplan.planner.request import PlanRequest
from moeplan.planner.solve import bound_is_valid, branch_and_bound, enumerate_space
from moeplan.planner.space import AXES, Space
from moeplan.sweep.design import constants_vector, jacobian
from moeplan.sweep.request import SweepRequest

COMPETITOR_TOLERANCE = 2e-3  # nats: alternatives further from the optimum are rarely chosen by a 0.005-noise fit
COMPETITORS = 32  # the closest ones: enough to cover every direction the plan can move in


def target_request(request: SweepRequest) -> PlanRequest:
    """The plan the user will make after fitting: `moeplan plan --flops TARGET` with the sweep's conventions."""
    return PlanRequest(flops=request.target_flops, seq_len=request.seq_len, vocab_size=request.vocab_size,
                       expert_parallel=request.expert_parallel)


@dataclass(frozen=True)
class PlannedPoint:
    axes: dict[str, int]
    loss: float        # under the law it was planned with
    n: float
    n_a: float
    total: float
    tokens: float
    flops_per_token: float
    g: float
    s: float


def plan_at(plan_request: PlanRequest, law: Law) -> PlannedPoint:
    """The exact optimum of `law` over the buildable space at the target (the planner's branch and bound)."""
    space = Space(plan_request, law)
    space.check()
    # the planner's exact branch and bound; `solve`'s G*/S* seeds only speed it up and cost more than they
    # save when the band is a single point (tolerance 0), and a fit may have no finite G* to seed from
    band = branch_and_bound(space, 0.0) if bound_is_valid(space) else enumerate_space(space, 0.0)
    if len(band) == 0:
        raise MoeplanError(f"no buildable model fits {plan_request.compute:.3g} FLOPs")
    return _planned(space, band.point(0))


def _planned(space: Space, point) -> PlannedPoint:
    ev = space.evaluate(*point)
    axes = {k: int(v) for k, v in space.values(*point).items()}
    g = axes["top_k"] + axes["n_shared_experts"]
    return PlannedPoint(axes, float(ev.loss), float(ev.n), float(ev.n_a), float(ev.total), float(ev.tokens),
                        float(ev.flops_per_token), float(g), axes["n_shared_experts"] / g)


def true_loss(plan_request: PlanRequest, law: Law, axes: dict[str, int]) -> float:
    """Loss under `law` of the architecture `axes` trained on the target compute."""
    ev = Space(plan_request, law).evaluate_values({k: np.asarray(axes[k]) for k in AXES})
    return float(ev.loss)


@dataclass(frozen=True)
class Decision:
    """The plan at the prior, its nearest competitors in the buildable space, and the gradients in θ of
    every decision quantity: the competitors' loss gaps, the plan's loss, G* and S*."""

    point: PlannedPoint
    competitors: list[dict[str, int]]  # their six axes, closest first
    gaps: np.ndarray               # Δ_j = L(p_j) − L(p*) > 0 at the prior, one per competitor
    gap_gradients: np.ndarray      # ∂Δ_j/∂θ = J(p_j) − J(p*), competitors x constants
    loss_gradient: np.ndarray      # ∂L(p*)/∂θ
    g_star_gradient: np.ndarray
    s_star_gradient: np.ndarray


def decision(law: Law, plan_request: PlanRequest, tolerance: float = COMPETITOR_TOLERANCE,
             competitors: int = COMPETITORS) -> Decision:
    """Plan at the prior; every buildable point within `tolerance` of it (the `competitors` closest) is an
    alternative a fit could prefer. Gradients from the sympy Jacobian; G*, S* by central differences."""
    space = Space(plan_request, law)
    space.check()
    band = branch_and_bound(space, tolerance)
    if len(band) < 2:
        raise MoeplanError(f"the plan at {plan_request.compute:.3g} FLOPs has no alternative within {tolerance:g} "
                           "nats: nothing for a sweep to decide")
    take = slice(0, min(len(band), competitors + 1))
    ev = space.evaluate(band.pair[take], band.combo[take], band.j[take], band.i[take])
    axes = space.values(band.pair[take], band.combo[take], band.j[take], band.i[take])
    g = (axes["top_k"] + axes["n_shared_experts"]).astype(np.float64)
    variables = {"N": ev.n.astype(np.float64), "N_a": ev.n_a.astype(np.float64), "D": ev.tokens, "G": g,
                 "S": axes["n_shared_experts"] / g}
    jac = jacobian(law, variables)
    point = _planned(space, band.point(0))
    theta = constants_vector(law)
    others = [{k: int(v[j]) for k, v in axes.items()} for j in range(1, len(ev.loss))]
    return Decision(point, others, ev.loss[1:] - ev.loss[0], jac[1:] - jac[0], jac[0],
                    _gradient(lambda th: optima.optimal_experts(_with(law, th)), theta),
                    _gradient(lambda th: optima.optimal_shared_ratio(_with(law, th)), theta))


def _with(law: Law, theta: np.ndarray) -> Law:
    return law.with_values(dict(zip(law.constant_names, theta, strict=True)), source="perturbed")


def _theta_steps(theta):
    return 1e-4 * np.maximum(np.abs(theta), 1e-6)


def _gradient(fn, theta):
    steps = _theta_steps(theta)
    return np.array([(fn(theta + e * h) - fn(theta - e * h)) / (2 * h) for e, h in zip(np.eye(len(theta)), steps,
                                                                                         strict=True)])
