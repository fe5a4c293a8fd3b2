"""What the user will decide at the target budget, and how errors in the constants move it.

`plan_at` is the planner's exact optimum (`solve` over the buildable `Space`) without the Optuna study.
`Decision` linearises that plan: its free coordinates u = (log N_a, G, S) at fixed compute, the loss
curvature H in u and the cross-derivatives L_uθ, all by central differences of the generated law code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from moeplan.errors import MoeplanError
from moeplan.laws import optima
from moeplan.laws.model import Law
from moeplan.planner.request import PlanRequest
from moeplan.planner.solve import bound_is_valid, branch_and_bound, enumerate_space
from moeplan.planner.space import AXES, Space
from moeplan.sweep.design import constants_vector, jacobian, loss
from moeplan.sweep.request import SweepRequest


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
    point = band.point(0)
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
    """The plan's decision quantities at the prior and their sensitivities to the constants."""

    point: PlannedPoint
    u: np.ndarray              # continuous optimum (log N_a, G, S)
    curvature: np.ndarray      # H = ∂²L/∂u²
    cross: np.ndarray          # L_uθ, 3 x constants
    loss_gradient: np.ndarray  # ∂L(plan)/∂θ at the planned architecture
    g_star_gradient: np.ndarray
    s_star_gradient: np.ndarray

    @property
    def regret_weight(self) -> np.ndarray:
        """W = L_θu H⁻¹ L_uθ: ½ tr(W Σ) is the expected regret of a plan from constants with covariance Σ."""
        return self.cross.T @ np.linalg.solve(self.curvature, self.cross)


def _surrogate(point: PlannedPoint, compute: float, floor: float):
    """L(u; θ) with tokens = C / (κ N_a) and total parameters at the floor (N = D / floor − embeddings)."""
    kappa = point.flops_per_token / point.n_a
    embeddings = point.total - point.n

    def variables(u):
        u = np.atleast_2d(u)
        n_a = np.exp(u[:, 0])
        d = compute / (kappa * n_a)
        return {"N": np.maximum(d / floor - embeddings, n_a), "N_a": n_a, "D": d, "G": u[:, 1], "S": u[:, 2]}

    return variables


def decision(law: Law, plan_request: PlanRequest) -> Decision:
    """Plan at the prior, then linearise the plan's continuous coordinates in the constants."""
    point = plan_at(plan_request, law)
    theta = constants_vector(law)
    variables = _surrogate(point, plan_request.compute, plan_request.priors.min_tokens_per_param)

    def f(u, th=theta):
        return float(loss(law, variables(u), th)[0])

    start = np.array([np.log(point.n_a), point.g, point.s])
    g_star, s_star = optima.optimal_experts(law), optima.optimal_shared_ratio(law)
    start[1:] = [g_star, s_star] if np.isfinite(g_star) and np.isfinite(s_star) else start[1:]
    u = minimize(f, start, method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-14, "maxiter": 4000}).x
    steps = np.array([1e-3, 1e-3 * max(1.0, abs(u[1])), 1e-3])
    curvature = _hessian(f, u, steps)
    eigen, vectors = np.linalg.eigh(curvature)
    curvature = vectors @ np.diag(np.maximum(eigen, 1e-9 * eigen.max())) @ vectors.T  # a boundary optimum

    # L_uθ: central differences in u of the analytic Jacobian ∂L/∂θ (sympy's), one difference deep
    cross = np.array([(jacobian(law, variables(u + e * h), theta)[0] - jacobian(law, variables(u - e * h), theta)[0])
                      / (2 * h) for e, h in zip(np.eye(3), steps, strict=True)])
    planned = {"N": np.array([point.n]), "N_a": np.array([point.n_a]), "D": np.array([point.tokens]),
               "G": np.array([point.g]), "S": np.array([point.s])}
    return Decision(point, u, curvature, cross, jacobian(law, planned)[0],
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


def _hessian(f, u, steps):
    n = len(u)
    out = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            ei, ej = np.eye(n)[i] * steps[i], np.eye(n)[j] * steps[j]
            out[i, j] = (f(u + ei + ej) - f(u + ei - ej) - f(u - ei + ej) + f(u - ei - ej)) / (4 * steps[i] * steps[j])
    return (out + out.T) / 2
