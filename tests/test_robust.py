"""Robust plans: each law's optimum, regrets and the minimax-regret design, exact against enumeration."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moeplan.errors import MoeplanError, UsageError
from moeplan.laws import get_law
from moeplan.planner import PlanRequest, Priors
from moeplan.planner.robust import plannable_space, robust_plan
from moeplan.planner.solve import enumerate_space
from moeplan.planner.space import Space

HY = get_law("hy")
TINY = dict(max_d_hidden=2048, max_layers=32, max_experts=32, max_top_k=6, max_shared=2)
# Hand-made perturbations of [HY]'s Table 2 constants: G* = sqrt(f/e) moves from 6.78 to 4.9 and 9.6
FEWER_EXPERTS = {"e": HY.values["e"] * 1.6, "f": HY.values["f"] * 0.9}
MORE_EXPERTS = {"e": HY.values["e"] * 0.6, "f": HY.values["f"] * 1.2}


def perturbed(values: dict, tag: str):
    return HY.with_values(values, source=f"[HY] Table 2, perturbed ({tag})")


def brute_force(request, laws):
    """Regret of every feasible point of the space under every law, by enumeration."""
    spaces = [Space(request, law) for law in laws]
    everything = enumerate_space(spaces[0], np.inf, keep=spaces[0].size)
    values = spaces[0].values(everything.pair, everything.combo, everything.j, everything.i)
    losses = np.stack([s.evaluate_values(values).loss for s in spaces])
    return values, losses - losses.min(axis=1, keepdims=True)


def test_minimax_regret_is_the_enumerations_minimax():
    request = PlanRequest(flops=1e21, priors=Priors(**TINY))
    laws = [("hy", HY), ("fewer", perturbed(FEWER_EXPERTS, "fewer")), ("more", perturbed(MORE_EXPERTS, "more"))]
    result = robust_plan(request, laws)
    values, regret = brute_force(request, [law for _, law in laws])
    worst = regret.max(axis=0)
    assert result.exact
    assert result.minimax.worst_regret == pytest.approx(worst.min(), abs=1e-12)
    # each law's optimum has regret 0 under its own law; the table's entries are the enumeration's
    for row in result.optima:
        k = np.flatnonzero(np.all([values[a] == row.design.axes[a] for a in values], axis=0))[0]
        assert row.regret == pytest.approx(regret[:, k].tolist(), abs=1e-12)
    assert [min(r.regret[m] for r in result.optima) for m in range(3)] == [0.0, 0.0, 0.0]
    assert result.minimax.worst_regret <= min(r.worst_regret for r in result.optima)
    assert "disagree" in result.disagreement


def test_hedging_between_two_laws_beats_both_optima():
    """Two perturbed laws pulling G* apart: the minimax design is strictly safer than either law's optimum."""
    request = PlanRequest(flops=1e21, priors=Priors(**TINY))
    laws = [("fewer", perturbed(FEWER_EXPERTS, "fewer")), ("more", perturbed(MORE_EXPERTS, "more"))]
    result = robust_plan(request, laws)
    _, regret = brute_force(request, [law for _, law in laws])
    assert result.minimax.worst_regret == pytest.approx(regret.max(axis=0).min(), abs=1e-12)
    assert result.minimax.worst_regret < min(r.worst_regret for r in result.optima)
    g = [r.design.top_k + r.design.n_shared_experts for r in result.optima]
    assert min(g) <= result.minimax.design.top_k + result.minimax.design.n_shared_experts <= max(g)


def test_identical_laws_agree():
    request = PlanRequest(flops=1e21, priors=Priors(**TINY))
    result = robust_plan(request, [("hy", HY), ("copy", HY.with_values({}, source="same"))])
    assert result.minimax.worst_regret == 0 and len(result.optima) == 1
    assert "agree" in result.disagreement


def _fit_file(path, samples):
    path.write_text(json.dumps({"law": "hy", "constants": HY.values, "source": "[HY] Table 2 with hand-made samples",
                                "bootstrap": samples}))
    return path


def test_robust_over_bootstrap_samples_cli(cli, tmp_path):
    samples = [HY.values | FEWER_EXPERTS, HY.values | MORE_EXPERTS, HY.values | {"alpha": HY.values["alpha"] * 1.02}]
    fit = _fit_file(tmp_path / "fitted.json", samples)
    args = ["plan", "--flops", "1e21", "--max-d-hidden", "2048", "--max-layers", "32", "--max-experts", "32",
            "--max-top-k", "6", "--max-shared", "2", "--law-params", fit, "--robust", "--storage", ":memory:"]
    data = cli(*args, "--json").json()
    robust = data["robust"]
    assert robust["laws"] == ["fit", "bootstrap 1", "bootstrap 2", "bootstrap 3"]
    assert robust["minimax"]["worst_regret"] <= robust["point_estimate"]["worst_regret"]
    assert robust["point_estimate"]["design"]["loss"] == pytest.approx(data["law"]["loss"])
    text = cli(*args)
    assert text.code == 0, text.err
    assert "minimax regret" in text.out and "point estimate's worst case" in text.out


def test_laws_option_prints_the_disagreement_table(cli, tmp_path):
    other = tmp_path / "hy-fewer.json"
    other.write_text(json.dumps({"law": "hy", "constants": HY.values | FEWER_EXPERTS, "source": "perturbed"}))
    args = ["plan", "--flops", "1e21", "--max-d-hidden", "2048", "--max-experts", "32", "--laws", f"hy,{other}",
            "--storage", ":memory:"]
    text = cli(*args)
    assert text.code == 0, text.err
    assert "disagreement" in text.out and "hy-fewer" in text.out
    data = cli(*args, "--json").json()
    assert data["robust"]["laws"] == ["hy", "hy-fewer"]
    assert all(len(row["regret"]) == 2 for row in data["robust"]["optima"])


def _ludziejewski_or_skip():
    try:
        law = get_law("ludziejewski")
        plannable_space(PlanRequest(flops=1e22, priors=Priors(**TINY)), "ludziejewski", law)
    except (UsageError, MoeplanError) as err:
        pytest.skip(f"the planner does not accept ludziejewski yet: {err}")


SMALL_FLAGS = ["--max-d-hidden", "2048", "--max-layers", "32", "--max-experts", "32", "--max-top-k", "6",
               "--max-shared", "2"]


@pytest.mark.parametrize("space", [
    pytest.param(SMALL_FLAGS, id="small-space"),
    pytest.param([], id="default-space", marks=pytest.mark.slow),  # enumerates if the law has no box bound
])
def test_hy_against_ludziejewski(cli, space):
    _ludziejewski_or_skip()
    args = ["plan", "--flops", "1e22", "--laws", "hy,ludziejewski", "--storage", ":memory:", *space]
    data = cli(*args, "--json").json()
    robust = data["robust"]
    assert robust["laws"] == ["hy", "ludziejewski"]
    assert robust["minimax"]["worst_regret"] <= min(r["worst_regret"] for r in robust["optima"])
    text = cli(*args)
    assert "disagreement" in text.out and "ludziejewski" in text.out


@pytest.mark.parametrize("args, code, message", [
    (["--robust"], 1, "--robust needs --law-params with bootstrap samples"),
    (["--laws", "hy"], 1, "at least two laws"),
    (["--laws", "hy,hy"], 1, "names a law twice"),
    (["--laws", "hy,nosuchlaw"], 2, "unknown law 'nosuchlaw'"),
    (["--laws", ","], 2, "--laws takes"),
])
def test_bad_robust_requests(cli, args, code, message):
    result = cli("plan", "--flops", "1e21", "--max-d-hidden", "2048", "--storage", ":memory:", *args)
    assert result.code == code and message in result.err and len(result.err.strip().splitlines()) == 1


def test_a_law_the_planner_cannot_use_is_refused_in_one_line(cli):
    result = cli("plan", "--flops", "1e21", "--max-d-hidden", "2048", "--storage", ":memory:", "--laws", "hy,hol")
    assert result.code == 1 and "hol" in result.err and len(result.err.strip().splitlines()) == 1


@pytest.mark.slow
def test_robust_over_a_real_fits_bootstrap(cli, tmp_path):
    """`moeplan fit --bootstrap` on noisy runs at [HY]'s design points, then `plan --robust` over its samples."""
    from tests.test_fit import synthetic, write_runs

    runs, fit = tmp_path / "runs.csv", tmp_path / "fitted.json"
    write_runs(runs, synthetic(0.005, seed=3))
    assert cli("fit", runs, "--law", "hy", "--bootstrap", "8", "--starts", "16", "--out", fit).code == 0
    data = cli("plan", "--flops", "1e22", "--law-params", fit, "--robust", "--storage", ":memory:", "--json").json()
    robust = data["robust"]
    assert len(robust["laws"]) == 9
    assert 0 <= robust["minimax"]["worst_regret"] <= robust["point_estimate"]["worst_regret"]
