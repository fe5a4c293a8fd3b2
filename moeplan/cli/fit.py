"""`moeplan fit RUNS --law NAME`: fit a law's constants to your own runs, with error bars."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.markup import escape
from rich.table import Table

from moeplan.cli.common import ForceOpt, JsonOpt, emit_json, progress, stdout
from moeplan.errors import UsageError
from moeplan.files import check_output


def _pairs(spec: str | None, option: str) -> dict[str, str] | None:
    if not spec:
        return None
    out = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UsageError(f"{option} takes NAME=VALUE pairs separated by commas, got {part!r}")
        out[key.strip()] = value.strip()
    return out


def fit_command(
    runs: Annotated[Path, typer.Argument(help="CSV of runs: the law's variables and loss (docs/fitting.md).")],
    law: Annotated[str, typer.Option("--law", "-l", help="Law to fit: hy, hy-nd, chinchilla, krajewski, ...")] = "hy",
    out: Annotated[Path | None, typer.Option("--out", help="Write the fitted constants here (for plan --law-params).")] = None,
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=0, max=10_000, help="Bootstrap resamples for intervals.")] = 0,
    holdout_column: Annotated[str | None, typer.Option("--holdout-column", help="Column marking held-out runs.")] = None,
    holdout_fraction: Annotated[float | None, typer.Option("--holdout-fraction", min=0.0, max=0.9,
                                                           help="Hold out a random fraction.")] = None,
    objective: Annotated[Literal["huber", "asymmetric"], typer.Option("--objective", help="huber or asymmetric.")] = "huber",
    delta: Annotated[float, typer.Option("--delta", min=0, help="Huber threshold on log loss.")] = 1e-3,
    starts: Annotated[int, typer.Option("--starts", min=1, max=10_000, help="Multi-start grid size.")] = 64,
    columns: Annotated[str | None, typer.Option("--columns", help="Rename columns: N=params,D=tokens,loss=...")] = None,
    where: Annotated[str | None, typer.Option("--where", help="Only runs with COL=VALUE (e.g. dataset=rpj).")] = None,
    compare: Annotated[bool, typer.Option("--compare", help="Also fit and score other law forms.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed for starts, holdout and bootstrap.")] = 0,
    force: ForceOpt = False,
    free_signs: Annotated[bool, typer.Option("--free-signs", help="Let constants take any sign (default: "
                                                                   "exponents > 0, floors and scales >= 0).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Fit a scaling law's constants to training runs; report held-out error and intervals."""
    from moeplan.laws.fit_report import run_fit

    if holdout_column and holdout_fraction is not None:
        raise UsageError("give --holdout-column or --holdout-fraction, not both")
    if out is not None:  # before the fit: a late error would throw it away
        check_output(out, force)
    doing = f"fitting {law}" + (f" and {bootstrap:,} bootstrap resamples" if bootstrap else "")
    with progress(doing):
        report = run_fit(runs, law, objective, delta, 10.0, starts, seed, holdout_column, holdout_fraction,
                         bootstrap, compare, _pairs(columns, "--columns"), out, _pairs(where, "--where"),
                         free_signs)
    if json_out:
        emit_json(report)
        return
    table = Table(title=f"{report.law} fitted to {report.n_fit} of {report.n_runs} runs ({report.objective}; "
                        f"{report.finished_starts}/{report.starts} starts finished)", title_justify="left")
    for col in ("constant", "fitted", "95% interval", "published"):
        table.add_column(col, justify="right")
    for c in report.constants:
        interval = f"[{c.low:.4g}, {c.high:.4g}]" if c.low is not None else ""
        table.add_row(c.name, f"{c.value:.6g}", interval, "" if c.published is None else f"{c.published:.6g}")
    for d in report.derived:
        interval = f"[{d.low:.4g}, {d.high:.4g}]" if d.low is not None else ""
        table.add_row(d.name, f"{d.value:.4g}", interval, "")
    stdout.print(table)
    for line in report.diagnostics:
        stdout.print(f"[yellow]not identified:[/yellow] {line}")
    ranges = "; ".join(f"{k} [{lo:.4g}, {hi:.4g}]" for k, (lo, hi) in report.ranges.items())
    stdout.print(f"fitted ranges (plans with --law-params check extrapolation against these): {ranges}")
    holdout = f"{report.holdout_mae:.4f} on {report.n_holdout} held-out runs" if report.holdout_mae is not None \
        else "no held-out runs (--holdout-column or --holdout-fraction)"
    stdout.print(f"mean absolute error: {report.fit_mae:.4f} on the fitted runs; {holdout}")
    if report.comparison:
        cmp = Table(title="law forms fitted on the same runs", title_justify="left")
        for col in ("law", "constants", "fit MAE", "held-out MAE", "note"):
            cmp.add_column(col)
        for row in report.comparison:
            cmp.add_row(row.law, str(row.constants), "" if row.fit_mae is None else f"{row.fit_mae:.4f}",
                        "" if row.holdout_mae is None else f"{row.holdout_mae:.4f}", row.note)
        stdout.print(cmp)
    if report.out:
        stdout.print(escape(f"wrote {report.out}: plan with it by moeplan plan --law-params {report.out}"))
