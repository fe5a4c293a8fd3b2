"""`sweep(request)`: candidates -> information -> greedy and exchange -> `Sweep`; `simulation(...)` tests it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from moeplan import __version__
from moeplan.errors import MoeplanError, UsageError
from moeplan.laws import get_law
from moeplan.laws.model import Law
from moeplan.planner.plan import load_law
from moeplan.planner.request import GPU_PEAK_FLOPS, PlanRequest
from moeplan.planner.space import AXES
from moeplan.sweep import candidates as cand
from moeplan.sweep.design import Criterion, choose, information, jacobian, prior_information
from moeplan.sweep.references import table6_pattern, uniform_grid
from moeplan.sweep.request import SweepRequest
from moeplan.sweep.simulate import perturbed, simulate
from moeplan.sweep.target import Decision, decision, target_request

_FROZEN = ConfigDict(frozen=True)


class SweepRun(BaseModel):
    """One training run: a buildable architecture, its tokens and what the prior law expects of it."""

    model_config = _FROZEN

    run: int
    compute: float = Field(description="training FLOPs of the run (its IsoFLOP budget)")
    tokens: float
    n_layers: int
    d_hidden: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    d_expert: int
    n_experts: int
    top_k: int
    n_shared_experts: int
    total_params: int = Field(description="all parameters")
    N: float = Field(description="[HY] N: non-embedding total")
    N_a: float = Field(description="[HY] N_a: non-embedding active")
    G: float = Field(description="[HY] G = top_k + shared")
    S: float = Field(description="[HY] S = shared / G")
    train_flops_per_token: float
    prior_loss: float = Field(description="the prior law's prediction, for a sanity check of the first runs")


class Predicted(BaseModel):
    """What the delta method predicts of a design: standard deviations after fitting, and the criteria."""

    model_config = _FROZEN

    design: str
    runs: int
    compute: float
    expected_regret: float | None = Field(
        None, description="Σ_j Δ_j Φ(−Δ_j/sd_j) over the plan's competitors at the target, nats (hy form)")
    sd_plan_loss: float | None = Field(None, description="SD of the predicted loss of the plan at the target")
    sd_g_star: float | None = None
    sd_s_star: float | None = None
    log_det_information: float


class Sweep(BaseModel):
    model_config = _FROZEN

    moeplan_version: str
    request: SweepRequest
    law: str
    law_constants: dict[str, float]
    law_constants_source: list[str]
    criterion: str
    budgets: list[float]
    candidates: int = Field(description="(architecture, budget) pairs the design chose from")
    exchanges: int = Field(description="swaps the exchange algorithm made after the greedy start")
    runs: list[SweepRun]
    total_compute: float
    gpu_hours: float | None = Field(None, description="total compute / (peak FLOP/s x MFU) / 3600")
    wall_days: float | None = Field(None, description="gpu_hours / gpus / 24, runs packed perfectly")
    target_plan: dict[str, float] | None = Field(None, description="the prior law's plan at the target (hy form)")
    predicted: list[Predicted] = Field(description="the design, then the references at the same compute")
    notes: list[str]


def prior_law(request: SweepRequest) -> Law:
    law = get_law(request.law)
    cand.check_law(law)
    if request.law_params is not None:
        law = load_law(PlanRequest(flops=request.target_flops, law=request.law, law_params=request.law_params))
    law.values  # noqa: B018 -- raises for a form-only law without --law-params
    return law



@dataclass(frozen=True)
class Designed:
    """Everything a sweep is built from, kept for the simulation and the files."""

    request: SweepRequest
    law: Law
    budgets: np.ndarray
    candidates: cand.Runs
    chosen: cand.Runs
    exchanges: int
    decision: Decision | None
    references: dict[str, cand.Runs]


def design_sweep(request: SweepRequest) -> Designed:
    """Choose the runs: candidates over the IsoFLOP ladder, then greedy and exchange on the criterion."""
    law = prior_law(request)
    if request.runs <= len(law.constants):
        raise UsageError(f"--runs {request.runs} cannot determine the {len(law.constants)} constants of law "
                         f"{law.name!r}: give more runs than constants")
    hy = law.form == "hy"
    if request.criterion == "target" and not hy:
        raise UsageError(f"--criterion target plans at the target with the [HY] form; law {law.name!r} has no "
                         "plan: use --criterion d")
    budgets = cand.budget_ladder(request)
    pool = cand.build_pool(request, law, budgets, request.architectures, request.seed)
    candidates = cand.isoflop_candidates(pool, budgets, request.min_tokens_per_param)
    if len(candidates) < request.runs:
        raise MoeplanError(f"only {len(candidates)} candidate runs fit the budgets {budgets.min():.3g} to "
                           f"{budgets.max():.3g} FLOPs, fewer than --runs {request.runs}: raise --max-run-flops "
                           "or --architectures")
    rows = jacobian(law, candidates.variables()) / request.noise
    made = decision(law, target_request(request)) if hy else None
    criterion = (Criterion("target", made.gaps, made.gap_gradients) if request.criterion == "target"
                 else Criterion("d"))
    picked = choose(candidates, rows, prior_information(law), criterion, request.runs, request.sweep_flops)
    if len(picked.chosen) < request.runs:
        raise MoeplanError(f"only {len(picked.chosen)} of {request.runs} runs fit within {request.sweep_flops:.3g} "
                           "FLOPs: raise --sweep-flops or lower --min-run-flops")
    chosen = candidates.take(picked.chosen)
    order = np.lexsort((chosen.variables()["N_a"], chosen.compute))
    chosen = chosen.take(order)
    total = float(chosen.compute.sum())
    references = {"uniform IsoFLOP grid": uniform_grid(pool, budgets, request.min_tokens_per_param, request.runs,
                                                       total),
                  "[HY] Table 6 pattern": table6_pattern(pool, request.runs, total)}
    return Designed(request, law, budgets, candidates, chosen, picked.exchanges, made, references)


def predicted(designed: Designed, name: str, runs: cand.Runs) -> Predicted:
    """The delta method's predictions for a set of runs."""
    law, request = designed.law, designed.request
    info = information(jacobian(law, runs.variables()) / request.noise, prior_information(law))
    cov = np.linalg.inv(info)
    d = designed.decision

    def sd(g):
        return float(np.sqrt(max(g @ cov @ g, 0.0)))

    return Predicted(
        design=name, runs=len(runs), compute=float(runs.compute.sum()),
        expected_regret=None if d is None else Criterion("target", d.gaps, d.gap_gradients).value(info),
        sd_plan_loss=None if d is None else sd(d.loss_gradient),
        sd_g_star=None if d is None else sd(d.g_star_gradient),
        sd_s_star=None if d is None else sd(d.s_star_gradient),
        log_det_information=float(np.linalg.slogdet(info)[1]),
    )


def sweep_runs(designed: Designed) -> list[SweepRun]:
    r, law, runs = designed.request, designed.law, designed.chosen
    pool = runs.pool
    variables = runs.variables()
    prior = law.evaluate(**variables)
    space = cand.sweep_space(r, law, r.max_run)
    out = []
    for i, k in enumerate(runs.arch):
        arrays = space.architecture_arrays({a: pool.axes[a][k] for a in AXES})
        out.append(SweepRun(
            run=i + 1, compute=float(runs.compute[i]), tokens=float(runs.tokens[i]),
            **{a: int(pool.axes[a][k]) for a in AXES}, n_heads=int(arrays["n_heads"]),
            n_kv_heads=int(arrays["n_kv_heads"]), d_head=space.request.d_head,
            total_params=int(pool.total[k]), N=float(variables["N"][i]), N_a=float(variables["N_a"][i]),
            G=float(variables["G"][i]), S=float(variables["S"][i]),
            train_flops_per_token=float(pool.flops_per_token[k]), prior_loss=float(prior[i])))
    return out


def to_model(designed: Designed) -> Sweep:
    r, law = designed.request, designed.law
    runs = sweep_runs(designed)
    total = float(designed.chosen.compute.sum())
    gpu_hours = wall_days = None
    notes = [f"runs train at least {r.min_tokens_per_param:g} tokens per parameter and are no smaller than the "
             f"law's fitted range (N, N_a); loss noise assumed {r.noise:g} nats per run",
             "information at the prior constants with a weak prior (each constant within 100 % of its value)"]
    if r.gpu is not None:
        gpu_hours = total / (GPU_PEAK_FLOPS[r.gpu.lower()] * r.mfu) / 3600
        notes.append(f"GPU-hours = compute / ({r.gpu} peak {GPU_PEAK_FLOPS[r.gpu.lower()]:.3g} FLOP/s x MFU "
                     f"{r.mfu:g}): no throughput model, small runs usually reach a lower MFU")
        if r.gpus is not None:
            wall_days = gpu_hours / r.gpus / 24
    d = designed.decision
    target_plan = None
    if d is not None:
        p = d.point
        target_plan = {**{k: float(v) for k, v in p.axes.items()}, "loss": p.loss, "N": p.n, "N_a": p.n_a,
                       "tokens": p.tokens, "G": p.g, "S": p.s}
    preds = [predicted(designed, f"designed ({r.criterion})", designed.chosen)]
    preds += [predicted(designed, name, runs_) for name, runs_ in designed.references.items()]
    return Sweep(
        moeplan_version=__version__, request=r, law=law.name, law_constants=law.values,
        law_constants_source=sorted({c.source for c in law.constants}), criterion=r.criterion,
        budgets=[float(b) for b in designed.budgets], candidates=len(designed.candidates),
        exchanges=designed.exchanges, runs=runs, total_compute=total, gpu_hours=gpu_hours, wall_days=wall_days,
        target_plan=target_plan, predicted=preds, notes=notes)


def sweep(request: SweepRequest) -> Sweep:
    """The designed sweep for `request` (docs/sweeps.md)."""
    return to_model(design_sweep(request))


class Spread(BaseModel):
    """5th, 50th and 95th percentiles over the repetitions whose fit succeeded."""

    model_config = _FROZEN

    p5: float
    median: float
    p95: float


def _spread(values) -> Spread | None:
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if len(x) == 0:
        return None
    p5, p50, p95 = np.percentile(x, [5, 50, 95])
    return Spread(p5=p5, median=p50, p95=p95)


class DesignSimulation(BaseModel):
    model_config = _FROZEN

    design: str
    runs: int
    compute: float
    repetitions: int
    failed_fits: int
    regret: Spread | None = Field(description="true regret of the plan at the target, nats")
    mean_regret: float | None
    zero_regret: float = Field(description="share of repetitions that planned the true optimum exactly")
    g_star: Spread | None
    s_star: Spread | None
    constants: dict[str, Spread | None]
    distinct_plans: int
    modal_plan: dict[str, int] | None
    modal_share: float
    plan_active: Spread | None = Field(description="N_a of the planned architectures")
    plan_total: Spread | None = Field(description="N of the planned architectures")


class Simulation(BaseModel):
    model_config = _FROZEN

    repetitions: int
    noise: float
    perturb: float
    truth: dict[str, float]
    true_plan: dict[str, int]
    true_optimum_loss: float
    designs: list[DesignSimulation]
    regret_ratio: float | None = Field(
        None, description="median true regret of the uniform grid / that of the designed sweep")


def _g_s(values: dict[str, float]) -> tuple[float | None, float | None]:
    g = float(np.sqrt(values["f"] / values["e"])) if values["e"] * values["f"] > 0 else None
    s = float(-values["n"] / (2 * values["m"])) if values["m"] != 0 else None
    return g, s


def simulation(designed: Designed, repetitions: int, noise: float | None = None, perturb: float = 0.0,
               workers: int = 2, progress=None) -> Simulation:
    """Simulate the designed sweep and the two references `repetitions` times each."""
    from moeplan.sweep.target import plan_at

    if designed.law.form != "hy":
        raise UsageError(f"--simulate plans at the target with the [HY] form; law {designed.law.name!r} has no plan")
    r = designed.request
    noise = r.noise if noise is None else noise
    truth = perturbed(designed.law, perturb, r.seed)
    designs = {f"designed ({r.criterion})": designed.chosen, **designed.references}
    plan_request = target_request(r)
    outcomes, optimum = simulate({k: v.variables() for k, v in designs.items()}, designed.law, truth, plan_request,
                                 repetitions, noise, r.seed, workers, progress)
    true_plan = plan_at(plan_request, truth).axes
    summaries = []
    for name, runs in designs.items():
        mine = [o for o in outcomes if o.design == name]
        ok = [o for o in mine if o.constants is not None]
        regrets = [o.regret for o in ok]
        plans = Counter(tuple(sorted(o.axes.items())) for o in ok)
        modal, count = plans.most_common(1)[0] if plans else (None, 0)
        gs = [_g_s(o.constants) for o in ok]
        summaries.append(DesignSimulation(
            design=name, runs=len(runs), compute=float(runs.compute.sum()), repetitions=len(mine),
            failed_fits=len(mine) - len(ok), regret=_spread(regrets),
            mean_regret=float(np.mean(regrets)) if regrets else None,
            zero_regret=float(np.mean([x == 0 for x in regrets])) if regrets else 0.0,
            g_star=_spread([g for g, _ in gs]), s_star=_spread([s for _, s in gs]),
            constants={c: _spread([o.constants[c] for o in ok]) for c in designed.law.constant_names},
            distinct_plans=len(plans), modal_plan=dict(modal) if modal else None,
            modal_share=count / len(ok) if ok else 0.0,
            plan_active=_spread([_plan_counts(designed, o.axes)[1] for o in ok]),
            plan_total=_spread([_plan_counts(designed, o.axes)[0] for o in ok])))
    designed_median = summaries[0].regret.median if summaries[0].regret else None
    uniform_median = summaries[1].regret.median if summaries[1].regret else None
    ratio = None
    if designed_median is not None and uniform_median is not None:
        ratio = float("inf") if designed_median == 0 and uniform_median > 0 else (
            1.0 if designed_median == uniform_median == 0 else uniform_median / designed_median)
    return Simulation(repetitions=repetitions, noise=noise, perturb=perturb, truth=truth.values, true_plan=true_plan,
                      true_optimum_loss=optimum, designs=summaries, regret_ratio=ratio)


def _plan_counts(designed: Designed, axes: dict[str, int]) -> tuple[float, float]:
    from moeplan.planner.space import Space

    ev = Space(target_request(designed.request), designed.law).evaluate_values({k: np.asarray(v) for k, v in axes.items()})
    return float(ev.n), float(ev.n_a)


class SweepWithSimulation(BaseModel):
    """`moeplan sweep --simulate K --json`: the sweep and its simulation."""

    model_config = _FROZEN

    sweep: Sweep
    simulation: Simulation
