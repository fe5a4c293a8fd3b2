"""Exact Pareto fronts (loss against memory, loss against serving FLOPs): against enumeration, spanning the
whole space, and recorded as a study optuna-dashboard shows as a Pareto front."""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from moeplan.laws import get_law
from moeplan.planner import PlanRequest, Priors
from moeplan.planner.pareto import FRONTS, dominated, enumerated_front, exact_front, non_dominated, pareto_fronts
from moeplan.planner.solve import enumerate_space, solve
from moeplan.planner.space import AXES, Space

TINY = Priors(max_d_hidden=2048, max_layers=32, max_experts=32, max_top_k=4, max_shared=1)


def _rows(axes):
    return set(zip(*(axes[a].tolist() for a in AXES), strict=True))


@pytest.fixture(scope="module")
def space():
    return Space(PlanRequest(flops=1e21, priors=TINY), get_law("hy"))


@pytest.mark.parametrize("front", list(FRONTS))
def test_branch_and_bound_front_is_the_enumerations(space, front):
    found, evaluated = exact_front(space, FRONTS[front])
    truth, points = enumerated_front(space, FRONTS[front])
    assert _rows(found) == _rows(truth) and len(_rows(truth)) > 20
    assert points == space.size


def test_front_spans_the_whole_space(space):
    """Both ends of each front are the space's extremes: its best loss, its smallest model, its cheapest token."""
    result = pareto_fronts(space)
    everything = enumerate_space(space, np.inf, keep=space.size)
    values = space.values(everything.pair, everything.combo, everything.j, everything.i)
    ev = space.evaluate_values(values)
    best = solve(space, 0.0)[0]
    memory = [p for p in result.points if "memory" in p.fronts]
    serving = [p for p in result.points if "serving" in p.fronts]
    assert min(p.design.loss for p in memory) == pytest.approx(float(best.loss[0]), abs=1e-12)
    assert min(p.design.loss for p in serving) == pytest.approx(float(best.loss[0]), abs=1e-12)
    assert min(p.design.total_params for p in memory) == int(ev.total[ev.feasible].min())
    from moeplan.planner.lifetime import serve_flops_per_token

    serve = serve_flops_per_token(space, values)
    assert min(p.serve_flops_per_token for p in serving) == pytest.approx(float(serve[ev.feasible].min()), rel=1e-12)
    # along each front the loss falls exactly as the cost rises
    for points, cost in ((memory, lambda p: p.design.total_params), (serving, lambda p: p.serve_flops_per_token)):
        ordered = sorted(points, key=cost)
        losses = [p.design.loss for p in ordered]
        assert all(a > b for a, b in zip(losses, losses[1:], strict=False))


def test_dominance_helpers_against_pairwise_definition():
    rng = np.random.default_rng(0)
    pts = rng.integers(0, 20, size=(300, 2)).astype(float)
    keep = set(non_dominated(pts).tolist())
    for k, p in enumerate(pts):
        beaten = any((q <= p).all() and ((q < p).any() or j < k) for j, q in enumerate(pts) if j != k)
        assert (k not in keep) == beaten
    probes = rng.integers(0, 20, size=(200, 2)).astype(float)
    expected = [(pts <= v).all(axis=1).any() for v in probes]
    assert dominated(probes, pts).tolist() == expected


def test_plan_pareto_records_the_front_as_a_study(cli, tmp_path):
    storage = f"sqlite:///{tmp_path}/front.db"
    small = ["plan", "--flops", "1e20", "--max-d-hidden", "1024", "--max-layers", "16", "--max-experts", "16",
             "--max-top-k", "2", "--max-shared", "1", "--objective", "pareto"]
    args = [*small, "--storage", storage]
    data = cli(*args, "--study", "front", "--json").json()
    points = data["pareto"]["points"]
    assert points and data["pareto"]["study_name"] == "front"
    study = optuna.load_study(study_name="front", storage=storage)
    assert study.metric_names == ["predicted_loss", "total_params", "serve_flops_per_token"]
    assert len(study.trials) == len(points)
    # what optuna-dashboard draws as the Pareto front: every trial is on it
    assert len(study.best_trials) == len(points)
    text = cli(*small, "--storage", ":memory:")
    assert text.code == 0 and "pareto:" in text.out
    again = cli(*args, "--study", "front")  # the same request again: the recorded front is reused
    assert again.code == 0 and len(optuna.load_study(study_name="front", storage=storage).trials) == len(points)
    other = cli(*args, "--study", "front", "--seq-len", "2048")
    assert other.code == 1 and "holds something else" in other.err
    assert len(optuna.load_study(study_name="front", storage=storage).trials) == len(points)  # untouched


def test_pareto_refuses_trials(cli):
    result = cli("plan", "--flops", "1e21", "--objective", "pareto", "--trials", "50", "--storage", ":memory:")
    assert result.code == 2 and "trials is not used" in result.err and len(result.err.strip().splitlines()) == 1
