"""Test a design before anyone trains it: synthetic losses from a true law, the fitter, the planner, regret.

One repetition: loss_i = L_true(x_i) + N(0, noise²) for every run, `fit_law` (moeplan fit's fitter: log-
Huber δ = 1e-3, variable projection from one start at the prior's nonlinear constants, analytic Jacobian),
then the exact plan at the target with the fitted constants. Its true regret is the true law's loss of the
planned architecture minus the true law's optimum over the same buildable space.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

import numpy as np

from moeplan.errors import MoeplanError
from moeplan.laws import _generated, get_law
from moeplan.laws.fit import Runs as FitRuns
from moeplan.laws.fit import fit_law, huber_objective
from moeplan.laws.model import Law
from moeplan.planner.request import PlanRequest
from moeplan.sweep.target import plan_at, true_loss

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


def simulate(designs: dict[str, dict[str, np.ndarray]], law: Law, truth: Law, plan_request: PlanRequest,
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
