"""Optimal experimental design of a sweep: the information a set of runs carries about a law's constants,
the criteria that score it, and the greedy-then-exchange search that picks runs under a compute budget.

Linearised at the prior θ₀, a run x with loss noise σ contributes J(x)ᵀJ(x)/σ² to the information matrix,
J(x) = ∂L(x; θ)/∂θ (the Jacobian sympy derives, `_generated.FITTING`). A weak prior (each constant known
to within 100 % of its value) keeps the matrix invertible. The fitted constants' covariance is then
Σ = M⁻¹ and, by the delta method, any smooth decision quantity q(θ) has variance ∇qᵀ Σ ∇q.

- `d`: maximise log det M (D-optimality: the smallest confidence ellipsoid of all constants).
- `target`: minimise the expected regret of the plan at the target budget. The fit prefers competitor p_j
  to the optimum p* when its estimated gap Δ̂_j = L̂(p_j) − L̂(p*) < 0; Δ̂_j ≈ N(Δ_j, g_jᵀ Σ g_j) with
  g_j = J(p_j) − J(p*), so the regret is Σ_j Δ_j Φ(−Δ_j / √(g_jᵀ Σ g_j)) (each competitor against the
  optimum: an upper bound when several beat it at once). docs/sweeps.md derives it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moeplan.laws import _generated
from moeplan.laws.model import Law
from moeplan.sweep.candidates import Runs

PRIOR_RELATIVE_SD = 1.0  # weak prior on every constant: known to within 100 % of its value


def constants_vector(law: Law) -> np.ndarray:
    values = law.values
    return np.array([values[c] for c in law.constant_names], dtype=np.float64)


def jacobian(law: Law, variables: dict[str, np.ndarray], theta: np.ndarray | None = None) -> np.ndarray:
    """∂L/∂θ at every point (rows) for every constant (columns), from the sympy-derived Jacobian."""
    fn = _generated.FITTING[law.form][0]
    values = dict(zip(law.constant_names, constants_vector(law) if theta is None else theta, strict=True))
    n = len(next(iter(variables.values())))
    cols = fn(*(variables[v] for v in fn.variables), *(values[c] for c in fn.constants))
    return np.column_stack([np.broadcast_to(np.asarray(c, dtype=np.float64), (n,)) for c in cols])


def loss(law: Law, variables: dict[str, np.ndarray], theta: np.ndarray) -> np.ndarray:
    fn = _generated.FUNCTIONS[(law.form, "loss")]
    values = dict(zip(law.constant_names, theta, strict=True))
    return fn(*(np.asarray(variables[v], dtype=np.float64) for v in fn.variables), *(values[c] for c in fn.constants))


def prior_information(law: Law) -> np.ndarray:
    """Precision of the weak prior: 1 / (PRIOR_RELATIVE_SD · |θ₀|)² on the diagonal."""
    scale = PRIOR_RELATIVE_SD * np.maximum(np.abs(constants_vector(law)), 1e-12)
    return np.diag(1.0 / scale**2)


@dataclass(frozen=True)
class Criterion:
    """Φ(M) to minimise: 'd' is −log det M; 'target' the expected regret over the plan's competitors."""

    kind: str
    gaps: np.ndarray | None = None       # Δ_j (target only)
    gradients: np.ndarray | None = None  # g_j, competitors x constants (target only)

    def value(self, info: np.ndarray) -> float:
        if self.kind == "d":
            sign, logdet = np.linalg.slogdet(info)
            return -logdet if sign > 0 else np.inf
        variance = np.einsum("jp,pq,jq->j", self.gradients, np.linalg.inv(info), self.gradients)
        return float(self._regret(variance[None, :])[0])

    def _regret(self, variance: np.ndarray) -> np.ndarray:
        """Σ_j Δ_j Φ(−Δ_j/s_j) for each row of gap variances s_j²."""
        from scipy.special import ndtr

        sd = np.sqrt(np.maximum(variance, 1e-300))
        return (self.gaps * ndtr(-self.gaps / sd)).sum(axis=1)

    def gains(self, inverse: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Decrease of Φ from adding each row x to M (Sherman–Morrison on M⁻¹)."""
        y = rows @ inverse
        lever = 1.0 + np.einsum("ij,ij->i", y, rows)
        if self.kind == "d":
            return np.log(lever)
        base = np.einsum("jp,pq,jq->j", self.gradients, inverse, self.gradients)
        reach = y @ self.gradients.T  # gᵀ M⁻¹ x, candidates x competitors
        return self._regret(base[None, :])[0] - self._regret(base[None, :] - reach**2 / lever[:, None])


@dataclass(frozen=True)
class Design:
    chosen: np.ndarray   # indices into the candidates
    criterion: float
    exchanges: int


def choose(candidates: Runs, rows: np.ndarray, prior: np.ndarray, criterion: Criterion, runs: int,
           budget: float, max_passes: int = 8) -> Design:
    """Greedy: add the run with the largest gain that leaves room for the rest; then Fedorov exchange:
    swap any chosen run for the candidate that lowers Φ most within the budget, until no swap helps."""
    cost = candidates.compute
    cheapest = float(cost.min())
    info = prior.copy()
    taken = np.zeros(len(cost), dtype=bool)
    spent = 0.0
    for t in range(runs):
        room = budget - spent - (runs - t - 1) * cheapest
        best = _best(criterion, np.linalg.inv(info), rows, ~taken & (cost <= room * (1 + 1e-12)))
        if best is None:
            break
        taken[best] = True
        spent += cost[best]
        info += np.outer(rows[best], rows[best])
    chosen = list(np.flatnonzero(taken))
    current = criterion.value(info)
    exchanges = 0
    for _ in range(max_passes):
        improved = False
        for slot in range(len(chosen)):
            out = chosen[slot]
            without = info - np.outer(rows[out], rows[out])
            room = budget - spent + cost[out]
            best = _best(criterion, np.linalg.inv(without), rows, ~taken & (cost <= room * (1 + 1e-12)))
            if best is None:
                continue
            trial = without + np.outer(rows[best], rows[best])
            value = criterion.value(trial)
            if value < current - 1e-9 * abs(current):
                taken[out], taken[best] = False, True
                spent += cost[best] - cost[out]
                chosen[slot], info, current = best, trial, value
                exchanges += 1
                improved = True
        if not improved:
            break
    return Design(np.array(sorted(chosen), dtype=np.int64), current, exchanges)


def _best(criterion: Criterion, inverse: np.ndarray, rows: np.ndarray, allowed: np.ndarray) -> int | None:
    """The allowed row whose addition lowers Φ most (gains computed for the allowed rows only)."""
    index = np.flatnonzero(allowed)
    if len(index) == 0:
        return None
    return int(index[np.argmax(criterion.gains(inverse, rows[index]))])


def information(rows: np.ndarray, prior: np.ndarray) -> np.ndarray:
    return prior + rows.T @ rows
