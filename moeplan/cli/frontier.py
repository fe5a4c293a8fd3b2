"""`moeplan frontier --from 1e18 --to 1e26`: the planned optimum at every budget, as a table, JSON, CSV, plot."""

from __future__ import annotations

import csv
import functools
import io
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table

from rich import box

from moeplan.cli.common import ForceOpt, JsonOpt, emit_json, human, progress, stderr, stdout
from moeplan.cli.fields import WithOptions, nested, options_of
from moeplan.errors import UsageError
from moeplan.files import check_output
from moeplan.jsonio import validation_message


CAPS = "Caps and priors"


@functools.cache
def frontier_options() -> list:
    """The request's fields `frontier` takes, as options (moeplan.cli.fields); the others keep their defaults."""
    from moeplan.planner.request import PlanRequest, Priors

    return [*options_of(PlanRequest, dict.fromkeys(("max_params", "max_tokens", "law_params", "max_memory_gb"),
                                                   CAPS), {}),
            *options_of(Priors, dict.fromkeys(("max_experts", "min_tokens_per_param"), CAPS), {}, prefix=("priors",))]


def _frontier_command(
    start: Annotated[float, typer.Option("--from", help="Smallest budget in FLOPs.")] = 1e18,
    stop: Annotated[float, typer.Option("--to", help="Largest budget in FLOPs.")] = 1e26,
    per_decade: Annotated[int, typer.Option("--per-decade", min=1, max=100, help="Budgets per factor of 10.")] = 2,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write the frontier figure (.png or .svg).")] = None,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Write the table as CSV.")] = None,
    dpi: Annotated[int, typer.Option("--dpi", min=10, max=2400, help="Resolution of a PNG figure.")] = 120,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    **fields,
) -> None:
    """Plan every budget from --from to --to: architecture, loss, N, N_a, D, N_a/N."""
    from moeplan.planner.curves import budgets, frontier
    from moeplan.planner.request import PlanRequest, Priors
    from moeplan.plots import FORMATS

    if plot is not None:  # before any work: a late error would throw the frontier away
        check_output(plot, force, "--plot", FORMATS)
    if csv_out is not None:
        check_output(csv_out, force, "--csv")

    try:
        try:  # --to obeys the limits of a budget too (finite, at most MAX_FLOPS)
            PlanRequest(flops=stop)
        except ValidationError as err:
            raise UsageError("--to: " + validation_message(err).removeprefix("flops: ")) from None
        values = nested(frontier_options(), fields)
        request = PlanRequest(flops=start, **values | {"priors": Priors(**values["priors"])})
    except ValidationError as err:
        raise UsageError(validation_message(err)) from None
    points = budgets(start, stop, per_decade)
    with progress(f"planning {len(points)} budgets"):
        result = frontier(request, points)
    if csv_out is not None:
        _write_csv(result, csv_out, force)
        stderr.print(f"wrote {csv_out}")
    if plot is not None:
        from moeplan.plots import frontier_figure, save

        with progress("drawing the frontier"):
            written = save(frontier_figure(result), plot, dpi, force)
        stderr.print(f"wrote {written}")
    if json_out:
        emit_json(result)
        return
    # SIMPLE_HEAD and no edge padding: the widest rows (1e+26, 128x16384, 256x12288, 16+4) fit 80 columns
    table = Table(title=f"compute-optimal frontier ({result.law})", title_justify="left", box=box.SIMPLE_HEAD,
                  show_edge=False)
    for col in ("C", "shape", "experts", "total", "N_a", "D", "loss", "extrap."):
        table.add_column(col, justify="right", no_wrap=True)
    for p in result.points:
        if not p.feasible:
            table.add_row(f"{p.compute:.2g}", "infeasible", "", "", "", "", "", "")
            continue
        table.add_row(f"{p.compute:.2g}", f"{p.n_layers}x{p.d_hidden}",
                      f"{p.n_experts}x{p.d_expert}, {p.top_k}+{p.n_shared_experts}", human(p.total_params),
                      human(p.law_N_a), human(p.tokens), f"{p.loss:.4f}",
                      _factor(p.extrapolation) if p.extrapolation > 1 else "inside")
    stdout.print(table)
    stdout.print("[dim]shape: layers x d_hidden; experts: n_experts x d_expert, top_k+shared; N_a: activated "
                 "non-embedding parameters; extrap.: largest factor outside the law's fitted domain[/dim]")
    return


frontier_command = WithOptions(_frontier_command, frontier_options)


def _factor(x: float) -> str:
    """2.03x, 17.5x, 2,030x: never scientific notation, which a narrow column would cut."""
    return f"{x:.3g}x" if x < 1000 else f"{x:,.0f}x"


def _write_csv(result, path: Path, force: bool) -> None:
    from moeplan.planner.curves import FrontierPoint

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(FrontierPoint.model_fields))
    writer.writeheader()
    for p in result.points:
        writer.writerow(p.model_dump())
    from moeplan.files import write_text_atomic

    write_text_atomic(Path(path), buffer.getvalue(), force=force)

