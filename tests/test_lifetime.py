"""Lifetime cost (training + serving FLOPs, after Sardana et al. 2024): exact against enumeration, the
root finding against [HY]'s closed form, and the objective's promise on the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moeplan.flops.hf import from_hf_config
from moeplan.laws import get_law
from moeplan.planner import PlanRequest, Priors
from moeplan.planner.designs import band_axes
from moeplan.planner.lifetime import (cheapest_design, kv_cache_bytes_per_token, lifetime_cost, lifetime_plan,
                                      serve_flops_per_token, tokens_to_reach)
from moeplan.planner.solve import enumerate_space, solve
from moeplan.planner.space import Space
from tests.conftest import DATA
from tests.hf_configs import hf_config

HY = get_law("hy")
TINY = Priors(max_d_hidden=1536, max_layers=24, max_experts=32, max_top_k=4, max_shared=1)


def _loss_plan(space):
    band = solve(space, 0.0)[0]
    return {a: int(v[0]) for a, v in band_axes(space, band).items()}, float(band.loss[0])


def test_root_finding_matches_hys_closed_form():
    """[HY]'s D enters only as b·D^-β, so D = (b / (L - L_∞))^(1/β) with L_∞ the loss at infinite D."""
    space = Space(PlanRequest(flops=1e21, priors=TINY), HY)
    everything = enumerate_space(space, np.inf, keep=space.size)
    values = {a: np.asarray(v)[:500] for a, v in
              space.values(everything.pair, everything.combo, everything.j, everything.i).items()}
    ev = space.evaluate_values(values)
    v = HY.values
    at_infinity = ev.loss - v["b"] * ev.tokens ** -v["beta"]
    target = float(np.max(at_infinity)) + 0.05
    closed = (v["b"] / (target - at_infinity)) ** (1 / v["beta"])
    assert np.allclose(tokens_to_reach(space, values, target), closed, rtol=1e-9)


@pytest.mark.parametrize("serve_tokens", [0.0, 1e11, 1e13])
def test_cheapest_design_is_the_enumerations(serve_tokens):
    request = PlanRequest(flops=1e21, priors=TINY, objective="cost", serve_tokens=serve_tokens)
    space = Space(request, HY)
    axes, loss = _loss_plan(space)
    everything = enumerate_space(space, np.inf, keep=space.size)
    values = {a: np.asarray(v) for a, v in
              space.values(everything.pair, everything.combo, everything.j, everything.i).items()}
    ev = space.evaluate_values(values)
    tokens = np.maximum(tokens_to_reach(space, values, loss), request.priors.min_tokens_per_param * ev.total)
    cost = ev.flops_per_token * tokens + serve_flops_per_token(space, values) * serve_tokens
    result = lifetime_plan(space, axes, loss)
    assert result.cheapest.lifetime_flops == pytest.approx(float(cost.min()), rel=1e-9)
    assert result.cheapest.design.loss == pytest.approx(loss, abs=1e-9)
    if serve_tokens == 0:  # nothing served: the loss-optimal plan is the cheapest way to its own loss (duality)
        assert result.cheapest.lifetime_flops == pytest.approx(request.compute, rel=1e-9)


def test_serving_flops_and_kv_cache_of_a_published_model():
    """DeepSeek-V2-Lite (MLA): the cache holds (d_c + d_R) = 512 + 64 numbers per layer and token (DeepSeek-V2,
    arXiv 2405.04434, Table 1); serving FLOPs are 2 x matmul weights touched plus attention over the context."""
    from moeplan.flops.count import count
    from moeplan.planner.assess import containing_request, model_axes, model_space

    fixtures = json.loads((DATA / "real-moe-configs.json").read_text())
    a = from_hf_config(hf_config("DeepSeek-V2-Lite", fixtures["DeepSeek-V2-Lite"]))
    request = containing_request(a, 5.7e12, count(a).convention).model_copy(update={"serve_context": 1000})
    space = model_space(a, HY, request)
    values = {k: np.array([v]) for k, v in model_axes(a).items()}
    assert kv_cache_bytes_per_token(space, values)[0] == 27 * (512 + 64) * 2
    exact = count(a)
    matmul_forward = (exact.train_flops_per_token - exact.train_flops_by_component["attention_scores"]) / 3
    attention = 27 * 2 * a.n_heads * (a.d_qk + a.d_v) * 1000
    assert serve_flops_per_token(space, values)[0] == pytest.approx(matmul_forward + attention, rel=1e-12)


def test_cost_objective_trades_active_parameters_for_tokens(cli):
    """Serving 1e13 tokens: the same predicted loss with fewer active parameters trained on more tokens."""
    args = ["plan", "--flops", "1e22", "--objective", "cost", "--serve-tokens", "1e13", "--storage", ":memory:"]
    data = cli(*args, "--json").json()
    life = data["lifetime"]
    cheap, plan = life["cheapest"], life["loss_plan"]
    assert life["target_loss"] == pytest.approx(data["law"]["loss"])
    assert cheap["design"]["loss"] == pytest.approx(plan["design"]["loss"], abs=1e-9)
    assert cheap["design"]["active_params"] < plan["design"]["active_params"]
    assert cheap["design"]["tokens"] > plan["design"]["tokens"]
    assert cheap["lifetime_flops"] < plan["lifetime_flops"]
    assert plan["train_flops"] == pytest.approx(1e22, rel=1e-9)
    text = cli(*args)
    assert text.code == 0 and "lifetime cost" in text.out and "cheapest (cost)" in text.out
    assert f"{cheap['lifetime_flops']:.4g}" in text.out and f"{plan['lifetime_flops']:.4g}" in text.out


def test_target_loss_below_what_the_budget_buys_trains_longer(cli):
    request = PlanRequest(flops=1e21, priors=TINY, objective="cost", serve_tokens=1e12, target_loss=2.3)
    space = Space(request, HY)
    axes, loss = _loss_plan(space)
    assert loss > 2.3
    result = lifetime_plan(space, axes, loss)
    assert result.target_loss == 2.3 and result.cheapest.design.loss <= 2.3 + 1e-9
    assert result.loss_plan.train_flops > request.compute  # the loss plan must train past the budget to get there
    best, _ = cheapest_design(space, 2.3)
    assert lifetime_cost(space, best, 2.3).lifetime_flops == pytest.approx(result.cheapest.lifetime_flops)


@pytest.mark.parametrize("args, message", [
    (["--objective", "cost"], "objective cost needs serve_tokens"),
    (["--target-loss", "2.0"], "target_loss is for objective cost"),
    (["--objective", "cost", "--serve-tokens", "-1"], "serve_tokens"),
])
def test_bad_cost_requests(cli, args, message):
    result = cli("plan", "--flops", "1e21", "--storage", ":memory:", *args)
    assert result.code == 2 and message in result.err and len(result.err.strip().splitlines()) == 1


def test_unreachable_target_says_so(cli):
    result = cli("plan", "--flops", "1e21", "--max-d-hidden", "1536", "--max-experts", "32", "--storage", ":memory:",
                 "--objective", "cost", "--serve-tokens", "1e12", "--target-loss", "1.0")
    assert result.code == 1 and "never reaches loss 1.0000" in result.err
