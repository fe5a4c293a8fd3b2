"""The law protocol's conformance suite: the same checks on every loss law (as Optuna's `testing/` runs one
suite on every sampler). A law added to definitions.py is checked here without a line of new test code.

Laws without published constants (form only) are checked with constants drawn at random within their
physical signs: the properties below must hold for any such constants.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from moeplan.laws import LAWS, get_law
from moeplan.laws.inputs import MONOTONE, QUANTITIES, quantities
from moeplan.laws.model import Law
from moeplan.planner.request import PlanRequest, Priors
from moeplan.planner.solve import enumerate_space, solve
from moeplan.planner.space import Space

LOSS_LAWS = [name for name, law in LAWS.items() if law.kind == "loss"]
# Ranges to draw inputs from, by quantity (log-uniform for the counts).
DRAW = {"N": (1e8, 1e12, "log"), "N_a": (1e7, 1e11, "log"), "D": (1e9, 1e13, "log"), "G": (1.0, 20.0),
        "S": (0.0, 0.7), "G_K": (1.0, 32.0), "expansion": (1.2, 64.0, "log"), "n_experts": (2.0, 256.0, "log"),
        "S_inactive": (0.05, 0.95)}


def with_constants(name: str, seed: int = 0) -> Law:
    """The law with its published constants, or random ones within their physical signs if it has none."""
    law = LAWS[name]
    if all(c.value is not None for c in law.constants):
        return law
    rng = np.random.default_rng(seed)
    values = {c.name: (rng.uniform(0.05, 0.5) if c.sign == "positive" else rng.uniform(0.1, 10.0))
              for c in law.constants}
    return law.with_values(values, source="random, for the conformance suite")


def draw(law: Law, rng, size=None) -> dict[str, np.ndarray]:
    out = {}
    for v in law.variables:
        low, high, *log = DRAW[v.quantity]
        u = rng.uniform(size=size)
        out[v.name] = np.exp(np.log(low) + u * np.log(high / low)) if log else low + u * (high - low)
    return out


@pytest.mark.parametrize("name", LOSS_LAWS)
def test_every_variable_reads_a_quantity_of_the_one_map(name):
    assert all(v.quantity in QUANTITIES for v in LAWS[name].variables)


@pytest.mark.parametrize("name", LOSS_LAWS)
def test_vectorised_evaluation_equals_scalar(name):
    law = with_constants(name)
    x = draw(law, np.random.default_rng(1), size=40)
    together = law.loss(x)
    one_by_one = [float(law.loss({k: float(v[i]) for k, v in x.items()})) for i in range(40)]
    np.testing.assert_allclose(together, one_by_one, rtol=1e-13)


@pytest.mark.parametrize("name", LOSS_LAWS)
def test_generated_code_equals_sympy(name):
    law = with_constants(name)
    expr = law.expression(substitute=True)
    rng = np.random.default_rng(2)
    for _ in range(5):
        x = draw(law, rng)
        exact = float(expr.subs({sp.Symbol(k, positive=True): sp.Float(float(v), 30) for k, v in x.items()}).evalf(30))
        assert float(law.loss(x)) == pytest.approx(exact, rel=1e-11)


BOUNDED = [name for name in LOSS_LAWS if LAWS[name].has_bound]


def test_the_planned_laws_have_a_bound():
    """Branch and bound is available for the laws the planner is meant for; the rest are enumerated."""
    assert {"hy", "ludziejewski", "krajewski", "chinchilla", "chinchilla-active"} <= set(BOUNDED)
    assert not LAWS["clark"].has_bound  # a saturating transform of E: not exp-multilinear, enumerated


def random_boxes(law: Law, rng, n: int, fixed_varies: bool = False):
    """n boxes in input space; the variables fixed within planner boxes (G, S) fixed unless `fixed_varies`."""
    a, b = draw(law, rng, size=n), draw(law, rng, size=n)
    low = {k: np.minimum(a[k], b[k]) for k in a}
    high = {k: np.maximum(a[k], b[k]) for k in a}
    if not fixed_varies:
        for v in law.variables:
            if v.quantity in ("G", "S"):
                high[v.name] = low[v.name]
    return low, high


@pytest.mark.parametrize("name", BOUNDED)
@pytest.mark.parametrize("fixed_varies", [False, True])
def test_bound_is_below_the_loss_everywhere_in_random_boxes(name, fixed_varies):
    law = with_constants(name)
    rng = np.random.default_rng(3)
    low, high = random_boxes(law, rng, 300, fixed_varies)
    bound = law.lower_bound(low, high)
    for _ in range(40):
        u = {k: rng.uniform(size=300) for k in low}
        inside = {k: low[k] * (high[k] / np.maximum(low[k], 1e-300)) ** u[k] if np.all(low[k] > 0)
                  else low[k] + u[k] * (high[k] - low[k]) for k in low}
        for k in inside:  # corners too: that is where a bound is tight
            corner = rng.uniform(size=300) < 0.3
            inside[k] = np.where(corner, np.where(rng.uniform(size=300) < 0.5, low[k], high[k]), inside[k])
        loss = law.loss(inside)
        assert np.all(bound <= loss + 1e-12 * np.abs(loss))


@pytest.mark.parametrize("name", BOUNDED)
def test_bound_equals_the_loss_at_single_points(name):
    law = with_constants(name)
    x = draw(law, np.random.default_rng(4), size=200)
    np.testing.assert_allclose(law.lower_bound(x, x), law.loss(x), rtol=1e-12)


def small_request(**extra) -> PlanRequest:
    priors = Priors(max_layers=24, max_d_hidden=2048, max_experts=64, max_top_k=6, max_shared=2)
    return PlanRequest(flops=3e20, priors=priors, storage=":memory:", **extra)


def test_every_quantity_is_monotone_over_planner_boxes():
    """MONOTONE is what the corner bound relies on: check it on every d_expert / n_experts step of a space."""
    space = Space(small_request(), get_law("hy"))
    pairs = np.arange(len(space.pairs[0]))
    j_lo, j_hi = space.expert_index_range
    for combo in range(len(space.combos[0])):
        i_min = int(space.min_expert_index(space.combos[0][combo]))
        for axis in (0, 1):
            j = j_lo.copy()
            i = np.full_like(j, i_min)
            a, b = (j, i), (j + (axis == 0), i + (axis == 1))
            keep = (b[0] <= j_hi)
            if not keep.any():
                continue
            evs = [space.evaluate_values(space.values(pairs[keep], combo, x[0][keep], x[1][keep])) for x in (a, b)]
            q = [quantities(total_without_embeddings=ev.n, active_without_embeddings=ev.n_a, tokens=ev.tokens,
                            **{k: np.asarray(v) for k, v in space.values(pairs[keep], combo, x[0][keep],
                                                                           x[1][keep]).items()
                               if k not in ("n_layers",)})
                 for ev, x in zip(evs, (a, b), strict=True)]
            for name, direction in MONOTONE.items():
                if name not in q[0]:
                    continue
                step = np.sign(q[1][name] - q[0][name])
                assert np.all(step * direction[axis] >= 0) and (direction[axis] != 0 or np.all(step == 0)), name


PLANNABLE = [name for name in LOSS_LAWS if with_constants(name).can_score() is None]


@pytest.mark.parametrize("name", PLANNABLE)
def test_the_planner_finds_the_enumerated_optimum_under_every_law(name):
    law = with_constants(name)
    space = Space(small_request(), law)
    band, _, _ = solve(space, 0.002)
    exact = enumerate_space(space, 0.002)
    assert len(band) and band.loss[0] == pytest.approx(exact.loss[0], abs=1e-12)  # regret 0
    found = set(zip(band.pair, band.combo, band.j, band.i, strict=True))
    assert found == set(zip(exact.pair, exact.combo, exact.j, exact.i, strict=True))


def test_laws_that_cannot_score_an_architecture_say_why():
    assert "predicts leverage, not loss" in get_law("ling").can_score()
    assert "fit it first" in get_law("abnar").can_score()
    assert get_law("joint").name == "ludziejewski"  # the former name still works


@pytest.mark.slow
def test_ludziejewski_plan_at_1e22_is_certified_by_enumeration(cli):
    """The issue's check: `moeplan plan --law ludziejewski --flops 1e22 --verify` has regret 0 (all 214,856,000
    configurations enumerated; ~40 s of CPU)."""
    out = cli("plan", "--law", "ludziejewski", "--flops", "1e22", "--verify", "--storage", ":memory:", "--json")
    assert out.code == 0, out.err
    p = out.json()
    assert p["law"]["name"] == "ludziejewski" and p["search"]["verified"] and p["search"]["regret"] == 0.0
    assert p["search"]["certificate_points"] == p["search"]["space_size"] == 214_856_000
    assert set(p["law"]["inputs"]) == {"N_a", "D", "E"}
    assert p["law"]["inputs"]["E"] == p["architecture"]["n_experts"] / p["architecture"]["top_k"]
