"""`moeplan layout CONFIG --gpus 1024 --gpu h100 --tokens 15e12`: the fastest layouts that fit."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import typer
from pydantic import BaseModel, ConfigDict
from rich.table import Table

from rich.console import Console
from rich.measure import Measurement

from moeplan.cli.common import JsonOpt, SeqLenOpt, emit_json, human, stderr, stdout
from moeplan.cli.memory import (Bf16Opt, CapacityOpt, ConfigArg, DomainOpt, Fp8FlopsOpt, Fp8Opt, GpuOpt, GpusOpt,
                                GradBytesOpt, HbmBwOpt, HbmOpt, InternodeOpt, MasterBytesOpt, ModulesOpt,
                                MomentBytesOpt, NoDistOptOpt, PriceOpt, ReserveOpt, ScaleupOpt, WeightBytesOpt,
                                cluster_of)
from moeplan.errors import UsageError


class LayoutReport(BaseModel):
    """The best layouts of one architecture on one cluster, fastest first."""

    model_config = ConfigDict(frozen=True)

    best: list  # ClusterPlan, typed loosely so the CLI module imports nothing heavy at load time
    layouts_considered: int
    layouts_fitting: int


def layout_command(
    config: ConfigArg,
    gpus: GpusOpt,
    tokens: Annotated[float, typer.Option("--tokens", help="Training tokens (for days and GPU-hours).")],
    gpu: GpuOpt = "h100",
    global_batch: Annotated[int, typer.Option("--global-batch", min=1, help="Sequences per optimizer step.")] = 1024,
    top: Annotated[int, typer.Option("--top", min=1, help="Layouts to show.")] = 5,
    seq_len: SeqLenOpt = None,
    hbm_gb: HbmOpt = None, bf16_flops: Bf16Opt = None, fp8_flops: Fp8FlopsOpt = None, hbm_tbps: HbmBwOpt = None,
    domain: DomainOpt = None, scaleup_gbps: ScaleupOpt = None, internode_gbps: InternodeOpt = None,
    fp8: Fp8Opt = False, recompute_modules: ModulesOpt = "core_attn",
    weight_bytes: WeightBytesOpt = 2.0, grad_bytes: GradBytesOpt = 4.0, master_bytes: MasterBytesOpt = 4.0,
    moment_bytes: MomentBytesOpt = 8.0, no_distributed_optimizer: NoDistOptOpt = False,
    capacity_factor: CapacityOpt = 1.0, reserve_gib: ReserveOpt = 3.0, price_per_gpu_hour: PriceOpt = None,
    export: Annotated[Literal["megatron", "torchtitan"] | None, typer.Option(
        "--export", help="Print (or --out: write) the fastest layout as a Megatron-LM script or torchtitan TOML.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Where --export writes (default: stdout).")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate for --export (default: [LING]'s).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """The fastest parallel layouts that fit memory, with step time, days and GPU-hours for --tokens."""
    from moeplan.cluster.report import evaluate
    from moeplan.cluster.search import best_layout
    from moeplan.flops.hf import load_architecture

    if not tokens > 0:
        raise UsageError("--tokens must be positive")
    arch = load_architecture(config, seq_len)
    cluster = cluster_of(gpus, gpu, hbm_gb, bf16_flops, fp8_flops, hbm_tbps, domain, scaleup_gbps, internode_gbps,
                         fp8, "selective", recompute_modules, weight_bytes, grad_bytes, master_bytes, moment_bytes,
                         no_distributed_optimizer, capacity_factor, reserve_gib, price_per_gpu_hour)
    s, _ = best_layout(arch, gpus, cluster.device(), global_batch, cluster.memory)
    order = s.fitting()
    best = [evaluate(arch, cluster, s.layout(int(k)), tokens,
                     cluster.memory.model_copy(update={"recompute": s.recompute(int(k))}), considered=len(s))
            for k in order[:top]]
    report = LayoutReport(best=best, layouts_considered=len(s), layouts_fitting=len(order))
    if export is not None:
        from moeplan.cluster.launch import job_text
        from moeplan.files import write_text_atomic

        first = best[0]
        text = job_text(arch, first.layout, cluster.memory.model_copy(update={"recompute": first.recompute}),
                        tokens, export, lr)
        if out is None:
            sys.stdout.write(text)
            return
        stderr.print(f"wrote {write_text_atomic(out, text)}")
    elif out is not None:
        raise UsageError("--out goes with --export")
    if json_out:
        emit_json(report)
        return
    t = Table(title=f"fastest layouts: {gpus} x {cluster.device().name}, {human(tokens)} tokens",
              title_justify="left", caption=f"{len(order):,} of {len(s):,} layouts fit")
    t.caption += "; TP/CP/PP/VP/EP/ETP/DP, micro-batch"
    for col in ("layout", "mbs", "recompute", "GiB/device", "step s", "tokens/s/dev", "MFU", "days",
                "GPU-hours") + (("cost",) if price_per_gpu_hour else ()):
        t.add_column(col, justify="right", no_wrap=True)
    for p in best:
        L = p.layout
        row = ["/".join(str(x) for x in (L.tp, L.cp, L.pp, L.vp, L.ep, L.etp, L.dp)), str(L.micro_batch)]
        row += [p.recompute, f"{p.memory.total:.1f}", f"{p.step_time_s:.3g}", human(p.tokens_per_s_per_gpu),
                f"{p.mfu:.1%}", f"{p.days:,.1f}", human(p.gpu_hours)]
        row += [f"{p.cost:,.0f}"] if p.cost is not None else []
        t.add_row(*row)
    print_wide(t)
    if best:
        stdout.print("[dim]assumptions: " + " | ".join(best[0].assumptions) + "[/dim]")


def print_wide(table: Table) -> None:
    """A table at its natural width even in a pipe or a narrow terminal: numbers are never cut off."""
    need = Measurement.get(stdout, stdout.options.update_width(10_000), table).maximum
    (stdout if need <= stdout.width else Console(highlight=False, width=need)).print(table)
