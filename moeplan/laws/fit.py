"""Fit a law's constants to training runs: robust objective, multi-start grid, analytic Jacobian.

Method (docs/fitting.md): sympy finds the constants the law is jointly linear in (codegen's FITTING
table). A grid of starts (Sobol points) spans only the other, nonlinear constants; at each start the
linear ones are solved exactly by least squares (variable projection), then every constant is polished by
`scipy.optimize.least_squares` on log-loss residuals with the robust loss and the Jacobian that sympy
derived. The best finite result wins. Residuals are in log space as in [CHIN]/[EPOCH].
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from moeplan.errors import MoeplanError
from moeplan.laws import _generated
from moeplan.laws.model import Law

POLISHED = 3  # starts polished to tight tolerances after the loose pass
LOOSE_EVALUATIONS = 40  # enough to rank the starts; the VP initialisation puts most near a basin
EXPONENTS = {"alpha", "beta", "gamma", "delta", "lam", "omega", "zeta"}
# Where the nonlinear constants' starts are drawn from (log-uniform if "log"), by law then by name.
START_RANGES = {
    "joint": {"alpha": (-0.6, -0.02), "beta": (-0.6, -0.02), "delta": (-1.0, 1.0), "omega": (-1.0, 1.0),
              "gamma": (-0.05, 0.05), "zeta": (-0.05, 0.05)},
    "clark": {"a": (-0.3, -0.01), "b": (-0.3, 0.0), "c": (-0.05, 0.05), "d": (0.2, 2.0),
              "E_start": (1.1, 10.0), "E_max": (20.0, 2000.0, "log")},
    "*": {"k": (1e-5, 1.0, "log"), "h": (1e-4, 1.0, "log"), "lam": (0.05, 2.0), "delta": (0.05, 2.0)},
}
EXPONENT_RANGE = (0.05, 1.0)
# Bounds the law needs: positive exponents keep N^-alpha finite and decreasing.
POSITIVE_EXPONENT_LAWS = {"hy", "hy-nd", "hy-nda", "hy-ndag", "chinchilla", "epoch", "krajewski", "abnar"}
EXPONENT_BOUNDS = (1e-4, 5.0)  # and the planner refuses fitted exponents outside them


@dataclass(frozen=True)
class Runs:
    """Training runs: the law's variables as arrays, and the observed losses."""

    variables: dict[str, np.ndarray]
    loss: np.ndarray

    def __len__(self) -> int:
        return len(self.loss)

    def take(self, index: np.ndarray) -> Runs:
        return Runs({k: v[index] for k, v in self.variables.items()}, self.loss[index])


def huber_objective(delta: float) -> dict:
    """[EPOCH]/[CHIN]: Huber loss (threshold delta) on log-loss residuals."""
    return {"loss": "huber", "f_scale": delta, "weight": None}


def asymmetric_objective(weight: float) -> dict:
    """Over-prediction weighted `weight` times (kyo-takano/chinchilla's asymmetric MAE), squared for gradients."""
    return {"loss": "linear", "f_scale": 1.0, "weight": weight}


@dataclass(frozen=True)
class FitOutcome:
    values: dict[str, float]
    cost: float
    starts: int
    finished: int  # starts whose loose pass ended with a finite cost


def _call(fn, law: Law, runs: Runs, values: dict[str, float]):
    return fn(*(runs.variables[v] for v in fn.variables), *(values[c] for c in fn.constants))


def _starts(law: Law, nonlinear: list[str], n: int, seed: int) -> list[dict[str, float]]:
    """Sobol points over the nonlinear constants' start ranges (a grid when there are at most two)."""
    ranges = []
    for name in nonlinear:
        spec = START_RANGES.get(law.form, {}).get(name) or START_RANGES["*"].get(name)
        if spec is None:
            spec = EXPONENT_RANGE if name in EXPONENTS else (0.1, 10.0, "log")
        ranges.append(spec)
    if not nonlinear:
        return [{}]
    if len(nonlinear) <= 2:
        per = max(2, round(n ** (1 / len(nonlinear))))
        axes = [np.linspace(0, 1, per) for _ in nonlinear]
        unit = np.array(np.meshgrid(*axes, indexing="ij")).reshape(len(nonlinear), -1).T
    else:
        from scipy.stats import qmc

        unit = qmc.Sobol(len(nonlinear), scramble=True, seed=seed).random(2 ** math.ceil(math.log2(n)))[:n]
    out = []
    for row in unit:
        start = {}
        for name, u, spec in zip(nonlinear, row, ranges, strict=True):
            low, high = spec[0], spec[1]
            start[name] = float(np.exp(np.log(low) + u * (np.log(high) - np.log(low))) if len(spec) > 2
                                else low + u * (high - low))
        out.append(start)
    return out


def _bounds(law: Law) -> tuple[np.ndarray, np.ndarray]:
    low = np.full(len(law.constants), -np.inf)
    high = np.full(len(law.constants), np.inf)
    if law.form in POSITIVE_EXPONENT_LAWS:
        for i, name in enumerate(law.constant_names):
            if name in EXPONENTS:
                low[i], high[i] = EXPONENT_BOUNDS
    return low, high


def fit_law(law: Law, runs: Runs, objective: dict, starts: int = 64, seed: int = 0,
            initial: list[dict[str, float]] | None = None) -> FitOutcome:
    """Best constants over a multi-start grid (or the given `initial` points), polished locally."""
    from scipy.optimize import least_squares

    entry = _generated.FITTING.get(law.form)
    if entry is None:
        raise MoeplanError(f"law {law.name!r} cannot be fitted (it predicts {law.main_output}, not loss)")
    jacobian, basis, linear = entry
    names = list(law.constant_names)
    if len(runs) <= len(names):
        raise MoeplanError(f"{len(runs)} runs cannot determine the {len(names)} constants of law {law.name!r}: "
                           f"need more runs than constants")
    nonlinear = [c for c in names if c not in linear]
    log_y = np.log(runs.loss)
    low, high = _bounds(law)
    weight = objective["weight"]

    def residuals(x):
        values = dict(zip(names, x, strict=True))
        pred = np.asarray(_call(_generated.FUNCTIONS[(law.form, "loss")], law, runs, values))
        r = np.log(np.maximum(pred, 1e-300)) - log_y
        return r * np.where(r > 0, math.sqrt(weight), 1.0) if weight else r

    def jac(x):
        values = dict(zip(names, x, strict=True))
        pred = np.asarray(_call(_generated.FUNCTIONS[(law.form, "loss")], law, runs, values))
        cols = _call(jacobian, law, runs, values)
        j = np.column_stack([np.broadcast_to(np.asarray(c, dtype=float), pred.shape) for c in cols])
        j = j / np.maximum(pred, 1e-300)[:, None]
        if weight:
            r = np.log(np.maximum(pred, 1e-300)) - log_y
            j = j * np.where(r > 0, math.sqrt(weight), 1.0)[:, None]
        return j

    def solve(x0, tight: bool):
        tol = 1e-15 if tight else 1e-8
        return least_squares(residuals, x0, jac=jac, bounds=(low, high), loss=objective["loss"],
                             f_scale=objective["f_scale"], x_scale="jac", method="trf",
                             ftol=tol, xtol=tol, gtol=tol, max_nfev=2000 if tight else LOOSE_EVALUATIONS)

    results: list[tuple[float, np.ndarray]] = []
    points = initial if initial is not None else _starts(law, nonlinear, starts, seed)
    for start in points:
        values = dict(start)
        if linear and any(c not in values for c in linear):
            phi = _call(basis, law, runs, values)
            phi = [np.broadcast_to(np.asarray(p, dtype=float), runs.loss.shape) for p in phi]
            design = np.column_stack(phi[1:])
            coef, *_ = np.linalg.lstsq(design, runs.loss - phi[0], rcond=None)
            values |= dict(zip(linear, coef, strict=True))
        x0 = np.clip(np.array([values[c] for c in names], dtype=float), low + 1e-12, high - 1e-12)
        if not np.all(np.isfinite(residuals(x0))):
            continue
        try:
            res = solve(x0, tight=False)  # a loose pass from every start ...
        except (ValueError, FloatingPointError, np.linalg.LinAlgError):
            continue
        if np.isfinite(res.cost):
            results.append((float(res.cost), res.x))
    best: tuple[float, np.ndarray] | None = None
    for _, x in sorted(results, key=lambda r: r[0])[:POLISHED]:  # ... then the best few polished tightly
        try:
            res = solve(x, tight=True)
        except (ValueError, FloatingPointError, np.linalg.LinAlgError):
            continue
        if np.isfinite(res.cost) and (best is None or res.cost < best[0]):
            best = (float(res.cost), res.x)
    if best is None:
        raise MoeplanError(f"no start converged for law {law.name!r}: check the data (losses, sizes) and the law")
    return FitOutcome(dict(zip(names, map(float, best[1]), strict=True)), best[0], len(points), len(results))


def mean_absolute_error(law: Law, runs: Runs, values: dict[str, float]) -> float:
    """Mean absolute error in loss (nats), the statistic [HY] reports (0.0059 for its law)."""
    fitted = law.with_values(values, source="fit")
    return float(np.mean(np.abs(fitted.evaluate(**runs.variables) - runs.loss)))


def bootstrap(law: Law, runs: Runs, objective: dict, best: dict[str, float], samples: int, seed: int,
              workers: int = 2) -> list[dict[str, float]]:
    """Refit on `samples` resamples of the runs (with replacement), warm-started at `best`; both cores."""
    from concurrent.futures import ProcessPoolExecutor

    rng = np.random.default_rng(seed)
    indices = [rng.integers(0, len(runs), len(runs)) for _ in range(samples)]
    jobs = [(law.name, law.code_name, runs.take(ix), objective, best) for ix in indices]
    if workers <= 1 or samples < 4:
        return [_bootstrap_one(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_bootstrap_one, jobs, chunksize=max(1, samples // (4 * workers))))


def _bootstrap_one(job) -> dict[str, float]:
    from moeplan.laws import get_law

    name, _, runs, objective, best = job
    law = get_law(name)
    return fit_law(law, runs, objective, initial=[best]).values


def percentile_interval(samples: list[float], level: float = 0.95) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    return float(np.percentile(samples, tail)), float(np.percentile(samples, 100 - tail))


Objective = Callable[[float], dict]
