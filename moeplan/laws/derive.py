"""Optima derived by sympy from the law expressions themselves (never typed in).

Each function returns sympy expressions in the law's variables and constant symbols; `codegen` turns
them into numpy functions and LaTeX, and `moeplan derive` prints both.
"""

from __future__ import annotations

import sympy as sp

from moeplan.laws.definitions import LAWS


def _hy(name: str = "hy"):
    law = LAWS[name]
    c = law.symbols()
    N, D, N_a, G, S = sp.symbols("N D N_a G S", positive=True)
    return law.builder(sp, c), c, (N, D, N_a, G, S)


def _positive_root(expr, var):
    """The unique root of `expr` in `var` that is positive for the published constants."""
    roots = sp.solve(sp.Eq(expr, 0), var)
    law = LAWS["hy"]
    subs = {sp.Symbol(k, real=True): v for k, v in law.values.items()}
    good = [r for r in roots if complex(r.subs(subs).subs({s: 1 for s in r.free_symbols - set(subs)})).real > 0]
    if len(good) != 1:
        raise ArithmeticError(f"expected one positive root in {var}, got {roots}")
    return sp.simplify(good[0])


def hy_optimal_experts(name: str = "hy"):
    """[HY] Appendix D: G* from dL/dG = 0 (independent of N, N_a, D, S); also for the nested L(N, D, N_a, G)."""
    L, _, (_, _, _, G, _) = _hy(name)
    return _positive_root(sp.diff(L, G), G)


def hy_optimal_shared_ratio():
    """[HY] Appendix E: S* from dL/dS = 0."""
    L, _, (*_, S) = _hy()
    return sp.simplify(sp.solve(sp.diff(L, S), S)[0])


def hy_optimal_activation_ratio():
    """[HY] Appendix F, Eq. 29: (N_a/N)* at fixed N from dL/dN_a = 0."""
    L, _, (N, _, N_a, _, _) = _hy()
    return sp.simplify(_positive_root(sp.diff(L, N_a), N_a) / N)


def hy_practical_range(var: str):
    """[HY] Appendices D/E: the G (or S) interval whose loss is within `tol` of the loss at the optimum."""
    L, _, (N, _, N_a, G, S) = _hy()
    tol = sp.Symbol("tol", positive=True)
    target = {"G": G, "S": S}[var]
    best = {"G": hy_optimal_experts(), "S": hy_optimal_shared_ratio()}[var]
    gap = sp.expand(L - L.subs(target, best) - tol)
    # L is A(G, S) * B(N, N_a) + rest: the gap is quadratic in S, and quadratic in G after multiplying by G.
    roots = sp.solve(sp.Eq(sp.numer(sp.together(gap)), 0), target)
    return tuple(sorted(roots, key=lambda r: sp.default_sort_key(r)))


def hy_compute_optimal_gradient():
    """[HY] Appendix G, Eq. 31: dL/dN_a at fixed N with D = C / N_a (the paper's C = D·N_a, no factor 6)."""
    L, _, (N, D, N_a, G, S) = _hy()
    C = sp.Symbol("C", positive=True)
    return sp.diff(L.subs(D, C / N_a), N_a)


def chinchilla_allocation():
    """[CHIN]: N_opt(C), D_opt(C) minimising E + A/N^α + B/D^β subject to C = 6ND."""
    law = LAWS["chinchilla"]
    c = law.symbols()
    N, D, C = sp.symbols("N D C", positive=True)
    L = law.builder(sp, c).subs(D, C / (6 * N))
    # Solve in log space (N = exp(x)) so sympy sees a single exponential equation.
    x = sp.Symbol("x", real=True)
    dL = sp.simplify(sp.diff(L.subs(N, sp.exp(x)), x))
    sol = sp.solve(sp.Eq(dL, 0), x)
    n_opt = sp.simplify(sp.exp(sol[0]))
    return n_opt, sp.simplify(C / (6 * n_opt))


def ling_optimal_granularity():
    """[LING]: G_L maximising EL, from d(exponent)/d(log2 G_L) = 0 (Â < 1, so the exponent is minimised)."""
    law = LAWS["ling"]
    c = law.symbols()
    u = sp.Symbol("u", real=True)  # log2 G_L
    exponent = c.gamma * u**2 + c.beta * u
    return 2 ** sp.solve(sp.diff(exponent, u), u)[0]


def derived():
    """All derived expressions: name -> (expression(s), description, the law whose constants they use)."""
    return {
        "hy_g_star": (hy_optimal_experts(), "[HY] Appendix D: optimal activated experts G*", "hy"),
        "hy_s_star": (hy_optimal_shared_ratio(), "[HY] Appendix E: optimal shared-expert share S*", "hy"),
        "hy_activation_ratio_star": (hy_optimal_activation_ratio(),
                                     "[HY] Appendix F, Eq. 29: theoretical optimal N_a/N at fixed N", "hy"),
        "hy_g_range": (hy_practical_range("G"), "[HY] Appendix D: G interval within tol of the loss at G*", "hy"),
        "hy_s_range": (hy_practical_range("S"), "[HY] Appendix E: S interval within tol of the loss at S*", "hy"),
        "hy_compute_gradient": (hy_compute_optimal_gradient(),
                                "[HY] Appendix G, Eq. 31: dL/dN_a at fixed N, D = C/N_a", "hy"),
        "hy_ndag_g_star": (hy_optimal_experts("hy-ndag"), "[HY] Eq. 9: optimal activated experts G*", "hy-ndag"),
        "chinchilla_allocation": (chinchilla_allocation(), "[CHIN]: compute-optimal N and D for C = 6ND",
                                  "chinchilla"),
        "ling_optimal_granularity": (ling_optimal_granularity(), "[LING]: granularity maximising EL", "ling"),
    }
