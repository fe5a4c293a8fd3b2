"""Numeric optima of the laws, from the sympy-derived functions in `_generated.py` (see derive.py).

Closed forms where sympy found one (G*, S*, Eq. 29, practical ranges, [CHIN] allocation, [LING] G_L*);
root finding on the derived gradient where it did not ([HY] Eq. 31).
"""

from __future__ import annotations

import numpy as np

from moeplan.errors import MoeplanError
from moeplan.laws import _generated
from moeplan.laws.model import Law


def derived(name: str, law: Law, **variables):
    """Evaluate the derived expression `name` with `law`'s constants, arguments matched by name."""
    fn = _generated.DERIVED[name]
    values = law.values
    return fn(*(variables[v] for v in fn.variables), *(values[c] for c in fn.constants))


def _require(law: Law, form: str) -> None:
    if law.form != form:
        raise MoeplanError(f"this derivation is defined for the {form!r} law, not {law.name!r}")


def optimal_experts(law: Law) -> float:
    """[HY] Appendix D: G* = sqrt(f/e)."""
    _require(law, "hy")
    return float(derived("hy_g_star", law))


def optimal_shared_ratio(law: Law) -> float:
    """[HY] Appendix E: S* = -n/(2m)."""
    _require(law, "hy")
    return float(derived("hy_s_star", law))


def optimal_activation_ratio(law: Law, total_params, experts=None, shared_ratio=None):
    """[HY] Appendix F, Eq. 29: theoretical optimal N_a/N at fixed N (G, S default to G*, S*)."""
    _require(law, "hy")
    g = optimal_experts(law) if experts is None else experts
    s = optimal_shared_ratio(law) if shared_ratio is None else shared_ratio
    return derived("hy_activation_ratio_star", law, N=np.asarray(total_params, dtype=float), G=g, S=s)


def efficiency_aware_active(law: Law, total_params: float, threshold: float, experts=None, shared_ratio=None,
                            tokens: float = 1e11, step: float = 0.01) -> float:
    """[HY] Appendix F, Algorithm 1: from N_a = step·N, add step·N while that lowers the loss by ≥ threshold.

    Returns the first N_a whose step lowered the loss by less than `threshold` (N if none does). D only
    shifts the loss by a constant at fixed N, so it does not change the answer.
    """
    _require(law, "hy")
    g = optimal_experts(law) if experts is None else experts
    s = optimal_shared_ratio(law) if shared_ratio is None else shared_ratio
    n_a = step * total_params
    loss = float(law.evaluate(N=total_params, D=tokens, N_a=n_a, G=g, S=s))
    while n_a + step * total_params <= total_params * (1 + 1e-12):
        nxt = n_a + step * total_params
        nxt_loss = float(law.evaluate(N=total_params, D=tokens, N_a=nxt, G=g, S=s))
        if loss - nxt_loss < threshold:
            return nxt
        n_a, loss = nxt, nxt_loss
    return n_a


def practical_range(law: Law, variable: str, total_params: float, active_params: float, tolerance: float):
    """[HY] Appendices D/E: the G (or S) interval whose loss is within `tolerance` of the optimum's."""
    _require(law, "hy")
    name = {"G": "hy_g_range", "S": "hy_s_range"}[variable]
    low, high = derived(name, law, N=float(total_params), N_a=float(active_params), tol=float(tolerance))
    return float(low), float(high)


def compute_optimal_active(law: Law, total_params: float, compute: float, experts=None, shared_ratio=None):
    """[HY] Appendix G: N_a minimising L at fixed N with D = C/N_a (C = D·N_a, no factor 6); returns (N_a, L*).

    Solves the derived Eq. 31 (dL/dN_a = 0) by Brent's method in log N_a on (0, N]; N itself when the
    gradient is still negative there (compute is plentiful).
    """
    from scipy.optimize import brentq  # scipy.optimize costs ~0.4 s to import: only when solving

    _require(law, "hy")
    g = optimal_experts(law) if experts is None else experts
    s = optimal_shared_ratio(law) if shared_ratio is None else shared_ratio

    def grad(log_na: float) -> float:
        return float(derived("hy_compute_gradient", law, N=total_params, N_a=np.exp(log_na), G=g, S=s, C=compute))

    low, high = np.log(total_params) - 40.0, np.log(total_params)
    if grad(high) <= 0:
        n_a = total_params
    else:
        n_a = float(np.exp(brentq(grad, low, high, xtol=1e-12, rtol=1e-14)))
    loss = float(law.evaluate(N=total_params, D=compute / n_a, N_a=n_a, G=g, S=s))
    return n_a, loss


def chinchilla_allocation(law: Law, compute):
    """[CHIN]: compute-optimal (N, D) for C = 6ND, closed form derived by sympy."""
    _require(law, "chinchilla")
    n_opt, d_opt = derived("chinchilla_allocation", law, C=np.asarray(compute, dtype=float))
    return n_opt, d_opt


def ling_optimal_granularity(law: Law) -> float:
    """[LING]: G_L maximising efficiency leverage, 2^(-β/2γ)."""
    _require(law, "ling")
    return float(derived("ling_optimal_granularity", law))
