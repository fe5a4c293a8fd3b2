"""`moeplan plan`: the buildable MoE with the lowest predicted loss for a compute budget."""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from rich import box

from moeplan.cli.common import ForceOpt, JsonOpt, emit_json, human, progress, stderr, stdout, trial_progress
from moeplan.cli.fields import FieldOption, WithOptions, nested, options_of
from moeplan.cli.options import convention_option
from moeplan.errors import MoeplanError, UsageError
from moeplan.files import check_output
from moeplan.jsonio import validation_message
from moeplan.plots import FORMATS, with_suffix

PRIORS = "Shape priors"
CAPS = "Budget and caps"
SEARCH = "Search and study"
CLUSTER = "Cluster"
DECIDE = "Decisions (docs/decisions.md)"


def _opt(*names, help: str, panel: str, **kw):
    return typer.Option(*names, help=help, rich_help_panel=panel, **kw)


# The request's fields as options (moeplan.cli.fields): the help panel of each, in the request's order.
REQUEST_PANELS = {field: panel for panel, fields in {
    CAPS: "flops gpu_hours gpu gpu_flops mfu max_params memory_gb bytes_per_param max_tokens convention",
    PRIORS: "seq_len vocab_size tie_embeddings d_head gqa_group family tensor_parallel expert_parallel "
            "pipeline_parallel hidden_align expert_align",
    SEARCH: "law law_params objective tolerance trials seed storage study_name workers resume band_keep "
            "max_memory_gb",
    DECIDE: "laws robust serve_tokens serve_context target_loss",
}.items() for field in fields.split()}
# Options named otherwise than --field-name: today's names, so users' commands keep working.
RENAMED = {"vocab_size": ("--vocab",), "memory_gb": ("--weights-gb", "--memory-gb"),
           "convention": ("--convention", "-c"), "tensor_parallel": ("--tp",), "expert_parallel": ("--ep",),
           "pipeline_parallel": ("--pp",), "study_name": ("--study",)}
CLUSTER_FIELDS = "gpus days hbm_gb price_per_gpu_hour global_batch"  # the cluster's gpu is --gpu's


@functools.cache
def request_options() -> list[FieldOption]:
    """Every option of `plan` that is a field of `PlanRequest` (its priors and cluster included)."""
    from moeplan.cluster.memory import MemoryOptions
    from moeplan.cluster.planning import ClusterBudget
    from moeplan.planner.request import PlanRequest, Priors
    from moeplan.store import DEFAULT_STORAGE

    # Read as text and converted by the command: a convention names the choices in its error; laws are a
    # comma-separated list. The CLI keeps its studies in a file (the field's description says so).
    overrides = {"convention": {"annotation": str}, "laws": {"annotation": str | None},
                 "storage": {"default": DEFAULT_STORAGE}}
    return [*options_of(PlanRequest, REQUEST_PANELS, RENAMED, overrides),
            *options_of(Priors, dict.fromkeys(Priors.model_fields, PRIORS), {}, prefix=("priors",)),
            *options_of(ClusterBudget, dict.fromkeys(CLUSTER_FIELDS.split(), CLUSTER), {}, prefix=("cluster",)),
            *options_of(MemoryOptions, {"fp8": CLUSTER}, {}, prefix=("cluster", "memory"))]


def _plan_command(
    ctx: typer.Context,
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
    **fields,
) -> None:
    """Plan a pre-training run: architecture, tokens and predicted loss for a compute budget."""
    from moeplan.planner import plan  # keeps `moeplan count` free of optuna's import
    from moeplan.planner.family import plan_family

    options = request_options()
    given = {o.path[-1] for o in options if ctx.get_parameter_source(o.parameter_name).name != "DEFAULT"}
    values = nested(options, fields)
    cluster = values.pop("cluster")
    if values["flops"] is not None and values["gpu_hours"] is None and cluster["gpus"] is None:
        extra = [f"--{name.replace('_', '-')}" for name in ("gpu", "gpu_flops", "mfu") if name in given]
        if extra:
            raise UsageError(f"{' and '.join(extra)}: only for --gpu-hours (converting it into FLOPs), not with "
                             "--flops")
    try:
        plan_family(values["family"])
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

    values["convention"] = convention_option(values["convention"])
    values["laws"] = _law_list(values["laws"])
    request = _request(values, cluster, "expert_parallel" in given)
    doing = "planning and verifying (enumerates the whole space)" if verify else "planning"
    with trial_progress(f"{doing}: trials", values["trials"]):
        result = plan(request, verify=verify)
    if export is not None:
        from moeplan.flops.export import write_export

        written = write_export(result.architecture, export, out, request.family if export == "hf" else None, force)
        stderr.print(f"wrote {written}")
    if plot is not None:
        for written in write_plan_plots(request, plot, result, dpi, force):
            stderr.print(f"wrote {written}")
    if json_out:
        emit_json(result)
    else:
        render(result)
    if result.search.interrupted:
        stderr.print(f"interrupted: the plan above is complete; the study {result.search.study_name} keeps its "
                     f"{result.search.trials} finished trials (continue with --resume)")
        raise typer.Exit(130)


def _request(values: dict, cluster: dict, ep_given: bool):
    """The `PlanRequest` of the options; with --gpus, its cluster (of --gpu's devices) and an EP that suits it."""
    from moeplan.cluster.planning import ClusterBudget
    from moeplan.planner.request import PlanRequest, Priors

    gpus = cluster["gpus"]
    if gpus is None:
        if any(v is not None for k, v in cluster.items() if k not in ("gpus", "memory")) or cluster["memory"]["fp8"]:
            raise UsageError("--days, --price-per-gpu-hour, --hbm-gb, --fp8 and --global-batch need --gpus")
    elif not ep_given:
        values["expert_parallel"] = math.gcd(gpus, 64)  # one node's EP 8 rarely holds a large MoE's state
    try:
        values["priors"] = Priors(**values["priors"])  # its errors name the prior alone, as the option does
        if gpus is not None:
            values["cluster"] = ClusterBudget(**cluster, gpu=values["gpu"] or "h100")
            values["cluster"].device()
            if values["gpu_hours"] is None and values["flops"] is None:
                values["gpu"] = None  # --gpu names the cluster's device here, not a --gpu-hours rate
        return PlanRequest(**values)
    except ValidationError as err:
        raise UsageError(validation_message(err)) from None


plan_command = WithOptions(_plan_command, request_options)


def _beyond(allocation, compute: float) -> str:
    fitted = allocation.fitted_range
    return f", fitted up to {fitted[1]:.0e}" if fitted and compute > fitted[1] else ""


PLOTS = ("isoflop", "band", "pareto")


def _law_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise UsageError("--laws takes law names or fitted JSON files separated by commas")
    return names


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
    compute = p.training.compute
    if r.gpu_hours is None:
        return f"{compute:.3g} FLOPs"
    from moeplan.planner.request import GPU_PEAK_FLOPS

    peak = r.gpu_flops or GPU_PEAK_FLOPS[r.gpu.lower()]
    gpu = f"{r.gpu} at " if r.gpu and not r.gpu_flops else ""
    return (f"{compute:.3g} FLOPs = {r.gpu_hours:,.6g} GPU-hours x {gpu}{peak / 1e12:,.4g} TFLOP/s peak x "
            f"MFU {r.mfu:g}")


def _cluster_rows(t, p) -> None:
    c, m, L = p.cluster, p.cluster.memory, p.cluster.layout
    refused = f" [red]Megatron-Core would refuse: {'; '.join(c.layout_problems)}[/red]" if c.layout_problems else ""
    t.add_row("cluster", f"{c.gpus} x {c.accelerator.name}; {L.describe()}; recompute {c.recompute}"
                         f"{', fp8' if c.fp8 else ''}{refused}")
    t.add_row("memory/device", f"{m.total:,.1f} of {m.capacity:g} GiB ({m.stage} stage): weights {m.weights:,.1f}, "
                               f"gradients {m.gradients:,.1f}, optimizer {m.optimizer:,.1f}, activations "
                               f"{m.activations:,.1f}, dispatch {m.dispatch_buffers:,.2f}, reserve {m.reserve:g}")
    cost = f", cost {c.cost:,.0f}" if c.cost is not None else ""
    t.add_row("speed", f"{human(c.tokens_per_s)} tokens/s ({human(c.tokens_per_s_per_gpu)} per device), MFU "
                       f"{c.mfu:.1%}, step {c.step_time_s:.3g} s, {c.optimizer_steps:,.0f} optimizer steps of "
                       f"{human(c.tokens_per_step)} tokens")
    t.add_row("calendar", f"{c.days:,.1f} days, {human(c.gpu_hours)} GPU-hours{cost}")
    w = p.without_prior
    if w is not None:
        t.add_row("no prior", f"without the tokens-per-parameter floor the law and the cluster pick {w.n_layers} x "
                              f"{w.d_hidden}, {w.n_experts} experts of {w.d_expert}, top-{w.top_k}"
                              f"{f' + {w.n_shared_experts} shared' if w.n_shared_experts else ''}: "
                              f"{human(w.total_params)} parameters, {human(w.tokens)} tokens "
                              f"({w.tokens / w.total_params:.1f} per parameter), loss {w.loss:.4f} "
                              f"({w.loss - p.law.loss:+.4f})")


def render(p) -> None:
    n, t_, law, s = p.counts, p.training, p.law, p.search
    t = Table(show_header=False, box=None, pad_edge=False, title=f"moeplan plan: {escape(_budget(p))}",
              title_justify="left", title_style="bold")
    t.add_column(style="bold cyan", no_wrap=True)
    t.add_column()
    t.add_row("architecture", _shape(p))
    t.add_row("parameters", f"{human(n.total.all)} total ({human(n.total.without_embeddings)} non-embedding), "
                            f"{human(n.active.all)} active ({human(n.active.without_embeddings)}); "
                            f"N/N_a {n.total_over_active:.1f}; G {n.activated_experts:g}, S {n.shared_ratio:.3f}")
    t.add_row("training", f"{human(t_.tokens)} tokens ({t_.tokens_per_param:.1f} per parameter), "
                          f"{human(n.train_flops_per_token)} FLOPs/token ({p.request.convention.value})")
    interval = (f", 95% interval [{law.loss_interval[0]:.4f}, {law.loss_interval[1]:.4f}] over the fit's bootstrap"
                if law.loss_interval else "")
    source = "fitted constants" if p.request.law_params else ", ".join(law.constants_source)
    t.add_row("predicted loss", f"[bold]{law.loss:.4f}[/bold] ({law.name}, {escape(source)}{interval}); "
                                f"{s.band_size:,} configurations within {p.request.tolerance:g} of it")
    t.add_row("family", f"{p.request.family} (moeplan export plan.json builds this model in transformers)")
    t.add_row("memory", f"{n.weight_memory_gb:,.0f} GB weights at {p.request.bytes_per_param:g} bytes/parameter, "
                        f"{n.training_memory_gb:,.0f} GB training state")
    t.add_row("[LING]", f"EL {law.efficiency_leverage:.2f}: worth {law.dense_equivalent_compute:.3g} dense FLOPs; "
                        f"suggested lr {t_.ling_learning_rate:.2e}, batch {human(t_.ling_batch_tokens)} tokens")
    t.add_row("allocation", escape("compute-optimal tokens of other papers' laws at this compute: " + "; ".join(
        f"{a.source} {human(a.tokens)} ({human(a.flops_per_token)} FLOPs/token{_beyond(a, t_.compute)})"
        for a in t_.allocations) + f"; the plan {human(t_.tokens)}"))
    for b in s.binding:
        also = f", also breaking {'; '.join(b.also)}" if b.also else ""
        t.add_row("binding", f"[yellow]{b.constraint}[/yellow] ({b.neighbour} would lower the loss by "
                             f"{b.loss_gain:.4f}{also})")
    if not s.binding:
        t.add_row("binding", "none: an interior optimum")
    for e in law.extrapolation:
        t.add_row("extrapolation", f"[yellow]{e}[/yellow]")
    for w in law.warnings:
        t.add_row("not identified", f"[yellow]{w}[/yellow]")
    if p.cluster is not None:
        _cluster_rows(t, p)
    if s.verified:
        t.add_row("verified", f"regret {s.regret:.3g} against {s.certificate_points:,} enumerated configurations")
    t.add_row("search", f"{s.points_evaluated:,} of {s.space_size:,} configurations evaluated; "
                        f"study {escape(s.study_name)} in {escape(s.storage)} ({s.trials:,} trials)")
    stdout.print(t)
    chosen = _design_of(p)
    if p.pareto is not None:
        rows, title = [f.design for f in p.pareto.points[:10]], (
            "exact Pareto fronts (loss against total parameters, and against serving FLOPs/token): the first 10 "
            "by total parameters")
    else:
        rows, title = [chosen, *s.alternatives[:10]], "the plan (*) and near-optimal alternatives"
    alt = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                caption="l layers, d d_hidden, n_e experts of width d_exp, k routed, n_s shared",
                caption_justify="left")
    for col in ("", "l", "d", "d_exp", "n_e", "k", "n_s", "total", "active", "tokens", "loss"):
        alt.add_column(col, justify="right", no_wrap=True)
    for c in rows:
        mark = "*" if c.axes == chosen.axes else ""
        alt.add_row(mark, str(c.n_layers), f"{c.d_hidden:,}", f"{c.d_expert:,}", str(c.n_experts), str(c.top_k),
                    str(c.n_shared_experts), human(c.total_params), human(c.active_params), human(c.tokens),
                    f"{c.loss:.4f}")
    stdout.print(alt)
    stdout.print("[dim]assumptions: " + escape(" | ".join(s.assumptions)) + "[/dim]")
    render_decisions(p)


def _design_of(p):
    """The chosen plan as a row of the alternatives table (same fields, same rounding as the rows)."""
    from moeplan.planner.designs import Design

    a, n = p.architecture, p.counts
    return Design(n_layers=a.n_layers, d_hidden=a.d_hidden, d_expert=a.d_expert, n_experts=a.n_experts,
                  top_k=a.top_k, n_shared_experts=a.n_shared_experts, total_params=n.total.all,
                  active_params=n.active.all, law_N=n.total.without_embeddings, law_N_a=n.active.without_embeddings,
                  tokens=p.training.tokens, train_flops_per_token=n.train_flops_per_token, loss=p.law.loss)


def render_decisions(p) -> None:
    """The robust, lifetime and Pareto sub-models, when the plan has them."""
    if p.robust is not None:
        render_robust(p.robust)
    if p.lifetime is not None:
        render_lifetime(p.lifetime)
    if p.pareto is not None:
        stdout.print(f"pareto: {len(p.pareto.points)} architectures on the exact loss-memory and loss-serving fronts "
                     f"(serving at context {p.pareto.serve_context}); study {p.pareto.study_name} holds them as "
                     "trials: moeplan dashboard shows the front")


def _cell(x: float) -> str:
    """A regret: 0 exactly, else three significant digits (regrets span 1e-6 to 1e-1 nats)."""
    return "inf" if x == float("inf") else ("0" if x == 0 else f"{x:.3g}")


def _role(role: str) -> str:
    head, _, names = role.partition(" of ")
    names = names.split(", ")
    return role if len(names) <= 3 else f"{head} of {', '.join(names[:2])} and {len(names) - 2} more"


def render_robust(r) -> None:
    """Disagreement table: each law's optimum and the minimax design, regret under each law."""
    many = len(r.laws) > 6  # bootstrap samples: summarise the columns
    t = Table(title="disagreement: regret of each design (rows) under each law (columns)", title_justify="left",
              caption=r.disagreement)
    t.add_column("design", overflow="fold")
    t.add_column("shape", overflow="fold")
    columns = ["worst", "median", "95th pct"] if many else r.laws + ["worst"]
    for col in columns:
        t.add_column(col, justify="right", no_wrap=True)
    rows = r.optima if not many else [r.point_estimate]
    rows = [*rows, r.minimax]
    for c in rows:
        if many:
            cells = [_cell(c.worst_regret), _cell(float(np.median(c.regret))),
                     _cell(float(np.percentile(c.regret, 95)))]
        else:
            cells = [_cell(x) for x in c.regret] + [_cell(c.worst_regret)]
        t.add_row(_role(c.role), c.design.shape(), *cells)
    stdout.print(t)
    certified = "exact over the whole space" if r.exact else "over the union of the laws' near-optimal bands"
    stdout.print(f"minimax regret {_cell(r.minimax.worst_regret)} ({certified}, {r.candidates_considered:,} "
                 f"candidates) against the point estimate's worst case {_cell(r.point_estimate.worst_regret)}")


def render_lifetime(life) -> None:
    """The cheapest design over its life beside the loss-optimal plan trained to the same loss."""
    t = Table(title=f"lifetime cost: train to loss {life.target_loss:.4f} ({life.target_source}), "
                    f"serve {human(life.serve_tokens)} tokens at context {life.serve_context}",
              title_justify="left", caption=f"lifetime FLOPs saved: {life.saving:.1%}")
    t.add_column("")
    t.add_column("cheapest (cost)", justify="right", no_wrap=True)
    t.add_column("loss plan", justify="right", no_wrap=True)
    cheap, plan = life.cheapest, life.loss_plan
    rows = (("shape", lambda c: c.design.shape()), ("active params", lambda c: human(c.design.active_params)),
            ("total params", lambda c: human(c.design.total_params)), ("tokens", lambda c: human(c.design.tokens)),
            ("predicted loss", lambda c: f"{c.design.loss:.4f}"), ("train FLOPs", lambda c: f"{c.train_flops:.4g}"),
            ("serve FLOPs/token", lambda c: f"{c.serve_flops_per_token:.4g}"),
            ("serve FLOPs", lambda c: f"{c.serve_flops:.4g}"),
            ("lifetime FLOPs", lambda c: f"[bold]{c.lifetime_flops:.4g}[/bold]"),
            ("KV cache bytes/token", lambda c: human(c.kv_cache_bytes_per_token)))
    for name, cell in rows:
        t.add_row(name, cell(cheap), cell(plan))
    stdout.print(t)
