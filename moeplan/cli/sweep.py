"""`moeplan sweep`: design the small runs to train before planning, and test the design by simulation."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer
from pydantic import ValidationError
from rich.table import Table

from moeplan.cli.common import JsonOpt, emit_json, human, stderr, stdout
from moeplan.errors import MoeplanError, UsageError
from moeplan.flops.hf import validation_message

SIM = "Simulation"


def sweep_command(
    target_flops: Annotated[float, typer.Option("--target-flops", help="The budget you will plan at after fitting.")],
    sweep_flops: Annotated[float, typer.Option("--sweep-flops", help="Total compute of all sweep runs (FLOPs).")],
    law: Annotated[str, typer.Option("--law", help="Law to fit: hy (or hy-nd, hy-nda, hy-ndag, chinchilla with "
                                                   "--criterion d).")] = "hy",
    law_params: Annotated[str | None, typer.Option("--law-params", help="Fitted constants JSON as the prior.")] = None,
    max_run_flops: Annotated[float | None, typer.Option("--max-run-flops", help="Largest run (default sweep/10).")] = None,
    min_run_flops: Annotated[float | None, typer.Option("--min-run-flops",
                                                        help="Smallest run (default max-run/100).")] = None,
    budgets: Annotated[int, typer.Option("--budgets", help="IsoFLOP budgets between smallest and largest run.")] = 5,
    runs: Annotated[int, typer.Option("--runs", help="Training runs in the sweep.")] = 60,
    criterion: Annotated[Literal["target", "d"], typer.Option(
        "--criterion", help="target: expected regret of the plan at --target-flops; d: D-optimal.")] = "target",
    noise: Annotated[float, typer.Option("--noise", help="SD of a run's final loss (nats).")] = 0.005,
    min_tokens_per_param: Annotated[float, typer.Option("--min-tokens-per-param",
                                                        help="Floor on a run's tokens per parameter.")] = 1.0,
    architectures: Annotated[int, typer.Option("--architectures", help="Buildable architectures sampled.")] = 3000,
    seq_len: Annotated[int, typer.Option("--seq-len", help="Training sequence length.")] = 4096,
    vocab: Annotated[int, typer.Option("--vocab", help="Vocabulary size.")] = 128256,
    ep: Annotated[int, typer.Option("--ep", help="Expert-parallel degree (divides n_experts).")] = 8,
    gpu: Annotated[str | None, typer.Option("--gpu", help="Accelerator for GPU-hours: a100, h100, h200, b200, "
                                                          "mi300x, tpu-v5p.")] = None,
    gpus: Annotated[int | None, typer.Option("--gpus", help="Accelerators running the sweep (wall-clock days).")] = None,
    mfu: Annotated[float, typer.Option("--mfu", help="Model FLOPs utilisation for GPU-hours.")] = 0.4,
    seed: Annotated[int, typer.Option("--seed", help="Seed for candidates and simulation.")] = 0,
    out: Annotated[Path | None, typer.Option("--out", help="Folder for sweep.csv, sweep.json and per-run configs.")] = None,
    simulate: Annotated[int, typer.Option("--simulate", min=0, rich_help_panel=SIM,
                                          help="Repetitions of sweep -> synthetic losses -> fit -> plan.")] = 0,
    perturb: Annotated[float, typer.Option("--perturb", min=0.0, rich_help_panel=SIM,
                                           help="Draw the true law's constants x exp(PERTURB z) around the prior.")] = 0.0,
    workers: Annotated[int, typer.Option("--workers", min=1, rich_help_panel=SIM, help="Processes.")] = 2,
    json_out: JsonOpt = False,
) -> None:
    """Design the small training runs that pin down a law where your plan needs it (docs/sweeps.md)."""
    from moeplan.sweep import SweepRequest, design_sweep, simulation, to_model

    try:
        request = SweepRequest(
            law=law, law_params=law_params, target_flops=target_flops, sweep_flops=sweep_flops,
            max_run_flops=max_run_flops, min_run_flops=min_run_flops, budgets=budgets, runs=runs,
            criterion=criterion, noise=noise, min_tokens_per_param=min_tokens_per_param,
            architectures=architectures, seq_len=seq_len, vocab_size=vocab, expert_parallel=ep, gpu=gpu, gpus=gpus,
            mfu=mfu, seed=seed)
    except ValidationError as err:
        raise UsageError(validation_message(err)) from None
    if out is not None and out.exists() and not out.is_dir():
        raise MoeplanError(f"{out}: a file, not a folder (--out takes a folder)")
    designed = design_sweep(request)
    result = to_model(designed)
    if out is not None:
        from moeplan.sweep.files import write_sweep

        written = write_sweep(result, out)
        stderr.print(f"wrote {len(written)} files to {out}: {out / 'sweep.csv'} (fill in the loss column, then "
                     f"moeplan fit {out / 'sweep.csv'} --law {result.law} --out fitted.json)")
    sim = None
    if simulate:
        sim = _simulate(designed, simulate, perturb, workers, simulation)
    if json_out:
        if sim is None:
            emit_json(result)
        else:
            from moeplan.sweep.sweep import SweepWithSimulation

            emit_json(SweepWithSimulation(sweep=result, simulation=sim))
        return
    try:
        render(result)
        if sim is not None:
            render_simulation(sim)
    except BrokenPipeError:  # `moeplan sweep ... | head -1`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None


def _simulate(designed, repetitions, perturb, workers, simulation):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    jobs = repetitions * (1 + len(designed.references))
    with Progress(TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=stderr, transient=True) as bar:
        task = bar.add_task("simulate", total=jobs)
        return simulation(designed, repetitions, perturb=perturb, workers=workers,
                          progress=lambda n: bar.advance(task, n))


def render(s) -> None:
    t = Table(title=f"moeplan sweep: {len(s.runs)} runs for a plan at {s.request.target_flops:.3g} FLOPs "
                    f"({s.law}, criterion {s.criterion})", title_justify="left",
              caption="l layers, d d_hidden, n_e experts of width d_exp, top-k, n_s shared; N, N_a non-embedding")
    for col in ("run", "FLOPs", "l", "d", "d_exp", "n_e", "k", "n_s", "N", "N_a", "G", "S", "tokens", "D/total",
                "prior loss"):
        t.add_column(col, justify="right", no_wrap=True)
    for r in s.runs:
        t.add_row(str(r.run), f"{r.compute:.3g}", str(r.n_layers), str(r.d_hidden), str(r.d_expert),
                  str(r.n_experts), str(r.top_k), str(r.n_shared_experts), human(r.N), human(r.N_a), f"{r.G:g}",
                  f"{r.S:.2f}", human(r.tokens), f"{r.tokens / r.total_params:.1f}", f"{r.prior_loss:.3f}")
    _print(t)
    line = f"total compute {s.total_compute:.4g} FLOPs of {s.request.sweep_flops:.3g}"
    if s.gpu_hours is not None:
        line += f"; {s.gpu_hours:,.0f} {s.request.gpu} GPU-hours at MFU {s.request.mfu:g}"
        if s.wall_days is not None:
            line += f" ({s.wall_days:.2f} days on {s.request.gpus})"
    stdout.print(line)
    if s.target_plan:
        p = s.target_plan
        stdout.print(f"plan at the target with the prior: {int(p['n_layers'])} layers x {int(p['d_hidden'])}, "
                     f"{int(p['n_experts'])} experts of {int(p['d_expert'])}, top-{int(p['top_k'])} + "
                     f"{int(p['n_shared_experts'])} shared; N {human(p['N'])}, N_a {human(p['N_a'])}, "
                     f"{human(p['tokens'])} tokens, loss {p['loss']:.4f}")
    pred = Table(title="predicted after fitting (delta method, same total compute)", title_justify="left")
    for col in ("design", "runs", "FLOPs", "E\\[regret]", "SD loss", "SD G*", "SD S*", "log det M"):
        pred.add_column(col, justify="right", no_wrap=True)
    for p in s.predicted:
        pred.add_row(p.design, str(p.runs), f"{p.compute:.3g}", _g(p.expected_regret), _g(p.sd_plan_loss),
                     _g(p.sd_g_star), _g(p.sd_s_star), f"{p.log_det_information:.2f}")
    _print(pred)
    stdout.print("[dim]" + " | ".join(s.notes) + "[/dim]")


def _print(table: Table) -> None:
    """A table at its natural width, never cut at 80 columns (a pipe) or at the terminal's edge."""
    from rich.console import Console
    from rich.measure import Measurement

    width = Measurement.get(stdout, stdout.options.update(width=10_000), table).maximum
    Console(highlight=False, width=max(stdout.width, width)).print(table)


def _g(x) -> str:
    return "" if x is None else f"{x:.3g}"


def _spread(x, fmt="{:.3g}") -> str:
    if x is None:
        return ""
    return f"{fmt.format(x.median)} [{fmt.format(x.p5)}, {fmt.format(x.p95)}]"


def render_simulation(sim) -> None:
    t = Table(title=f"simulation: {sim.repetitions} repetitions, noise {sim.noise:g}"
                    + (f", true law perturbed by {sim.perturb:g}" if sim.perturb else ""), title_justify="left",
              caption="median [5th, 95th percentile]; regret = true loss of the plan - true optimum (nats)")
    for col in ("design", "runs", "FLOPs", "regret", "mean regret", "exact", "G*", "S*", "plans", "modal",
                "plan N_a", "failed"):
        t.add_column(col, justify="right", no_wrap=True)
    for d in sim.designs:
        t.add_row(d.design, str(d.runs), f"{d.compute:.3g}", _spread(d.regret), _g(d.mean_regret),
                  f"{d.zero_regret:.0%}", _spread(d.g_star), _spread(d.s_star), str(d.distinct_plans),
                  f"{d.modal_share:.0%}", _spread(d.plan_active, "{:.3g}"), str(d.failed_fits))
    _print(t)
    if sim.regret_ratio is not None:
        stdout.print(f"median true regret: uniform IsoFLOP grid / designed sweep = {sim.regret_ratio:.3g}")
