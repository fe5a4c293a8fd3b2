"""`moeplan plan`: the buildable MoE with the lowest predicted loss for a compute budget."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from rich import box

from moeplan.cli.common import (ConventionOpt, ForceOpt, JsonOpt, emit_json, human, progress, stderr, stdout,
                                trial_progress)
from moeplan.cli.options import convention_option
from moeplan.errors import MoeplanError, UsageError
from moeplan.files import check_output
from moeplan.flops.hf import validation_message
from moeplan.plots import FORMATS, with_suffix

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
    mfu: Annotated[float | None, _opt("--mfu", help="Model FLOPs utilisation for --gpu-hours [default: 0.4].")] = None,
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
    family: Annotated[str, _opt("--family", help="transformers model_type to build: fixes router biases, q/k norms, "
                                "shared experts and dense layers (glm4_moe, qwen3_moe, qwen2_moe, mixtral, ...).",
                                panel=PRIORS)] = "glm4_moe",
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
        Literal["loss", "efficient", "pareto"],
        _opt("--objective", help="loss; efficient (fewest FLOPs/token within --tolerance); pareto (3-objective "
             "study: the non-dominated trials of the near-optimal band, not a full Pareto front).", panel=SEARCH)
    ] = "loss",
    tolerance: Annotated[float, _opt("--tolerance", help="Loss tolerance of the near-optimal band.", panel=SEARCH)] = 0.001,
    trials: Annotated[int | None, _opt("--trials", help="Optuna trials (default: seeds+plan+band).", panel=SEARCH)] = None,
    seed: Annotated[int, _opt("--seed", help="Sampler seed.", panel=SEARCH)] = 0,
    storage: Annotated[str | None, _opt("--storage", help="Optuna storage URL (default sqlite:///moeplan.db; "
                                        ":memory: keeps no study).",
                                        panel=SEARCH)] = None,
    study: Annotated[str | None, _opt("--study", help="Study name (default: derived from the request).",
                                      panel=SEARCH)] = None,
    workers: Annotated[int, _opt("--workers", min=1, help="Processes running trials on the study.",
                                 panel=SEARCH)] = 1,
    resume: Annotated[bool, _opt("--resume", help="Continue the study after a crash (no other worker running).",
                                 panel=SEARCH)] = False,
    verify: Annotated[bool, _opt("--verify", help="Enumerate the whole space and report regret (minutes at 1e22).",
                                 panel=SEARCH)] = False,
    export: Annotated[Literal["hf", "megatron"] | None, _opt("--export", help="Also write the plan as hf or megatron.",
                                                               panel=SEARCH)] = None,
    out: Annotated[str | None, _opt("--out", help="Where --export writes: a file, or a folder (ending in /).",
                                    panel=SEARCH)] = None,
    plot: Annotated[Path | None, _opt("--plot", help="Write iso-FLOP, band and Pareto figures (PATH-*.png|svg).",
                                      panel=SEARCH)] = None,
    dpi: Annotated[int, _opt("--dpi", min=10, max=2400, help="Resolution of PNG figures.", panel=SEARCH)] = 120,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Plan a pre-training run: architecture, tokens and predicted loss for a compute budget."""
    from moeplan.planner import PlanRequest, Priors, plan  # keeps `moeplan count` free of optuna's import
    from moeplan.planner.family import plan_family
    from moeplan.planner.study import DEFAULT_STORAGE

    if flops is not None and gpu_hours is None:
        given = [name for name, value in (("--gpu", gpu), ("--gpu-flops", gpu_flops), ("--mfu", mfu))
                 if value is not None]
        if given:
            raise UsageError(f"{' and '.join(given)}: only for --gpu-hours (converting it into FLOPs), not with "
                             "--flops")
    try:
        plan_family(family)
    except MoeplanError as err:
        raise UsageError(str(err)) from None
    # Check every output path before any work: a late error would throw the plan away.
    if (export is None) != (out is None):
        raise UsageError("--export and --out go together")
    if export is not None:
        from moeplan.flops.export import export_target

        export_target(out, export, force)
    if plot is not None:
        check_output(plot, True, "--plot", FORMATS)
        for name in PLOTS:
            check_output(with_suffix(plot, name), force, "--plot")

    fields = dict(
        flops=flops, gpu_hours=gpu_hours, gpu=gpu, gpu_flops=gpu_flops, mfu=0.4 if mfu is None else mfu,
        max_params=max_params,
        memory_gb=memory_gb, bytes_per_param=bytes_per_param, max_tokens=max_tokens, seq_len=seq_len,
        vocab_size=vocab, tie_embeddings=tie_embeddings, d_head=d_head, gqa_group=gqa_group,
        convention=convention_option(convention), law=law, law_params=law_params, tensor_parallel=tp,
        expert_parallel=ep, pipeline_parallel=pp, hidden_align=hidden_align, expert_align=expert_align,
        objective=objective, tolerance=tolerance, trials=trials, seed=seed, study_name=study,
        workers=workers, resume=resume, family=family,
        storage=storage if storage is not None else DEFAULT_STORAGE,  # the CLI keeps studies; the API: :memory:
    )
    prior_fields = dict(
        min_layers=min_layers, max_layers=max_layers, min_d_hidden=min_d_hidden, max_d_hidden=max_d_hidden,
        min_aspect=min_aspect, max_aspect=max_aspect, min_expert_ratio=min_expert_ratio,
        max_expert_ratio=max_expert_ratio, max_experts=max_experts, max_top_k=max_top_k, max_shared=max_shared,
        dense_layers=dense_layers, min_tokens_per_param=min_tokens_per_param,
    )
    try:
        request = PlanRequest(**fields, priors=Priors(**prior_fields))
    except ValidationError as err:
        raise UsageError(validation_message(err)) from None
    doing = "planning and verifying (enumerates the whole space)" if verify else "planning"
    with trial_progress(f"{doing}: trials", trials):
        result = plan(request, verify=verify)
    if export is not None:
        from moeplan.flops.export import write_export

        written = write_export(result.architecture, export, out, family if export == "hf" else None, force)
        stderr.print(f"wrote {escape(str(written))}")
    if plot is not None:
        for written in write_plan_plots(request, plot, result, dpi, force):
            stderr.print(f"wrote {escape(str(written))}")
    if json_out:
        emit_json(result)
    else:
        render(result)
    if result.interrupted:
        stderr.print(f"interrupted: the plan above is complete; the study {result.study_name} keeps its "
                     f"{result.trials} finished trials (continue with --resume)")
        raise typer.Exit(130)


PLOTS = ("isoflop", "band", "pareto")


def write_plan_plots(request, path: Path, result=None, dpi: int = 120, force: bool = True) -> list[Path]:
    """The iso-FLOP curves around the budget, the near-optimal band (the plan marked) and the loss-versus-
    memory Pareto front of a plan, one file each (PATH-isoflop.png, ...)."""
    from moeplan.planner.curves import band_points, iso_flop, pareto
    from moeplan.plots import band_figure, iso_flop_figure, pareto_figure, save

    c = request.compute
    figures = {
        "isoflop": lambda: iso_flop_figure(iso_flop(request, [c / 10, c, c * 10])),
        "band": lambda: band_figure(band_points(request), result),
        "pareto": lambda: pareto_figure(pareto(request), request.bytes_per_param),
    }
    written = []
    with progress("drawing figures", len(PLOTS)) as advance:
        for name in PLOTS:
            written.append(save(figures[name](), with_suffix(path, name), dpi, force))
            advance(1)
    return written


def _shape(p) -> str:
    a = p.architecture
    shared = f" + {a.n_shared_experts} shared" if a.n_shared_experts else ""
    return (f"{a.n_layers} layers x d_hidden {a.d_hidden} ({a.n_heads} heads of {a.d_head}, {a.n_kv_heads} kv); "
            f"{a.n_experts} experts of width {a.d_expert}, top-{a.top_k}{shared}")


def _budget(p) -> str:
    """The budget as given: FLOPs, or GPU-hours with the accelerator, its peak and the MFU that convert it."""
    r = p.request
    if r.gpu_hours is None:
        return f"{p.compute:.3g} FLOPs"
    from moeplan.planner.request import GPU_PEAK_FLOPS

    peak = r.gpu_flops or GPU_PEAK_FLOPS[r.gpu.lower()]
    gpu = f"{r.gpu} at " if r.gpu and not r.gpu_flops else ""
    return (f"{p.compute:.3g} FLOPs = {r.gpu_hours:,.6g} GPU-hours x {gpu}{peak / 1e12:,.4g} TFLOP/s peak x "
            f"MFU {r.mfu:g}")


def render(p) -> None:
    t = Table(show_header=False, box=None, pad_edge=False, title=f"moeplan plan: {escape(_budget(p))}",
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
    t.add_row("predicted loss", f"[bold]{p.loss:.4f}[/bold] ({p.law}, {escape(source)}{interval}); "
                                f"{p.band_size:,} configurations within {p.band_tolerance:g} of it")
    t.add_row("family", f"{p.request.family} (moeplan export plan.json builds this model in transformers)")
    t.add_row("memory", f"{p.weight_memory_gb:,.0f} GB weights, {p.training_memory_gb:,.0f} GB training state")
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
                        f"study {escape(p.study_name)} in {escape(p.storage)} ({p.trials:,} trials)")
    stdout.print(t)
    if p.pareto_front:
        rows, title = p.pareto_front, "non-dominated trials of the band (not a full Pareto front)"
    else:
        rows, title = p.alternatives, "the plan (*) and near-optimal alternatives"
    alt = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                caption="l layers, d d_hidden, n_e experts of width d_exp, k routed, n_s shared",
                caption_justify="left")
    for col in ("", "l", "d", "d_exp", "n_e", "k", "n_s", "total", "active", "tokens", "loss"):
        alt.add_column(col, justify="right", no_wrap=True)
    chosen = _candidate_of(p)
    for c in ([] if p.pareto_front else [chosen]) + list(rows[:10]):
        mark = "*" if _axes_of(c) == _axes_of(chosen) else ""
        alt.add_row(mark, str(c.n_layers), f"{c.d_hidden:,}", f"{c.d_expert:,}", str(c.n_experts), str(c.top_k),
                    str(c.n_shared_experts), human(c.total_params), human(c.active_params), human(c.tokens),
                    f"{c.loss:.4f}")
    stdout.print(alt)
    stdout.print("[dim]assumptions: " + escape(" | ".join(p.assumptions)) + "[/dim]")


def _axes_of(c) -> tuple:
    return (c.n_layers, c.d_hidden, c.d_expert, c.n_experts, c.top_k, c.n_shared_experts)


def _candidate_of(p):
    """The chosen plan as a row of the alternatives table (same fields, same rounding as the rows)."""
    from moeplan.planner.plan import Candidate

    a = p.architecture
    return Candidate(n_layers=a.n_layers, d_hidden=a.d_hidden, d_expert=a.d_expert, n_experts=a.n_experts,
                     top_k=a.top_k, n_shared_experts=a.n_shared_experts, loss=p.loss, total_params=p.total.all,
                     active_params=p.active.all, tokens=p.tokens, train_flops_per_token=p.train_flops_per_token)
