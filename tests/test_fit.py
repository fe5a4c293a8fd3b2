"""The fitter: recovers the [HY] law from synthetic runs at its published design points, refuses bad data."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from moeplan.laws import _generated, get_law
from moeplan.laws.fit import Runs, fit_law, huber_objective, mean_absolute_error
from moeplan.laws.fit_report import run_fit
from tests.conftest import DATA

HY = get_law("hy")
ROWS = list(csv.DictReader(open(DATA / "hy_table6_configs.csv")))
DESIGN = {k: np.array([float(r[k]) for r in ROWS]) for k in ("N", "N_a", "D", "G", "S")}
SPLIT = np.array([r["split"] for r in ROWS])


def synthetic(sigma: float, seed: int = 0) -> Runs:
    """Losses at [HY]'s 446 design points (Table 6) from the published law, plus Gaussian noise."""
    noise = np.random.default_rng(seed).normal(0, sigma, len(ROWS))
    return Runs(DESIGN, HY.evaluate(**DESIGN) + noise)


def write_runs(path, runs: Runs, split=SPLIT):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*runs.variables, "split", "loss"])
        for i in range(len(runs)):
            w.writerow([*(runs.variables[k][i] for k in runs.variables), split[i], runs.loss[i]])


def test_noise_free_runs_recover_every_constant():
    runs = synthetic(0.0)
    fit = fit_law(HY, runs.take(np.flatnonzero(SPLIT == "fit")), huber_objective(1e-3))
    for name, value in HY.values.items():
        assert fit.values[name] == pytest.approx(value, rel=1e-3), name


def test_noisy_runs_recover_the_optima_and_predict_held_out_runs(tmp_path):
    path = tmp_path / "runs.csv"
    write_runs(path, synthetic(0.005, seed=1))
    report = run_fit(path, "hy", holdout_column="split")
    derived = {d.name: d.value for d in report.derived}
    assert derived["G*"] == pytest.approx(6.7778, rel=0.05)
    assert derived["S*"] == pytest.approx(0.31485, rel=0.05)
    assert report.n_holdout == int((SPLIT == "validation").sum()) and report.holdout_mae < 0.007


def test_jacobian_matches_finite_differences():
    jacobian = _generated.FITTING["hy"][0]
    x = {k: v[:50] for k, v in DESIGN.items()}
    values = HY.values
    cols = jacobian(*(x[v] for v in jacobian.variables), *(values[c] for c in jacobian.constants))
    for name, col in zip(HY.constant_names, cols, strict=True):
        step = 1e-6 * max(abs(values[name]), 1e-3)
        up = HY.with_values({name: values[name] + step}, "fd").evaluate(**x)
        down = HY.with_values({name: values[name] - step}, "fd").evaluate(**x)
        assert np.allclose(np.broadcast_to(col, up.shape), (up - down) / (2 * step), rtol=1e-5, atol=1e-9), name


def test_chinchilla_fit_on_external_runs(tmp_path):
    """Gadre et al. 2024 (MIT): a [CHIN]-form fit per training set, held-out error as in docs/fitting.md."""
    report = run_fit(DATA / "gadre2024_overtraining_runs.csv", "chinchilla", holdout_fraction=0.2,
                     columns={"N": "params", "D": "tokens", "loss": "loss_paloma_falcon_refinedweb"},
                     where={"dataset": "rw_original"})
    assert report.n_fit + report.n_holdout == 35
    assert report.holdout_mae == pytest.approx(0.0503, abs=5e-4)
    values = {c.name: c.value for c in report.constants}
    assert 1.0 < values["E"] < 2.5 and 0 < values["alpha"] < 1 and 0 < values["beta"] < 1


def test_bootstrap_intervals_and_plan_with_fitted_constants(tmp_path, cli):
    runs_path, out = tmp_path / "runs.csv", tmp_path / "fitted.json"
    write_runs(runs_path, synthetic(0.005, seed=2))
    result = cli("fit", runs_path, "--law", "hy", "--holdout-column", "split", "--bootstrap", "8", "--out", out,
                 "--starts", "16", "--json")
    assert result.code == 0, result.err
    report = result.json()
    for c in report["constants"]:
        assert c["low"] <= c["high"]
    saved = json.loads(out.read_text())
    assert saved["law"] == "hy" and len(saved["bootstrap"]) == 8
    planned = cli("plan", "--flops", "1e21", "--max-d-hidden", "2048", "--max-experts", "32", "--law-params", out,
                  "--storage", ":memory:", "--json").json()
    assert planned["law"]["constants"] == saved["constants"]
    assert planned["law"]["constants_source"] == [saved["source"]]
    low, high = planned["law"]["loss_interval"]
    assert low <= high


def test_comparison_ranks_the_joint_law_first(tmp_path):
    path = tmp_path / "runs.csv"
    write_runs(path, synthetic(0.005, seed=3))
    report = run_fit(path, "hy", holdout_column="split", compare=True, starts=16)
    scored = {c.law: c.holdout_mae for c in report.comparison if c.holdout_mae is not None}
    assert min(scored, key=scored.get) == "hy"
    assert {"hy", "hy-ndag", "hy-nda", "hy-nd", "chinchilla"} <= set(scored)


BAD = [
    ("N,D,loss\n1e9,1e10,2.5\n", "missing column(s) N_a, G, S for law 'hy'"),
    ("N,N_a,D,G,S,loss\n1e9,1e8,1e10,8,0.2,nan\n", "row 2: column 'loss' is nan"),
    ("N,N_a,D,G,S,loss\n1e9,1e8,1e10,8,0.2,-2\n", "row 2: loss must be positive, got -2.0"),
    ("N,N_a,D,G,S,loss\n-1e9,1e8,1e10,8,0.2,2.5\n", "row 2: N must be positive, got -1e+09"),
    ("N,N_a,D,G,S,loss\n1e9,big,1e10,8,0.2,2.5\n", "row 2: column 'N_a': 'big' is not a number"),
    ("N,N_a,D,G,S,loss\n" + "1e9,1e8,1e10,8,0.2,2.5\n" * 5, "5 runs cannot determine the 12 constants"),
    ("N,N_a,D,G,S,loss\n", "no runs"),
]


@pytest.mark.parametrize(("content", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_runs_one_line_exit_1_nothing_written(cli, tmp_path, content, message):
    path, out = tmp_path / "runs.csv", tmp_path / "fitted.json"
    path.write_text(content)
    result = cli("fit", path, "--law", "hy", "--out", out)
    assert result.code == 1, result.err
    assert message in result.err and len(result.err.strip().splitlines()) == 1
    assert not out.exists() and list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--law", "ling"), 1, "predicts leverage, not loss"),
        (("--law", "nope"), 2, "unknown law 'nope'"),
        (("--columns", "N"), 2, "--columns takes NAME=VALUE pairs"),
        (("--holdout-column", "split", "--holdout-fraction", "0.2"), 2, "not both"),
        (("--holdout-column", "nosuch"), 1, "no holdout column 'nosuch'"),
        (("--where", "dataset=x"), 1, "no column 'dataset'"),
    ],
)
def test_bad_fit_options(cli, tmp_path, args, code, message):
    path = tmp_path / "runs.csv"
    write_runs(path, synthetic(0.0).take(np.arange(30)), SPLIT[:30])
    result = cli("fit", path, *args)
    assert result.code == code, result.err
    assert message in result.err and len(result.err.strip().splitlines()) == 1


def test_missing_runs_file_is_a_usage_error(cli, tmp_path):
    result = cli("fit", tmp_path / "nope.csv")
    assert result.code == 2 and "no such file" in result.err


def test_mean_absolute_error_is_zero_at_the_truth():
    runs = synthetic(0.0)
    assert mean_absolute_error(HY, runs, HY.values) < 1e-12


def fixed_experts_runs(sigma: float = 0.003, seed: int = 5) -> Runs:
    """[HY]'s design points with every run at top-8 and no shared expert (G = 8, S = 0), as third-party MoE
    runs usually are: the law's G and S terms cannot be identified from them."""
    x = dict(DESIGN, G=np.full(len(ROWS), 8.0), S=np.zeros(len(ROWS)))
    noise = np.random.default_rng(seed).normal(0, sigma, len(ROWS))
    return Runs(x, HY.evaluate(**x) + noise)


def test_a_fit_where_g_and_s_never_vary_reports_no_optimum_in_them_and_says_why(tmp_path, cli):
    path, out = tmp_path / "runs.csv", tmp_path / "fit.json"
    write_runs(path, fixed_experts_runs())
    report = run_fit(path, "hy", starts=16, out=out)
    assert report.derived == []  # neither G* nor S*
    assert "S is constant (0 in all 446 runs): its effect is not identified; no S* reported" in report.diagnostics
    assert "G is constant (8 in all 446 runs): its effect is not identified; no G* reported" in report.diagnostics
    saved = json.loads(out.read_text())
    assert saved["ranges"]["S"] == [0.0, 0.0] and saved["ranges"]["G"] == [8.0, 8.0]
    assert saved["ranges"]["N"] == [float(DESIGN["N"].min()), float(DESIGN["N"].max())]
    # physical signs by default: epsilon >= 0 and the exponents > 0, whatever the data
    values = {c.name: c.value for c in report.constants}
    assert values["epsilon"] >= 0 and values["alpha"] > 0 and values["beta"] > 0

    shown = cli("fit", str(path), "--starts", "8")
    assert shown.code == 0
    assert not [line for line in shown.out.splitlines() if line.strip().startswith(("S*", "G*"))]
    assert "no S* reported" in shown.out

    planned = cli("plan", "--flops", "1e21", "--max-d-hidden", "2048", "--max-experts", "32", "--law-params", out,
                  "--storage", ":memory:", "--json").json()
    assert planned["law"]["domain"] == f"the ranges of the fit in {out}"
    outside = {e["variable"]: e for e in planned["law"]["extrapolation"]}
    g, s = planned["law"]["inputs"]["G"], planned["law"]["inputs"]["S"]
    assert ("G" in outside) == (g != 8.0) and ("S" in outside) == (s != 0.0)
    assert {"G", "S"} <= set(outside) | {w.split(":")[0] for w in planned["law"]["warnings"]}


def test_collinear_variables_are_named():
    x = dict(DESIGN)
    x["N_a"] = x["N"] * 0.2 * (1 + np.random.default_rng(0).normal(0, 1e-4, len(ROWS)))  # N_a/N fixed
    runs = Runs(x, HY.evaluate(**x))
    from moeplan.laws.fit import collinear_pairs

    pairs = collinear_pairs(runs)
    assert [(a, b) for a, b, _ in pairs] == [("N", "N_a")] and pairs[0][2] > 1000
