"""`moeplan plan`: the buildable MoE with the lowest predicted loss for a compute budget."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from moeplan.cli.common import ConventionOpt, JsonOpt, emit_json, human, stderr, stdout
from moeplan.cli.options import convention_option
from moeplan.errors import UsageError
from moeplan.jsonio import validation_message

PRIORS = "Shape priors"
CAPS = "Budget and caps"
SEARCH = "Search and study"


def _opt(*names, help: str, panel: str = CAPS, **kw):
    return typer.Option(*names, help=help, rich_help_panel=panel, **kw)


def plan_command(
    flops: Annotated[float | None, _opt("--flops", help="Training compute in FLOPs.")] = None,
    gpu_hours: Annotated[float | None, _opt("--gpu-hours", help="Budget as accelerator-hours.")] = None,
    gpu: Annotated[str | None, _opt("--gpu", help="Accelerator: a100, h100, h200, b200, mi300x, tpu-v5p.")] = None,
    gpu_flops: Annotated[float | None, _opt("--gpu-flops", help="Peak dense FLOP/s per accelerator.")] = None,
    mfu: Annotated[float, _opt("--mfu", help="Model FLOPs utilisation for --gpu-hours.")] = 0.4,
    max_params: Annotated[float | None, _opt("--max-params", help="Cap on total parameters.")] = None,
    memory_gb: Annotated[float | None, _opt("--memory-gb", help="Memory for the weights (GB).")] = None,
    bytes_per_param: Annotated[float, _opt("--bytes-per-param", help="Bytes per parameter for --memory-gb.")] = 2.0,
    max_tokens: Annotated[float | None, _opt("--max-tokens", help="Unique training tokens available.")] = None,
    seq_len: Annotated[int, _opt("--seq-len", help="Training sequence length.", panel=PRIORS)] = 4096,
    vocab: Annotated[int, _opt("--vocab", help="Vocabulary size.", panel=PRIORS)] = 128256,
    tie_embeddings: Annotated[bool, _opt("--tie-embeddings", help="Tie input and output embeddings.", panel=PRIORS)] = False,
    d_head: Annotated[int, _opt("--d-head", help="Attention head dim.", panel=PRIORS)] = 128,
    gqa_group: Annotated[int, _opt("--gqa-group", help="Query heads per kv head.", panel=PRIORS)] = 4,
    convention: ConventionOpt = "exact",
    law: Annotated[str, _opt("--law", help="Loss law (hy, or a fit of it).", panel=SEARCH)] = "hy",
    law_params: Annotated[str | None, _opt("--law-params", help="Fitted constants JSON.", panel=SEARCH)] = None,
    tp: Annotated[int, _opt("--tp", help="Tensor-parallel degree (divides heads).", panel=PRIORS)] = 1,
    ep: Annotated[int, _opt("--ep", help="Expert-parallel degree (divides n_experts).", panel=PRIORS)] = 8,
    pp: Annotated[int, _opt("--pp", help="Pipeline stages (divide layers).", panel=PRIORS)] = 1,
    hidden_align: Annotated[int, _opt("--hidden-align", help="d_hidden alignment.", panel=PRIORS)] = 128,
    expert_align: Annotated[int, _opt("--expert-align", help="d_expert alignment.", panel=PRIORS)] = 64,
    min_layers: Annotated[int, _opt("--min-layers", help="Fewest layers.", panel=PRIORS)] = 2,
    max_layers: Annotated[int, _opt("--max-layers", help="Most layers.", panel=PRIORS)] = 128,
    min_d_hidden: Annotated[int, _opt("--min-d-hidden", help="Smallest d_hidden.", panel=PRIORS)] = 512,
    max_d_hidden: Annotated[int, _opt("--max-d-hidden", help="Largest d_hidden.", panel=PRIORS)] = 16384,
    min_aspect: Annotated[float, _opt("--min-aspect", help="Lowest d_hidden/layers.", panel=PRIORS)] = 32.0,
    max_aspect: Annotated[float, _opt("--max-aspect", help="Highest d_hidden/layers.", panel=PRIORS)] = 128.0,
    min_expert_ratio: Annotated[float, _opt("--min-expert-ratio", help="Lowest d_expert/d_hidden.", panel=PRIORS)] = 0.25,
    max_expert_ratio: Annotated[float, _opt("--max-expert-ratio", help="Highest d_expert/d_hidden.", panel=PRIORS)] = 0.75,
    max_experts: Annotated[int, _opt("--max-experts", help="Most routed experts.", panel=PRIORS)] = 256,
    max_top_k: Annotated[int, _opt("--max-top-k", help="Most routed experts per token.", panel=PRIORS)] = 16,
    max_shared: Annotated[int, _opt("--max-shared", help="Most shared experts.", panel=PRIORS)] = 4,
    dense_layers: Annotated[int, _opt("--dense-layers", help="Leading dense-FFN layers.", panel=PRIORS)] = 0,
    min_tokens_per_param: Annotated[
        float, _opt("--min-tokens-per-param", help="Floor on tokens per total parameter.", panel=PRIORS)] = 20.0,
    objective: Annotated[
        Literal["loss", "efficient", "pareto"], _opt("--objective", help="loss, efficient or pareto.", panel=SEARCH)
    ] = "loss",
    tolerance: Annotated[float, _opt("--tolerance", help="Loss tolerance of the near-optimal band.", panel=SEARCH)] = 0.001,
    trials: Annotated[int | None, _opt("--trials", help="Optuna trials (default: seeds+plan+band).", panel=SEARCH)] = None,
    seed: Annotated[int, _opt("--seed", help="Sampler seed.", panel=SEARCH)] = 0,
    storage: Annotated[str | None, _opt("--storage", help="Optuna storage URL (default sqlite:///moeplan.db).",
                                        panel=SEARCH)] = None,
    study: Annotated[str | None, _opt("--study", help="Study name (default: derived from the request).",
                                      panel=SEARCH)] = None,
    workers: Annotated[int, _opt("--workers", min=1, help="Processes running trials on the study.",
                                 panel=SEARCH)] = 1,
    resume: Annotated[bool, _opt("--resume", help="Continue the study after a crash (no other worker running).",
                                 panel=SEARCH)] = False,
    verify: Annotated[bool, _opt("--verify", help="Enumerate the whole space and report regret.", panel=SEARCH)] = False,
    export: Annotated[Literal["hf", "megatron"] | None, _opt("--export", help="Also write the plan as hf or megatron.",
                                                               panel=SEARCH)] = None,
    out: Annotated[Path | None, _opt("--out", help="Where --export writes.", panel=SEARCH)] = None,
    plot: Annotated[Path | None, _opt("--plot", help="Write iso-FLOP, band and Pareto figures (PATH-*.png|svg).",
                                      panel=SEARCH)] = None,
    json_out: JsonOpt = False,
) -> None:
    """Plan a pre-training run: architecture, tokens and predicted loss for a compute budget."""
    from moeplan.planner import PlanRequest, Priors, plan  # keeps `moeplan count` free of optuna's import

    fields = dict(
        flops=flops, gpu_hours=gpu_hours, gpu=gpu, gpu_flops=gpu_flops, mfu=mfu, max_params=max_params,
        memory_gb=memory_gb, bytes_per_param=bytes_per_param, max_tokens=max_tokens, seq_len=seq_len,
        vocab_size=vocab, tie_embeddings=tie_embeddings, d_head=d_head, gqa_group=gqa_group,
        convention=convention_option(convention), law=law, law_params=law_params, tensor_parallel=tp,
        expert_parallel=ep, pipeline_parallel=pp, hidden_align=hidden_align, expert_align=expert_align,
        objective=objective, tolerance=tolerance, trials=trials, seed=seed, storage=storage, study_name=study,
        workers=workers, resume=resume,
    )
    prior_fields = dict(
        min_layers=min_layers, max_layers=max_layers, min_d_hidden=min_d_hidden, max_d_hidden=max_d_hidden,
        min_aspect=min_aspect, max_aspect=max_aspect, min_expert_ratio=min_expert_ratio,
        max_expert_ratio=max_expert_ratio, max_experts=max_experts, max_top_k=max_top_k, max_shared=max_shared,
        dense_layers=dense_layers, min_tokens_per_param=min_tokens_per_param,
    )
    if (export is None) != (out is None):
        raise UsageError("--export and --out go together")
    try:
        request = PlanRequest(**fields, priors=Priors(**prior_fields))
    except ValidationError as err:
        raise UsageError(validation_message(err)) from None
    if verify and not json_out:
        stderr.print("verifying: enumerating the whole space (this takes a while)...")
    result = plan(request, verify=verify)
    if export is not None:
        from moeplan.flops.export import write_export

        written = write_export(result.architecture, export, out)
        stderr.print(f"wrote {written}")
    if plot is not None:
        for written in write_plan_plots(request, plot):
            stderr.print(f"wrote {written}")
    if json_out:
        emit_json(result)
    else:
        render(result)
    if result.interrupted:
        stderr.print(f"interrupted: the plan above is complete; the study {result.study_name} keeps its "
                     f"{result.trials} finished trials (continue with --resume)")
        raise typer.Exit(130)


def write_plan_plots(request, path: Path) -> list[Path]:
    """The iso-FLOP curves around the budget, the near-optimal band and the Pareto front of a plan."""
    from moeplan.planner.curves import band_points, iso_flop, pareto
    from moeplan.plots import band_figure, iso_flop_figure, pareto_figure, save, with_suffix

    c = request.compute
    return [save(iso_flop_figure(iso_flop(request, [c / 10, c, c * 10])), with_suffix(path, "isoflop")),
            save(band_figure(band_points(request)), with_suffix(path, "band")),
            save(pareto_figure(pareto(request)), with_suffix(path, "pareto"))]


def _shape(p) -> str:
    a = p.architecture
    shared = f" + {a.n_shared_experts} shared" if a.n_shared_experts else ""
    return (f"{a.n_layers} layers x d_hidden {a.d_hidden} ({a.n_heads} heads of {a.d_head}, {a.n_kv_heads} kv); "
            f"{a.n_experts} experts of width {a.d_expert}, top-{a.top_k}{shared}")


def render(p) -> None:
    t = Table(show_header=False, box=None, pad_edge=False, title=f"moeplan plan: {p.compute:.3g} FLOPs",
              title_justify="left", title_style="bold")
    t.add_column(style="bold cyan", no_wrap=True)
    t.add_column()
    t.add_row("architecture", _shape(p))
    t.add_row("parameters", f"{human(p.total.all)} total ({human(p.total.without_embeddings)} non-embedding), "
                            f"{human(p.active.all)} active ({human(p.active.without_embeddings)}); "
                            f"N/N_a {p.total_over_active:.1f}; G {p.activated_experts:g}, S {p.shared_ratio:.3f}")
    t.add_row("training", f"{human(p.tokens)} tokens ({p.tokens_per_param:.1f} per parameter), "
                          f"{human(p.train_flops_per_token)} FLOPs/token ({p.convention.value})")
    interval = (f", 95% interval [{p.loss_interval[0]:.4f}, {p.loss_interval[1]:.4f}] over the fit's bootstrap"
                if p.loss_interval else "")
    source = "fitted constants" if p.request.law_params else ", ".join(p.law_constants_source)
    t.add_row("predicted loss", f"[bold]{p.loss:.4f}[/bold] ({p.law}, {source}{interval}); {p.band_size} "
                                f"configurations within {p.band_tolerance} of it")
    t.add_row("memory", f"{p.weight_memory_gb:,.0f} GB weights at {p.request.bytes_per_param:g} bytes per parameter, "
                        f"{p.training_memory_gb:,.0f} GB training state")
    t.add_row("[LING]", f"EL {p.efficiency_leverage:.2f}: worth {p.dense_equivalent_compute:.3g} dense FLOPs; "
                        f"suggested lr {p.ling_learning_rate:.2e}, batch {human(p.ling_batch_tokens)} tokens")
    for b in p.binding or []:
        also = f", also breaking {'; '.join(b.also)}" if b.also else ""
        t.add_row("binding", f"[yellow]{b.constraint}[/yellow] ({b.neighbour} would lower the loss by "
                             f"{b.loss_gain:.4f}{also})")
    if not p.binding:
        t.add_row("binding", "none: an interior optimum")
    for e in p.extrapolation:
        t.add_row("extrapolation", f"[yellow]{e}[/yellow]")
    if p.verified:
        t.add_row("verified", f"regret {p.regret:.3g} against {p.certificate_points:,} enumerated configurations")
    t.add_row("search", f"{p.points_evaluated:,} of {p.space_size:,} configurations evaluated; "
                        f"study {escape(p.study_name)} in {escape(p.storage)} ({p.trials} trials)")
    stdout.print(t)
    rows = p.pareto_front if p.pareto_front else p.alternatives
    if rows:
        alt = Table(title="pareto front" if p.pareto_front else "near-optimal alternatives", title_justify="left",
                    caption="l layers, d d_hidden, n_e experts of width d_exp, top-k, n_s shared")
        for col in ("l", "d", "d_exp", "n_e", "k", "n_s", "total", "active", "tokens", "loss"):
            alt.add_column(col, justify="right", no_wrap=True)
        for c in rows[:10]:
            alt.add_row(str(c.n_layers), str(c.d_hidden), str(c.d_expert), str(c.n_experts), str(c.top_k),
                        str(c.n_shared_experts), human(c.total_params), human(c.active_params), human(c.tokens),
                        f"{c.loss:.4f}")
        stdout.print(alt)
    stdout.print("[dim]assumptions: " + " | ".join(p.assumptions) + "[/dim]")
