"""Test a design before anyone trains it: synthetic losses from a true law, the fitter, the planner, regret;
then the spread of all of it over the repetitions (`simulation`, the `Simulation` model).

One repetition: loss_i = L_true(x_i) + N(0, noise²) for every run, `fit_law` (moeplan fit's fitter: log-
Huber δ = 1e-3, variable projection from one start at the prior's nonlinear constants, analytic Jacobian),
then the exact plan at the target with the fitted constants. Its true regret is the true law's loss of the
planned architecture minus the true law's optimum over the same buildable space.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from moeplan.errors import MoeplanError, UsageError
from moeplan.laws import _generated, get_law
from moeplan.laws.fit import Runs as FitRuns
from moeplan.laws.fit import fit_law, huber_objective
from moeplan.laws.model import Law
from moeplan.planner.request import PlanRequest
from moeplan.planner.space import Space
from moeplan.sweep.sweep import Designed, Sweep
from moeplan.sweep.target import plan_at, target_request, true_loss

HUBER_DELTA = 1e-3  # moeplan fit's default


@dataclass(frozen=True)
class Job:
    design: str
    repetition: int
    law: str
    prior: dict[str, float]
    truth: dict[str, float]
    variables: dict[str, np.ndarray]
    plan_request: PlanRequest
    true_optimum: float
    noise: float
    seed: int


@dataclass(frozen=True)
class Outcome:
    design: str
    repetition: int
    constants: dict[str, float] | None  # None: the fit failed
    axes: dict[str, int] | None
    regret: float


def perturbed(law: Law, relative: float, seed: int) -> Law:
    """The law with every constant multiplied by exp(relative·z), z standard normal (a 'wrong' prior)."""
    if relative == 0:
        return law
    rng = np.random.default_rng([seed, 7])
    values = {k: v * float(np.exp(relative * rng.standard_normal())) for k, v in law.values.items()}
    return law.with_values(values, source=f"prior perturbed by {relative:g} (log-normal, seed {seed})",
                           status="reconstructed")


def run_job(job: Job) -> Outcome:
    """Synthetic losses -> fit -> plan -> true regret, for one design and one repetition."""
    base = get_law(job.law)
    truth = base.with_values(job.truth, source="truth")
    rng = np.random.default_rng([job.seed, job.repetition, sum(map(ord, job.design))])
    y = truth.evaluate(**job.variables)
    y = y + rng.normal(0.0, job.noise, len(y))
    linear = _generated.FITTING[base.form][2]
    start = {k: v for k, v in job.prior.items() if k not in linear}
    try:
        fitted = fit_law(base, FitRuns(job.variables, y), huber_objective(HUBER_DELTA), initial=[start]).values
        planned = plan_at(job.plan_request, base.with_values(fitted, source="simulated fit"))
    except (MoeplanError, ValueError, FloatingPointError, np.linalg.LinAlgError):
        return Outcome(job.design, job.repetition, None, None, float("nan"))
    regret = true_loss(job.plan_request, truth, planned.axes) - job.true_optimum
    return Outcome(job.design, job.repetition, fitted, planned.axes, max(regret, 0.0))


def run_all(designs: dict[str, dict[str, np.ndarray]], law: Law, truth: Law, plan_request: PlanRequest,
             repetitions: int, noise: float, seed: int, workers: int = 2,
             progress: Callable[[int], None] | None = None) -> tuple[list[Outcome], float]:
    """Every design (its runs' law variables) `repetitions` times; returns outcomes and the true optimum."""
    optimum = plan_at(plan_request, truth).loss
    jobs = [Job(name, r, law.name, law.values, truth.values, variables, plan_request, optimum, noise, seed)
            for r in range(repetitions) for name, variables in designs.items()]
    done: list[Outcome] = []
    if workers <= 1:
        for job in jobs:
            done.append(run_job(job))
            if progress:
                progress(1)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for future in as_completed([pool.submit(run_job, job) for job in jobs]):
                done.append(future.result())
                if progress:
                    progress(1)
    done.sort(key=lambda o: (o.design, o.repetition))
    return done, optimum


_FROZEN = ConfigDict(frozen=True)


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
    regrets: list[float] = Field(description="every repetition's true regret (NaN, null in JSON: the fit failed)")
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
    if designed.law.form != "hy":
        raise UsageError(f"--simulate plans at the target with the [HY] form; law {designed.law.name!r} has no plan")
    r = designed.request
    noise = r.noise if noise is None else noise
    truth = perturbed(designed.law, perturb, r.seed)
    designs = {f"designed ({r.criterion})": designed.chosen, **designed.references}
    plan_request = target_request(r)
    outcomes, optimum = run_all({k: v.variables() for k, v in designs.items()}, designed.law, truth, plan_request,
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
            failed_fits=len(mine) - len(ok), regret=_spread(regrets), regrets=[o.regret for o in mine],
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
    ev = Space(target_request(designed.request), designed.law).evaluate_values({k: np.asarray(v) for k, v in axes.items()})
    return float(ev.n), float(ev.n_a)


class SweepWithSimulation(BaseModel):
    """`moeplan sweep --simulate K --json`: the sweep and its simulation."""

    model_config = _FROZEN

    sweep: Sweep
    simulation: Simulation
