"""`moeplan fit`: fit, validate on held-out runs, compare law forms, bootstrap intervals, save the constants."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

from moeplan.errors import MoeplanError
from moeplan.files import write_text_atomic
from moeplan.laws import get_law
from moeplan.laws.fit import (Runs, asymmetric_objective, bootstrap, collinear_pairs, fit_law, huber_objective,
                              jacobian_condition, mean_absolute_error, percentile_interval, unvaried,
                              variable_ranges)
from moeplan.laws.model import Law
from moeplan.laws.runs import holdout_mask, load_runs

COMPARED = ("hy", "hy-ndag", "hy-nda", "hy-nd", "chinchilla", "krajewski", "ludziejewski")
_FROZEN = ConfigDict(frozen=True)


class FittedConstant(BaseModel):
    model_config = _FROZEN

    name: str
    value: float
    low: float | None = None   # bootstrap 2.5th percentile
    high: float | None = None  # bootstrap 97.5th percentile
    published: float | None = None


class Derived(BaseModel):
    model_config = _FROZEN

    name: str
    value: float
    low: float | None = None
    high: float | None = None


class Comparison(BaseModel):
    model_config = _FROZEN

    law: str
    constants: int
    fit_mae: float | None
    holdout_mae: float | None
    note: str = ""


class FitReport(BaseModel):
    model_config = _FROZEN

    law: str
    runs: str
    n_runs: int
    n_fit: int
    n_holdout: int
    objective: str
    starts: int
    finished_starts: int
    constants: list[FittedConstant]
    fit_mae: float
    holdout_mae: float | None
    derived: list[Derived]
    ranges: dict[str, tuple[float, float]]
    diagnostics: list[str]
    jacobian_condition: float
    free_signs: bool = False
    bootstrap_samples: int
    comparison: list[Comparison] | None = None
    out: str | None = None


# Derived optima a fit reports: name, the sympy-derived function (moeplan.laws.derive), the variable it is
# an optimum in. Reported only when that variable varied in the runs.
DERIVED_OPTIMA = {"hy": (("G*", "hy_g_star", "G"), ("S*", "hy_s_star", "S")),
                  "hy-ndag": (("G*", "hy_ndag_g_star", "G"),)}


def _derived(law: Law, values: dict[str, float], skip: set[str] = frozenset()) -> dict[str, float]:
    """The law's derived optima at fitted `values` (sympy-derived code), except in variables in `skip`."""
    from moeplan.laws import optima

    fitted = law.with_values(values, source="fit")
    out = {}
    for label, name, variable in DERIVED_OPTIMA.get(law.form, ()):
        if variable in skip:
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            value = float(optima.derived(name, fitted))
        if np.isfinite(value):
            out[label] = value
    return out


def diagnose(law: Law, runs: Runs, values: dict[str, float]) -> tuple[list[str], float, set[str]]:
    """One line per identifiability problem, the Jacobian's condition number, and the variables that did not
    vary (no optimum in them is reported)."""
    flat = unvaried(runs)
    lines = []
    for name, why in flat.items():
        optimum = [label for label, _, v in DERIVED_OPTIMA.get(law.form, ()) if v == name]
        lines.append(f"{why}: its effect is not identified" + (f"; no {optimum[0]} reported" if optimum else ""))
    for a, b, cond in collinear_pairs(runs, skip=set(flat)):
        lines.append(f"{a} and {b} are nearly collinear (condition number {cond:.0f} of their standardised logs): "
                     f"the fit cannot tell their effects apart")
    cond, zero = jacobian_condition(law, runs, values)
    if zero:
        lines.append(f"constant{'s' if len(zero) > 1 else ''} {', '.join(zero)} affect{'' if len(zero) > 1 else 's'} "
                     f"no run's loss at the fitted values: left where the fit started")
    if not cond < 1e8:
        lines.append(f"the Jacobian in the constants has condition number {cond:.3g}: some combination of "
                     f"constants is not determined by these runs")
    return lines, cond, set(flat)


def run_fit(path: Path, law_name: str, objective: str = "huber", delta: float = 1e-3, weight: float = 10.0,
            starts: int = 64, seed: int = 0, holdout_column: str | None = None,
            holdout_fraction: float | None = None, bootstrap_samples: int = 0, compare: bool = False,
            columns: dict[str, str] | None = None, out: Path | None = None,
            where: dict[str, str] | None = None, free_signs: bool = False) -> FitReport:
    """Fit `law_name` to the runs in `path` and report; writes `out` only when everything succeeded."""
    law = get_law(law_name)
    if law.kind != "loss":
        raise MoeplanError(f"law {law.name!r} predicts {law.main_output}, not loss: it cannot be fitted to runs")
    runs, rows = load_runs(path, law, columns, where)
    held = holdout_mask(rows, holdout_column, holdout_fraction, seed)
    fit_runs, test_runs = runs.take(np.flatnonzero(~held)), runs.take(np.flatnonzero(held))
    obj = huber_objective(delta, free_signs) if objective == "huber" else asymmetric_objective(weight, free_signs)
    result = fit_law(law, fit_runs, obj, starts=starts, seed=seed)
    values = result.values
    fitted = law.with_values(values, source=f"moeplan fit on {path}")
    samples = bootstrap(law, fit_runs, obj, values, bootstrap_samples, seed) if bootstrap_samples else []

    def interval(fn):
        return percentile_interval([fn(s) for s in samples]) if samples else (None, None)

    published = {c.name: c.value for c in law.constants}
    constants = [FittedConstant(name=k, value=v, low=interval(lambda s, k=k: s[k])[0],
                                high=interval(lambda s, k=k: s[k])[1], published=published.get(k))
                 for k, v in values.items()]
    diagnostics, condition, flat = diagnose(law, fit_runs, values)
    derived = []
    for name, value in _derived(law, values, flat).items():
        low, high = interval(lambda s, name=name: _derived(law, s, flat).get(name, np.nan))
        derived.append(Derived(name=name, value=value, low=low, high=high))
    ranges = variable_ranges(fit_runs)
    report = FitReport(
        law=law.name, runs=str(path), n_runs=len(runs), n_fit=len(fit_runs), n_holdout=len(test_runs),
        objective=f"log-Huber, delta {delta:g}" if objective == "huber" else f"asymmetric, over-prediction x{weight:g}",
        starts=result.starts, finished_starts=result.finished, constants=constants,
        fit_mae=mean_absolute_error(fitted, fit_runs, values),
        holdout_mae=mean_absolute_error(fitted, test_runs, values) if len(test_runs) else None,
        derived=derived, ranges=ranges, diagnostics=diagnostics, jacobian_condition=condition,
        free_signs=free_signs, bootstrap_samples=len(samples),
        comparison=_compare(path, columns, where, held, obj, starts, seed) if compare else None,
        out=str(out) if out else None,
    )
    if out is not None:
        fitted = {"law": law.name, "constants": values,
                  "source": f"moeplan fit on {path} ({len(fit_runs)} runs, {report.objective})",
                  "holdout_mae": report.holdout_mae, "ranges": {k: list(v) for k, v in ranges.items()},
                  "diagnostics": diagnostics, "bootstrap": samples}
        write_text_atomic(Path(out), json.dumps(fitted, indent=2) + "\n")
    return report


def _compare(path, columns, where, held, objective, starts, seed) -> list[Comparison]:
    """Several law forms fitted on the same runs, scored on the same held-out runs ([HY] Fig. 5)."""
    rows = []
    for name in COMPARED:
        law = get_law(name)
        try:
            runs, _ = load_runs(path, law, columns, where)
            fit_runs, test_runs = runs.take(np.flatnonzero(~held)), runs.take(np.flatnonzero(held))
            values = fit_law(law, fit_runs, objective, starts=starts, seed=seed).values
        except MoeplanError as err:
            rows.append(Comparison(law=name, constants=len(law.constants), fit_mae=None, holdout_mae=None,
                                   note=str(err).split(": ", 1)[-1]))
            continue
        fitted = law.with_values(values, source="comparison")
        rows.append(Comparison(law=name, constants=len(law.constants),
                               fit_mae=mean_absolute_error(fitted, fit_runs, values),
                               holdout_mae=mean_absolute_error(fitted, test_runs, values) if len(test_runs) else None))
    return rows
