"""moeplan sweep: designed runs are buildable and export, the criteria are what they claim, the loop
sweep -> losses -> fit -> plan closes, and bad input gets one line."""

from __future__ import annotations

import csv
import json
import os
import stat
import warnings

import numpy as np
import pytest

from moeplan.flops.count import count
from moeplan.laws import get_law, optima
from moeplan.laws.runs import load_runs
from moeplan.sweep import SweepRequest, design_sweep, simulation, to_model
from moeplan.sweep.design import Criterion
from moeplan.sweep.files import render_csv, run_architecture, write_sweep
from moeplan.sweep.references import table6_rows
from moeplan.sweep.target import plan_at, target_request, true_loss
from tests.conftest import DATA

HY = get_law("hy")
SMALL = dict(target_flops=1e23, sweep_flops=1e21, max_run_flops=1e19, runs=24, architectures=1200)


@pytest.fixture(scope="module")
def designed():
    return design_sweep(SweepRequest(**SMALL))


@pytest.fixture(scope="module")
def model(designed):
    return to_model(designed)


def test_runs_fit_the_budget_and_the_floor(designed, model):
    r = model.request
    assert len(model.runs) == r.runs
    assert model.total_compute <= r.sweep_flops
    assert len({(x.n_layers, x.d_hidden, x.d_expert, x.n_experts, x.top_k, x.n_shared_experts, x.compute)
                for x in model.runs}) == r.runs  # no run twice
    for run in model.runs:
        assert run.tokens * run.train_flops_per_token == pytest.approx(run.compute, rel=1e-12)
        assert run.tokens >= r.min_tokens_per_param * run.total_params
        assert r.min_run * (1 - 1e-12) <= run.compute <= r.max_run * (1 + 1e-12)
        assert run.N_a >= 30e6 and run.N >= 133e6  # [HY]'s fitted range from below (science.md section 3)
    for ref in designed.references.values():  # the references spend exactly the same compute
        assert len(ref) == r.runs and ref.compute.sum() == pytest.approx(model.total_compute, rel=1e-9)


def test_every_run_is_buildable_and_its_counts_are_the_counters(model):
    for run in model.runs:
        c = count(run_architecture(model, run))  # the Architecture validator and the layer-wise counter accept it
        assert c.total.all == run.total_params
        assert (c.total.without_embeddings, c.active.without_embeddings) == (run.N, run.N_a)
        assert c.train_flops_per_token == pytest.approx(run.train_flops_per_token, rel=1e-12)
        assert run.G == c.architecture.activated_experts and run.S == pytest.approx(c.architecture.shared_ratio)


def test_csv_is_fits_format_and_reads_back_through_the_counter(model, tmp_path):
    """sweep.csv with losses filled in loads in `moeplan fit`, by law columns and by architecture alone."""
    rows = list(csv.DictReader(render_csv(model).splitlines()))
    assert [r["loss"] for r in rows] == [""] * len(model.runs)
    for r in rows:
        r["loss"] = "3.0"
    by_law, by_arch = tmp_path / "law.csv", tmp_path / "arch.csv"
    for path, drop in ((by_law, set()), (by_arch, {"N", "N_a", "D", "G", "S"})):
        with open(path, "w", newline="") as f:
            cols = [c for c in rows[0] if c not in drop]
            w = csv.DictWriter(f, cols, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
    a, _ = load_runs(by_law, HY)
    b, _ = load_runs(by_arch, HY)
    for v in ("N", "N_a", "D", "G", "S"):
        np.testing.assert_allclose(a.variables[v], b.variables[v], rtol=1e-12)
        np.testing.assert_allclose(a.variables[v], [getattr(r, "tokens" if v == "D" else v) for r in model.runs])


def _instantiate_all(model, folder, which):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tests.test_transformers import checkpoint_tensors

    transformers.utils.logging.set_verbosity_error()
    written = write_sweep(model, folder)
    configs = sorted((folder / "configs").glob("run-*/config.json"))
    assert len(configs) == len(model.runs) and all(p in written for p in configs)
    for k in which:
        run, path = model.runs[k], configs[k]
        cfg = json.loads(path.read_text())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config = transformers.AutoConfig.for_model(**cfg)
            with torch.device("meta"):  # no weights, no download
                hf = transformers.AutoModelForCausalLM.from_config(config)
        assert checkpoint_tensors(hf) == run.total_params, path  # the router correction bias is a buffer


def test_runs_export_to_configs_transformers_instantiates(model, tmp_path):
    """Fast tier: the smallest, the largest, and one with shared experts (each family the sweep uses)."""
    sizes = [r.total_params for r in model.runs]
    shared = [i for i, r in enumerate(model.runs) if r.n_shared_experts] + [0]
    plain = [i for i, r in enumerate(model.runs) if not r.n_shared_experts] + [0]
    _instantiate_all(model, tmp_path / "sweep", sorted({int(np.argmin(sizes)), int(np.argmax(sizes)), shared[0],
                                                        plain[0]}))


@pytest.mark.slow
def test_every_run_exports_to_a_config_transformers_instantiates(model, tmp_path):
    _instantiate_all(model, tmp_path / "sweep", range(len(model.runs)))


def test_sherman_morrison_gains_equal_the_criterion_difference():
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(40, 5))
    info = np.eye(5) * 0.3 + rows[:10].T @ rows[:10]
    gaps, gradients = rng.uniform(1e-4, 1e-2, 7), rng.normal(size=(7, 5)) * 1e-2
    for crit in (Criterion("d"), Criterion("target", gaps, gradients)):
        gains = crit.gains(np.linalg.inv(info), rows)
        brute = [crit.value(info) - crit.value(info + np.outer(x, x)) for x in rows]
        np.testing.assert_allclose(gains, brute, rtol=1e-9, atol=1e-12)


def test_decision_gradients_are_hys_closed_forms(designed):
    """∂G*/∂θ and ∂S*/∂θ against [HY] Appendix D/E: G* = sqrt(f/e), S* = -n/(2m)."""
    d, names, v = designed.decision, list(HY.constant_names), HY.values
    g, s = optima.optimal_experts(HY), optima.optimal_shared_ratio(HY)
    expect_g = {"e": -g / (2 * v["e"]), "f": g / (2 * v["f"])}
    expect_s = {"n": -1 / (2 * v["m"]), "m": v["n"] / (2 * v["m"] ** 2)}
    for name, grad in zip(names, d.g_star_gradient, strict=True):
        assert grad == pytest.approx(expect_g.get(name, 0.0), rel=1e-6, abs=1e-9), name
    for name, grad in zip(names, d.s_star_gradient, strict=True):
        assert grad == pytest.approx(expect_s.get(name, 0.0), rel=1e-6, abs=1e-9), name


def test_gap_gradients_match_gaps_recomputed_with_nudged_constants(designed):
    """∂Δ_j/∂θ from sympy's Jacobian against gaps the planner's space computes with nudged constants."""
    d = designed.decision
    request = target_request(designed.request)
    names = list(HY.constant_names)
    assert np.all(d.gaps >= 0) and len(d.gaps) >= 10
    for name in ("f", "beta"):
        j = int(np.argmax(np.abs(d.gap_gradients[:, names.index(name)])))  # the competitor it moves most
        step = 1e-6 * HY.values[name]
        gap = [true_loss(request, law, d.competitors[j]) - true_loss(request, law, d.point.axes)
               for law in (HY.with_values({name: HY.values[name] + s}, source="nudged") for s in (step, -step))]
        assert d.gap_gradients[j, names.index(name)] == pytest.approx((gap[0] - gap[1]) / (2 * step), rel=1e-4), name


def test_the_designed_sweep_is_predicted_better_than_both_references(model):
    designed, uniform, table6 = model.predicted
    assert designed.expected_regret < uniform.expected_regret and designed.expected_regret < table6.expected_regret
    d_sweep = to_model(design_sweep(SweepRequest(**SMALL, criterion="d")))
    assert d_sweep.predicted[0].log_det_information >= designed.log_det_information  # D maximises log det M


def test_table6_bundle_is_the_fixture():
    rows = list(csv.DictReader(open(DATA / "hy_table6_configs.csv")))
    bundled = table6_rows()
    assert len(rows) == len(bundled["N"]) == 446
    np.testing.assert_array_equal(bundled["N_a"], [float(r["N_a"]) for r in rows])


def test_loop_sweep_losses_fit_plan(cli, tmp_path):
    """The user's loop: sweep, train (synthetic: the published law + noise 0.005), fit, plan at the target."""
    out = tmp_path / "sweep"
    result = cli("sweep", "--target-flops", "1e23", "--sweep-flops", "1e21", "--max-run-flops", "1e19",
                 "--runs", "30", "--architectures", "1200", "--out", out)
    assert result.code == 0, result.err
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((out / "sweep.csv").stat().st_mode) == 0o666 & ~mask  # files honour the umask
    rows = list(csv.DictReader(open(out / "sweep.csv")))
    noise = np.random.default_rng(3).normal(0, 0.005, len(rows))
    for r, e in zip(rows, noise, strict=True):
        r["loss"] = repr(float(HY.evaluate(**{v: float(r[v]) for v in ("N", "N_a", "D", "G", "S")}) + e))
    with open(out / "sweep.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    fitted = tmp_path / "fitted.json"
    result = cli("fit", out / "sweep.csv", "--law", "hy", "--out", fitted, "--starts", "16", "--json")
    assert result.code == 0, result.err
    derived = {d["name"]: d["value"] for d in result.json()["derived"]}
    assert derived["G*"] == pytest.approx(optima.optimal_experts(HY), rel=0.1)
    assert derived["S*"] == pytest.approx(optima.optimal_shared_ratio(HY), rel=0.1)
    result = cli("plan", "--flops", "1e23", "--law-params", fitted, "--json", "--storage",
                 f"sqlite:///{tmp_path / 'plans.db'}")
    assert result.code == 0, result.err
    arch = result.json()["architecture"]
    request = target_request(SweepRequest(**SMALL))
    regret = true_loss(request, HY, {k: arch[k] for k in ("n_layers", "d_hidden", "d_expert", "n_experts", "top_k",
                                                          "n_shared_experts")}) - plan_at(request, HY).loss
    assert 0 <= regret < 1e-3  # the planned model trains to within 0.001 nats of the true optimum


def test_simulation_with_almost_no_noise_plans_the_true_optimum(designed, tmp_path):
    pytest.importorskip("matplotlib")
    from moeplan.plots import save
    from moeplan.sweep.figure import comparison_figure

    sim = simulation(designed, 1, noise=1e-7, workers=1)
    assert [d.design for d in sim.designs] == ["designed (target)", "uniform IsoFLOP grid", "[HY] Table 6 pattern"]
    top = sim.designs[0]
    assert top.failed_fits == 0 and top.regret.median == 0.0 and top.modal_plan == sim.true_plan
    assert top.g_star.median == pytest.approx(optima.optimal_experts(HY), rel=1e-3)
    assert top.regrets == [0.0] and all(len(d.regrets) == 1 for d in sim.designs)
    png = save(comparison_figure(designed, sim), tmp_path / "comparison.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


BAD = [
    (("--target-flops", "-1e23", "--sweep-flops", "1e21"), 2, "target_flops: Input should be greater than 0"),
    (("--target-flops", "1e23", "--sweep-flops", "-1"), 2, "sweep_flops: Input should be greater than 0"),
    (("--target-flops", "1e21", "--sweep-flops", "1e22"), 2, "is not below the target"),
    (("--target-flops", "1e23", "--sweep-flops", "1e21", "--runs", "12"), 2, "cannot determine the 12 constants"),
    (("--target-flops", "1e23", "--sweep-flops", "1e21", "--law", "nope"), 2, "unknown law 'nope'"),
    (("--target-flops", "1e23", "--sweep-flops", "1e21", "--law", "krajewski"), 1, "cannot be designed for"),
    (("--target-flops", "1e23", "--sweep-flops", "1e21", "--law", "chinchilla"), 2, "use --criterion d"),
    (("--target-flops", "1e23", "--sweep-flops", "1e21", "--law", "hy-nd", "--criterion", "d"), 1, "fit it first"),
    (("--target-flops", "1e23", "--sweep-flops", "1e21", "--max-run-flops", "1e22"), 2, "exceeds the sweep's"),
    (("--target-flops", "1e23", "--sweep-flops", "1e21", "--runs", "2000"), 2, "exceed the sweep's compute"),
    (("--target-flops", "1e23", "--sweep-flops", "1e21", "--gpus", "8"), 2, "gpus needs gpu"),
    (("--target-flops", "1e23", "--sweep-flops", "1e21", "--gpu", "tpu9"), 2, "unknown gpu 'tpu9'"),
    (("--target-flops", "1e23", "--sweep-flops", "1e21", "--law-params", "nope.json"), 2, "no such file"),
    (("--target-flops", "1e23", "--sweep-flops", "1e17"), 1, "no buildable architecture"),
    (("--target-flops", "1e23", "--sweep-flops", "1e21", "--plot", "fig.txt"), 2, "plots are written as .png or .svg"),
    (("--target-flops", "1e23", "--sweep-flops", "1e21", "--criterion", "e"), 2, "--criterion"),
]


@pytest.mark.parametrize(("args", "code", "message"), BAD, ids=[m for _, _, m in BAD])
def test_bad_input_one_line_nothing_written(cli, tmp_path, args, code, message):
    out = tmp_path / "out"
    result = cli("sweep", *args, "--out", out)
    assert result.code == code, result.err
    assert message in result.err and len(result.err.strip().splitlines()) == 1, result.err
    assert not out.exists()


def test_out_must_be_a_folder(cli, tmp_path):
    out = tmp_path / "file"
    out.write_text("mine")
    result = cli("sweep", "--target-flops", "1e23", "--sweep-flops", "1e21", "--max-run-flops", "1e19", "--runs", "13",
                 "--architectures", "600", "--out", out)
    assert result.code == 1 and "a file, not a folder" in result.err and out.read_text() == "mine"


def test_json_is_exactly_the_model_and_law_params_are_the_prior(cli, tmp_path):
    prior = tmp_path / "fitted.json"
    prior.write_text(json.dumps({"law": "hy", "constants": HY.values | {"f": 1.5 * HY.values["f"]},
                                 "source": "a fit of mine"}))
    result = cli("sweep", "--target-flops", "1e23", "--sweep-flops", "1e21", "--max-run-flops", "1e19", "--runs", "13",
                 "--architectures", "600", "--gpu", "h100", "--gpus", "64", "--law-params", prior, "--json")
    assert result.code == 0 and result.err == ""
    data = result.json()
    assert data["law_constants"]["f"] == 1.5 * HY.values["f"] and "a fit of mine" in data["law_constants_source"]
    total = sum(r["compute"] for r in data["runs"])
    assert data["total_compute"] == pytest.approx(total)
    assert data["gpu_hours"] == pytest.approx(total / (989e12 * 0.4) / 3600)  # H100 SXM dense bf16 peak
    assert data["wall_days"] == pytest.approx(data["gpu_hours"] / 64 / 24)


def test_perturbed_truth_is_log_normal_around_the_prior():
    from moeplan.sweep.simulate import perturbed

    assert perturbed(HY, 0.0, 1) is HY
    a, b = perturbed(HY, 0.05, 1), perturbed(HY, 0.05, 1)
    assert a.values == b.values  # a seed gives one truth
    z = np.log([a.values[k] / v for k, v in HY.values.items()]) / 0.05
    assert np.all(np.abs(z) < 5) and np.any(z != 0)


@pytest.mark.slow
def test_designed_sweep_halves_the_uniform_grids_median_regret():
    """Must show: at equal compute and noise 0.005, median true regret at 1e23 at most half the uniform grid's."""
    d = design_sweep(SweepRequest(target_flops=1e23, sweep_flops=1e21))
    sim = simulation(d, 50)
    assert sim.designs[0].regret.median <= 0.5 * sim.designs[1].regret.median
