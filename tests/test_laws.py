"""The laws reproduce the numbers their papers derive from them, and the derivations are sympy's own."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from scipy.optimize import minimize_scalar

from moeplan.laws import LAWS, get_law
from moeplan.laws import optima as o

HY = LAWS["hy"]


def hy_loss(**kw):
    args = {"G": o.optimal_experts(HY), "S": o.optimal_shared_ratio(HY), "D": 1e11} | kw
    return HY.evaluate(**args)


def test_generated_code_records_the_hash_of_its_inputs():
    """Fast freshness check: fails when definitions.py, derive.py, model.py or codegen.py (or sympy) changed
    and `python -m moeplan.laws.codegen` was not rerun."""
    from moeplan.laws import codegen

    assert codegen.recorded_hash() == codegen.inputs_hash(), "stale: run python -m moeplan.laws.codegen"


@pytest.mark.slow
def test_generated_code_is_fresh():
    """The full check (minutes of sympy): regenerating gives the committed file byte for byte."""
    from moeplan.laws import _generated, codegen

    assert codegen.generate() == open(_generated.__file__).read()


def test_g_star_and_s_star_derived_by_sympy():
    from moeplan.laws import derive

    values = {sp.Symbol(k, real=True): v for k, v in HY.values.items()}
    assert sp.simplify(derive.hy_optimal_experts() - sp.sqrt(sp.Symbol("f", real=True) / sp.Symbol("e", real=True))) == 0
    assert float(derive.hy_optimal_experts().subs(values)) == pytest.approx(6.78, abs=0.005)
    assert float(derive.hy_optimal_shared_ratio().subs(values)) == pytest.approx(0.31, abs=0.005)
    assert o.optimal_experts(HY) == pytest.approx(6.7778, abs=1e-4)
    assert o.optimal_shared_ratio(HY) == pytest.approx(0.3148, abs=1e-4)


def test_g_star_minimises_the_law_numerically():
    res = minimize_scalar(lambda g: float(hy_loss(N=5e9, N_a=1e9, G=g)), bounds=(1, 30), method="bounded",
                          options={"xatol": 1e-8})
    assert res.x == pytest.approx(o.optimal_experts(HY), rel=1e-5)
    res = minimize_scalar(lambda s: float(hy_loss(N=5e9, N_a=1e9, S=s)), bounds=(0, 1), method="bounded",
                          options={"xatol": 1e-9})
    assert res.x == pytest.approx(o.optimal_shared_ratio(HY), rel=1e-5)


def test_activation_ratio_falls_from_40_to_22_percent():
    """[HY] section 5.3: (N_a/N)* about 40 % at N = 30B and about 22 % at N = 671B, at G*, S*."""
    assert float(o.optimal_activation_ratio(HY, 30e9)) == pytest.approx(0.40, abs=0.005)
    assert float(o.optimal_activation_ratio(HY, 671e9)) == pytest.approx(0.22, abs=0.005)
    ratios = o.optimal_activation_ratio(HY, np.geomspace(1e9, 1e13, 50))
    assert np.all(np.diff(ratios) < 0)


@pytest.mark.parametrize("n", [3e9, 30e9, 671e9])
def test_activation_ratio_is_the_argmin_at_fixed_n(n):
    res = minimize_scalar(lambda r: float(hy_loss(N=n, N_a=r * n)), bounds=(1e-4, 1), method="bounded",
                          options={"xatol": 1e-10})
    assert res.x == pytest.approx(float(o.optimal_activation_ratio(HY, n)), rel=1e-5)


# Algorithm 1 at G*, S*, steps of 0.01·N; pinned values for the docs table.
EFFICIENCY_AWARE = {20e9: (0.23, 0.09), 50e9: (0.19, 0.08), 100e9: (0.17, 0.07), 300e9: (0.14, 0.06),
                    671e9: (0.12, 0.05), 1e12: (0.11, 0.05)}


@pytest.mark.parametrize("n", sorted(EFFICIENCY_AWARE))
def test_efficiency_aware_active_matches_numpy_stepping(n):
    ratios = np.arange(1, 101) / 100
    losses = hy_loss(N=n, N_a=ratios * n)
    drops = losses[:-1] - losses[1:]
    for threshold, pinned in zip((0.001, 0.005), EFFICIENCY_AWARE[n], strict=True):
        first = int(np.argmax(drops < threshold)) + 1
        independent = ratios[first]
        ours = o.efficiency_aware_active(HY, n, threshold) / n
        assert ours == pytest.approx(independent, abs=1e-9)
        assert ours == pytest.approx(pinned, abs=1e-9)
        assert ours < float(o.optimal_activation_ratio(HY, n))  # the band is [efficiency-aware, theoretical]


def test_practical_ranges_sit_at_the_tolerance():
    n, n_a, tol = 10e9, 2e9, 0.001
    best = float(hy_loss(N=n, N_a=n_a))
    g_lo, g_hi = o.practical_range(HY, "G", n, n_a, tol)
    s_lo, s_hi = o.practical_range(HY, "S", n, n_a, tol)
    assert g_lo < o.optimal_experts(HY) < g_hi and s_lo < o.optimal_shared_ratio(HY) < s_hi
    for g in (g_lo, g_hi):
        assert float(hy_loss(N=n, N_a=n_a, G=g)) - best == pytest.approx(tol, rel=1e-6)
    for s in (s_lo, s_hi):
        assert float(hy_loss(N=n, N_a=n_a, S=s)) - best == pytest.approx(tol, rel=1e-6)


def test_compute_optimal_active_minimises_loss_at_fixed_n():
    n, c = 1e12, 1e23
    n_a, loss = o.compute_optimal_active(HY, n, c)
    res = minimize_scalar(lambda x: float(hy_loss(N=n, N_a=np.exp(x), D=c / np.exp(x))),
                          bounds=(np.log(1e8), np.log(n)), method="bounded", options={"xatol": 1e-10})
    assert np.log(n_a) == pytest.approx(res.x, abs=1e-5)
    assert loss == pytest.approx(res.fun, abs=1e-12)


def test_ling_efficiency_leverage_and_optimal_granularity():
    ling = LAWS["ling"]
    assert float(ling.evaluate(A=0.031, G_L=12, C=1e22)) == pytest.approx(7.2, abs=0.05)
    assert o.ling_optimal_granularity(ling) == pytest.approx(11.3, abs=0.05)


def test_hol_allocation_at_1e18():
    hol = LAWS["hol"]
    assert float(hol.evaluate("flops_per_token", C=1e18)) / 1e9 == pytest.approx(0.2672, abs=5e-5)
    assert float(hol.evaluate(C=1e18)) / 1e9 == pytest.approx(3.742, abs=5e-4)


@pytest.mark.parametrize("name", ["chinchilla", "epoch"])
@pytest.mark.parametrize("c", [1e20, 5.76e23, 1e25])
def test_chinchilla_closed_form_equals_numeric_minimisation(name, c):
    law = get_law(name)
    n_opt, d_opt = o.chinchilla_allocation(law, c)
    assert 6 * n_opt * d_opt == pytest.approx(c, rel=1e-12)
    res = minimize_scalar(lambda x: float(law.evaluate(N=np.exp(x), D=c / (6 * np.exp(x)))),
                          bounds=(np.log(1e6), np.log(1e15)), method="bounded", options={"xatol": 1e-10})
    assert np.log(n_opt) == pytest.approx(res.x, abs=1e-5)


def test_every_law_evaluates_or_says_it_needs_fitting():
    from moeplan.errors import MoeplanError

    probe = {"N": 1e9, "N_a": 2e8, "D": 2e10, "G": 5, "S": 0.2, "G_K": 8, "E": 8, "S_inactive": 0.9,
             "A": 0.1, "G_L": 8, "C": 1e21}
    for law in LAWS.values():
        if any(c.value is None for c in law.constants):
            with pytest.raises(MoeplanError, match="fit it first"):
                law.evaluate(**probe)
            continue
        value = float(law.evaluate(**probe))
        assert np.isfinite(value) and value > 0, law.name


def test_extrapolation_report_names_the_factor():
    out = HY.extrapolation(N=3.4e10, D=1e10, N_a=1e7, G=7, S=0.3)
    assert {(e.variable, round(e.factor, 6)) for e in out} == {("N", 10.0), ("N_a", 3.0)}


def test_ludziejewski_more_experts_lower_the_loss_at_scale():
    """[JOINT]'s finding, which fixes the signs its secondary source garbles: at fixed active parameters and
    tokens (1B-100B active, 100B-10T tokens) an MoE with expansion 4-64 beats the dense model (Ê = 1)."""
    law = get_law("ludziejewski")
    n_a, d, e = np.meshgrid(np.geomspace(1e9, 1e11, 5), np.geomspace(1e11, 1e13, 5), [4.0, 16.0, 64.0])
    assert np.all(law.loss({"N_a": n_a, "D": d, "E": e}) < law.loss({"N_a": n_a, "D": d, "E": 1.0}))
    assert get_law("joint") is law
