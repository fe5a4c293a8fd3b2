"""`moeplan laws`, `derive`, `predict`, `leverage`: the scaling laws, their optima and their predictions."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from moeplan.cli.common import JsonOpt, SeqLenOpt, emit_json, human, stdout
from moeplan.errors import UsageError
from moeplan.flops.count import count
from moeplan.flops.hf import load_architecture
from moeplan.laws import DEFAULT_LAW, LAWS, get_law
from moeplan.laws.inputs import law_inputs
from moeplan.laws.reports import derive, leverage, predict

LawOpt = Annotated[str, typer.Option("--law", "-l", help=f"Law: {', '.join(LAWS)}.")]
ArchOpt = Annotated[Path | None, typer.Option("--arch", help="Architecture JSON or HF config.json to read inputs from.")]


def laws_command(json_out: JsonOpt = False) -> None:
    """Every law: formula, constants with provenance, fitted domain."""
    if json_out:
        sys.stdout.write(json.dumps([law.model_dump(mode="json") for law in LAWS.values()], indent=2) + "\n")
        return
    for law in LAWS.values():
        table = Table(title=f"{law.name}: {law.title}", caption=law.citation, title_justify="left")
        table.add_column("constant")
        table.add_column("value", justify="right")
        table.add_column("source")
        table.add_column("status")
        for c in law.constants:
            table.add_row(c.name, "-" if c.value is None else f"{c.value:.6g}", c.source, c.status)
        stdout.print(law.formula)
        stdout.print(table)
        domain = [f"{v.name} in [{v.domain[0]:.3g}, {v.domain[1]:.3g}]" for v in law.variables if v.domain]
        stdout.print("fitted domain: " + ("; ".join(domain) if domain else "not published"))
        for note in law.notes:
            stdout.print(f"note: {note}")
        stdout.print()


def derive_command(
    law: LawOpt = DEFAULT_LAW,
    total_params: Annotated[float | None, typer.Option("--total-params", min=1, help="N for Eq. 29 / Alg. 1.")] = None,
    active_params: Annotated[float | None, typer.Option("--active-params", min=1, help="N_a for G/S ranges.")] = None,
    tolerance: Annotated[float, typer.Option("--tolerance", min=0, help="Loss tolerance of the G/S ranges.")] = 0.001,
    json_out: JsonOpt = False,
) -> None:
    """Symbolic optima derived by sympy (G*, S*, Eq. 29, ...) and their values."""
    result = derive(get_law(law), total_params, active_params, tolerance)
    if json_out:
        emit_json(result)
        return
    # One block per quantity, not a table: a closed form runs to hundreds of characters and a table cell
    # would cut it; here it wraps whole at any width, and in a pipe it stays on one line.
    stdout.print(f"[bold]derived from the {result.law} law[/bold] (closed forms by sympy)")
    for o in result.optima:
        stdout.print()
        stdout.print(f"[bold cyan]{escape(o.description)}[/bold cyan]")
        if o.value:
            stdout.print("  = " + ", ".join(f"{v:.4g}" for v in o.value))
        for form in o.sympy:
            stdout.print(f"  {escape(form)}", soft_wrap=not stdout.is_terminal)
    if result.theoretical_activation_ratio is not None:
        ea = result.efficiency_aware_activation_ratio
        stdout.print(f"N = {human(result.total_params)}: theoretical (N_a/N)* = {result.theoretical_activation_ratio:.4f}; "
                     f"efficiency-aware (Alg. 1) = {ea['0.001']:.2f} at dLoss 0.001, {ea['0.005']:.2f} at 0.005")
    if result.practical_range_g is not None:
        g, s = result.practical_range_g, result.practical_range_s
        stdout.print(f"N_a = {human(result.active_params)}: within {result.tolerance} of the optimum, "
                     f"G in [{g[0]:.3f}, {g[1]:.3f}], S in [{s[0]:.3f}, {s[1]:.3f}]")


def predict_command(
    law: LawOpt = DEFAULT_LAW,
    arch: ArchOpt = None,
    seq_len: SeqLenOpt = None,
    total_params: Annotated[float | None, typer.Option("--total-params", help="N")] = None,
    active_params: Annotated[float | None, typer.Option("--active-params", help="N_a")] = None,
    tokens: Annotated[float | None, typer.Option("--tokens", help="D")] = None,
    activated_experts: Annotated[float | None, typer.Option("--activated-experts", help="G = n_k + n_s")] = None,
    shared_ratio: Annotated[float | None, typer.Option("--shared-ratio", help="S = n_s / G")] = None,
    granularity: Annotated[float | None, typer.Option("--granularity", help="[KRAJ] G_K")] = None,
    experts: Annotated[float | None, typer.Option("--experts", help="E ([JOINT] expansion, [CLARK] experts)")] = None,
    inactive_share: Annotated[float | None, typer.Option("--inactive-share", help="[ABNAR] 1 - n_k/n_e")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Predicted loss of a law at given N, N_a, D, G, S (or an architecture file plus --tokens)."""
    selected = get_law(law)
    inputs = {}
    if arch is not None:
        inputs = law_inputs(selected, count(load_architecture(arch, seq_len)), tokens)
    given = {"N": total_params, "N_a": active_params, "D": tokens, "G": activated_experts, "S": shared_ratio,
             "G_K": granularity, "E": experts, "S_inactive": inactive_share}
    inputs |= {k: v for k, v in given.items() if v is not None and k in selected.variable_names}
    flags = {"N": "--total-params", "N_a": "--active-params", "D": "--tokens", "G": "--activated-experts",
             "S": "--shared-ratio", "G_K": "--granularity", "E": "--experts", "S_inactive": "--inactive-share"}
    missing = [flags.get(v, v) for v in selected.variable_names if v not in inputs]
    if missing:
        raise UsageError(f"law {selected.name!r} needs {', '.join(missing)} (or --arch with --tokens)")
    result = predict(selected, inputs)
    if json_out:
        emit_json(result)
        return
    shown = ", ".join(f"{k} = {human(v) if v >= 1000 else f'{v:.4g}'}" for k, v in result.inputs.items())
    stdout.print(f"[bold]{result.law}[/bold]: L({shown}) = [bold]{result.loss:.4f}[/bold]")
    for e in result.extrapolation:
        stdout.print(f"[yellow]extrapolation:[/yellow] {e}")


def leverage_command(
    flops: Annotated[float, typer.Option("--flops", help="Training compute C in FLOPs.")],
    activation_ratio: Annotated[float | None, typer.Option("--activation-ratio", help="[LING] A")] = None,
    granularity: Annotated[float | None, typer.Option("--granularity", help="[LING] G_L = 2d/d_expert")] = None,
    arch: ArchOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """[LING] efficiency leverage: how much dense compute an MoE's compute is worth."""
    if arch is not None:
        a = load_architecture(arch)
        activation_ratio = activation_ratio or a.activation_ratio
        granularity = granularity or a.granularity
    if activation_ratio is None or granularity is None:
        raise UsageError("give --activation-ratio and --granularity, or --arch")
    result = leverage(get_law("ling"), activation_ratio, granularity, flops)
    if json_out:
        emit_json(result)
        return
    stdout.print(f"EL(A = {result.activation_ratio:.4g}, G_L = {result.granularity:.4g}, C = {result.compute:.3g}) "
                 f"= [bold]{result.efficiency_leverage:.3f}[/bold]: worth {result.dense_equivalent_compute:.3g} "
                 f"dense FLOPs (optimal G_L = {result.optimal_granularity:.2f})")
