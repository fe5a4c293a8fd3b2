"""The planner: exact against enumeration, a readable study, infeasibility said in one line."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moeplan.laws import get_law
from moeplan.planner import PlanRequest, Priors, plan
from moeplan.planner.solve import branch_and_bound, enumerate_space
from moeplan.planner.space import Space

# Spaces small enough for CI to enumerate in seconds (the bench runs the full defaults).
SMALL = dict(max_d_hidden=3072, max_layers=48, max_experts=64, max_top_k=8, max_shared=2)
CONSTRAINT_SETS = {
    "defaults": {},
    "memory-cap": {"memory_gb": 10, "bytes_per_param": 2},
    "fine-experts": {"priors": {"min_expert_ratio": 0.125, "max_expert_ratio": 0.375, "max_aspect": 96}},
}


def small_request(flops: float, constraints: dict, **kw) -> PlanRequest:
    priors = SMALL | constraints.get("priors", {})
    rest = {k: v for k, v in constraints.items() if k != "priors"}
    return PlanRequest(flops=flops, priors=Priors(**priors), **({"storage": ":memory:"} | rest | kw))


def test_data_cap_grows_the_model_until_the_budget_fits_the_data():
    free = plan(small_request(1e21, {}), verify=True)
    capped = plan(small_request(1e21, {"max_tokens": free.training.tokens / 2}), verify=True)
    assert abs(capped.search.regret) < 1e-6
    assert capped.training.tokens <= free.training.tokens / 2
    assert capped.counts.train_flops_per_token > free.counts.train_flops_per_token
    assert capped.law.loss > free.law.loss


@pytest.mark.parametrize("flops", [1e20, 1e22, 1e24])
@pytest.mark.parametrize("constraints", list(CONSTRAINT_SETS), ids=list(CONSTRAINT_SETS))
def test_plan_is_the_enumerations_optimum(flops, constraints):
    result = plan(small_request(flops, CONSTRAINT_SETS[constraints]), verify=True)
    s = result.search
    assert s.verified and abs(s.regret) < 1e-6
    assert s.certificate_band_size == s.band_size
    assert s.points_evaluated < s.certificate_points / 2  # narrows even small spaces (bench: full ones)


@st.composite
def random_requests(draw):
    d_max = draw(st.sampled_from([1024, 1536, 2048, 3072]))
    priors = Priors(
        max_d_hidden=d_max, max_layers=draw(st.integers(8, 48)),
        min_aspect=draw(st.sampled_from([16.0, 32.0])), max_aspect=draw(st.sampled_from([64.0, 128.0, 256.0])),
        min_expert_ratio=draw(st.sampled_from([0.125, 0.25])), max_expert_ratio=draw(st.sampled_from([0.5, 1.0])),
        max_experts=draw(st.sampled_from([16, 32, 64])), max_top_k=draw(st.integers(1, 6)),
        max_shared=draw(st.integers(0, 2)), min_tokens_per_param=draw(st.sampled_from([1.0, 20.0, 100.0])),
        dense_layers=draw(st.integers(0, 1)),
    )
    caps = {}
    if draw(st.booleans()):
        caps["max_params"] = 10 ** draw(st.floats(8.5, 11))
    if draw(st.booleans()):
        caps["max_tokens"] = 10 ** draw(st.floats(9, 12))
    return PlanRequest(flops=10 ** draw(st.floats(18, 23)), priors=priors, expert_parallel=draw(st.sampled_from([1, 4, 8])),
                       gqa_group=draw(st.sampled_from([1, 2, 4])), convention=draw(st.sampled_from(["exact", "6n"])),
                       tolerance=draw(st.sampled_from([0.0, 0.001, 0.01])), storage=":memory:", **caps)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=random_requests())
def test_branch_and_bound_finds_exactly_the_enumerated_band(request):
    space = Space(request, get_law("hy"))
    bnb, full = branch_and_bound(space, request.tolerance), enumerate_space(space, request.tolerance)
    assert len(bnb) == len(full)
    if len(full):
        assert bnb.loss[0] == full.loss[0]
        ours = set(zip(bnb.pair, bnb.combo, bnb.j, bnb.i, strict=True))
        assert ours == set(zip(full.pair, full.combo, full.j, full.i, strict=True))


def test_study_reads_well_in_the_dashboard(tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    result = plan(small_request(1e21, {}, storage=url))
    study = optuna.load_study(study_name=result.search.study_name, storage=url)
    assert study.metric_names == ["predicted_loss"]
    s = result.search
    assert len(study.trials) == s.trials == len(s.seeds) + 1 + len(s.alternatives)
    best = study.best_trial
    assert best.params == {k: getattr(result.architecture, k) for k in best.params}
    assert best.value == pytest.approx(result.law.loss, abs=1e-12)
    assert best.user_attrs["role"] == "plan"
    for key in ("total_params", "active_params", "law_N", "law_N_a", "tokens", "train_flops_per_token",
                "activated_experts_G", "shared_ratio_S", "weight_memory_gb", "training_memory_gb"):
        assert isinstance(best.user_attrs[key], (int, float)), key
    assert best.user_attrs["total_params"] == result.counts.total.all
    assert best.constraints and all(v <= 0 for v in best.constraints.values())
    assert "tokens >= 20 x total parameters" in best.constraints
    assert {t.user_attrs["role"] for t in study.trials} == {"seed", "plan", "band"}
    assert study.user_attrs["request"]["flops"] == 1e21


def test_extra_trials_explore_and_mark_infeasible_ones():
    result = plan(small_request(1e21, {}, trials=40))
    assert result.search.trials == 40


def test_efficient_objective_takes_the_cheapest_within_tolerance():
    base = plan(small_request(1e22, {}, tolerance=0.01))
    cheap = plan(small_request(1e22, {}, tolerance=0.01, objective="efficient"))
    assert cheap.law.loss <= base.law.loss + 0.01
    assert cheap.counts.train_flops_per_token <= base.counts.train_flops_per_token
    assert all(cheap.counts.train_flops_per_token <= a.train_flops_per_token for a in base.search.alternatives
               if a.loss <= base.law.loss + 0.01)


def test_pareto_front_is_non_dominated():
    """Objectives of `pareto`: loss, total parameters and serving FLOPs per token (tests/test_pareto.py)."""
    result = plan(small_request(1e21, {}, objective="pareto"))
    front = [(p.design.loss, p.design.total_params, p.serve_flops_per_token) for p in result.pareto.points]
    assert front
    for a in front:
        for b in front:
            assert not (b[0] < a[0] and b[1] < a[1] and b[2] < a[2])


def test_binding_cap_is_reported():
    result = plan(small_request(1e22, {"priors": {"max_experts": 16}}))
    assert result.architecture.n_experts == 16
    blocked = {b.constraint: b for b in result.search.binding}
    assert "n_experts <= 16" in blocked and blocked["n_experts <= 16"].loss_gain > 0


def test_gpu_hours_budget():
    request = PlanRequest(gpu_hours=2e5, gpu="h100", mfu=0.4, storage=":memory:")
    assert request.compute == pytest.approx(2e5 * 3600 * 989e12 * 0.4)


def test_same_request_same_json():
    a = plan(small_request(1e21, {})).model_dump_json()
    b = plan(small_request(1e21, {})).model_dump_json()
    assert a == b


def test_cli_json_equals_api(cli, tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    out = cli("plan", "--flops", "1e21", "--max-d-hidden", "2048", "--max-experts", "32", "--storage", url, "--json")
    assert out.code == 0, out.err
    request = PlanRequest(flops=1e21, priors=Priors(max_d_hidden=2048, max_experts=32), storage=url)
    assert out.json() == json.loads(plan(request).model_dump_json())


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--flops", "1e15"), 1, "no buildable model fits: the budget 1e+15 FLOPs gives at most"),
        (("--flops", "1e22", "--max-params", "1e6"), 1, "smallest buildable model has"),
        (("--flops", "1e24", "--max-tokens", "1e9", "--max-d-hidden", "2048"), 1,
         "even the largest buildable model needs"),
        (("--flops", "-1e22"), 2, "flops: Input should be greater than 0"),
        (("--flops", "1e22", "--gpu-hours", "10"), 2, "give exactly one budget"),
        (("--gpu-hours", "10", "--gpu", "tpu9"), 2, "unknown gpu 'tpu9'"),
        (("--flops", "1e22", "--min-aspect", "200"), 2, "min_aspect=200.0 exceeds max_aspect=128.0"),
        (("--flops", "1e22", "--law", "ling"), 1, "law 'ling' predicts leverage, not loss"),
        (("--flops", "1e22", "--law", "hy-nd"), 1, "law 'hy-nd' has no values for a, alpha"),
        (("--flops", "1e22", "--objective", "speed"), 2, "Invalid value for '--objective'"),
        (("--flops", "1e22", "--max-layers", "3", "--max-aspect", "150"), 1, "no (layers, d_hidden) pair fits"),
        (("--flops", "1e22", "--max-d-hidden", "256"), 2, "min_d_hidden=512 exceeds max_d_hidden=256"),
    ],
)
def test_bad_plan_requests(cli, tmp_path, args, code, message):
    db = tmp_path / "s.db"
    out = cli("plan", *args, "--storage", f"sqlite:///{db}")
    assert out.code == code, out.err
    assert message in out.err and len(out.err.strip().splitlines()) == 1 and out.out == ""
    if db.exists():  # never a half-written study
        assert optuna.get_all_study_names(storage=f"sqlite:///{db}") == []


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=random_requests(), data=st.data())
def test_bound_holds_for_fitted_constants_of_any_sign(request, data):
    """Fitted constants may flip signs (a fit found k < 0): the bound picks each term's minimising corner."""
    hy = get_law("hy")
    factors = {name: data.draw(st.floats(-0.5, 2.0)) for name in ("k", "h", "c", "m", "n")}
    law = hy.with_values({name: hy.values[name] * f for name, f in factors.items()}, source="perturbed")
    space = Space(request, law)
    bnb, full = branch_and_bound(space, request.tolerance), enumerate_space(space, request.tolerance)
    assert len(bnb) == len(full)
    if len(full):
        assert bnb.loss[0] == full.loss[0]


@pytest.mark.parametrize(("compute", "flops_per_token", "tokens"), [  # [HOL] Table 2: C, M (GFLOPs), D (B tokens)
    (3e18, 0.4856, 6.1775), (1e20, 3.2681, 30.5985), (3e20, 5.9390, 50.5138)])
def test_plans_carry_hols_allocation_as_its_table_2_gives_it(compute, flops_per_token, tokens):
    from moeplan.planner.plan import allocations

    hol = {a.law: a for a in allocations(compute)}["hol"]
    assert hol.flops_per_token / 1e9 == pytest.approx(flops_per_token, abs=6e-4)
    assert hol.tokens / 1e9 == pytest.approx(tokens, abs=6e-3)
    assert hol.fitted_range == (1e18, 3e20)


@given(st.floats(1e18, 1e27))
@settings(max_examples=30, deadline=None)
def test_every_allocation_spends_the_compute(compute):
    """C = M·D in both papers: an allocation's tokens times its FLOPs per token is the compute (their
    coefficients multiply to 1 within the rounding of the printed constants)."""
    from moeplan.planner.plan import allocations

    for a in allocations(compute):
        assert a.tokens * a.flops_per_token == pytest.approx(compute, rel=2e-3)


def test_a_plan_reports_the_allocations_at_its_own_compute():
    from moeplan.planner.plan import allocations

    result = plan(PlanRequest(flops=3e19, priors=Priors(max_d_hidden=2048, max_experts=32)))
    assert result.training.allocations == allocations(result.training.compute)
    assert [a.law for a in result.training.allocations] == ["hol", "ling"]
