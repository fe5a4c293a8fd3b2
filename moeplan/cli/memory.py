"""`moeplan memory CONFIG --gpus N --gpu h100 --tp 2 --ep 64 --pp 8`: memory per device of one layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from pydantic import ValidationError
from rich.table import Table

from moeplan.cli.common import JsonOpt, SeqLenOpt, emit_json, human, stdout
from moeplan.errors import UsageError
from moeplan.flops.hf import validation_message

HW = "Hardware (overrides the catalogue)"
TRAIN = "Training choices"

ConfigArg = Annotated[Path, typer.Argument(help="moeplan architecture JSON, plan JSON, or HF config.json.")]
GpusOpt = Annotated[int, typer.Option("--gpus", min=1, help="Devices in the job.")]
GpuOpt = Annotated[str, typer.Option("--gpu", help="Accelerator: a100-80g, h100, h800, h200, b200, gb200, mi300x, "
                                                    "tpu-v5p (moeplan/cluster/data/accelerators.json).")]


def _hw(name: str, help: str):
    return Annotated[float | None, typer.Option(name, help=help, rich_help_panel=HW)]


def _train(name: str, help: str, kind=float):
    return Annotated[kind, typer.Option(name, help=help, rich_help_panel=TRAIN)]


HbmOpt = _hw("--hbm-gb", "HBM per device (GiB).")
Bf16Opt = _hw("--bf16-flops", "Peak dense bf16 FLOP/s.")
Fp8FlopsOpt = _hw("--fp8-flops", "Peak dense fp8 FLOP/s.")
HbmBwOpt = _hw("--hbm-tbps", "HBM bandwidth, TB/s.")
DomainOpt = Annotated[int | None, typer.Option("--domain", min=1, help="Devices per NVLink domain.", rich_help_panel=HW)]
ScaleupOpt = _hw("--scaleup-gbps", "NVLink bandwidth per device, GB/s one way.")
InternodeOpt = _hw("--internode-gbps", "Inter-node bandwidth per device, GB/s one way.")
Fp8Opt = Annotated[bool, typer.Option("--fp8", help="fp8 GEMMs (fp8 peak; GEMM inputs kept in 1 byte).",
                                      rich_help_panel=TRAIN)]
RecomputeOpt = Annotated[Literal["none", "selective", "full"], typer.Option(
    "--recompute", help="Activation recompute (Korthikanti et al. 2022).", rich_help_panel=TRAIN)]
ModulesOpt = Annotated[str, typer.Option("--recompute-modules", help="Selective recompute modules, comma-separated: "
                                         "core_attn, layernorm, mla_up_proj, moe_act, mlp, shared_experts.",
                                         rich_help_panel=TRAIN)]
WeightBytesOpt = _train("--weight-bytes", "Bytes per weight.")
GradBytesOpt = _train("--grad-bytes", "Bytes per gradient (Megatron: fp32 main grads).")
MasterBytesOpt = _train("--master-bytes", "Bytes per master weight.")
MomentBytesOpt = _train("--moment-bytes", "Bytes of both Adam moments.")
NoDistOptOpt = Annotated[bool, typer.Option("--no-distributed-optimizer", help="Replicate optimizer state over DP.",
                                            rich_help_panel=TRAIN)]
CapacityOpt = _train("--capacity-factor", "Token copies per expert slot (1: balanced, dropless).")
ReserveOpt = _train("--reserve-gib", "Framework reserve per device (CUDA context, NCCL, fragmentation).")
PriceOpt = Annotated[float | None, typer.Option("--price-per-gpu-hour", min=0, help="Price per device-hour, for a cost line.")]


def cluster_of(gpus, gpu, hbm_gb, bf16_flops, fp8_flops, hbm_tbps, domain, scaleup_gbps, internode_gbps, fp8, recompute,
               modules, weight_bytes, grad_bytes, master_bytes, moment_bytes, no_dist, capacity, reserve, price):
    """The `Cluster` the options describe, or one usage error."""
    from moeplan.cluster.memory import MemoryOptions
    from moeplan.cluster.report import Cluster

    try:
        options = MemoryOptions(
            weight_bytes=weight_bytes, grad_bytes=grad_bytes, master_bytes=master_bytes, moment_bytes=moment_bytes,
            distributed_optimizer=not no_dist, recompute=recompute,
            recompute_modules=tuple(m.strip() for m in modules.split(",") if m.strip()),
            capacity_factor=capacity, fp8=fp8, reserve_gib=reserve)
        cluster = Cluster(gpus=gpus, gpu=gpu, hbm_gb=hbm_gb, bf16_flops=bf16_flops, fp8_flops=fp8_flops,
                          hbm_tbps=hbm_tbps, domain=domain, scaleup_gbps=scaleup_gbps, internode_gbps=internode_gbps,
                          memory=options, price_per_gpu_hour=price)
    except ValidationError as err:
        raise UsageError(validation_message(err)) from None
    cluster.device()  # unknown gpu or bad override: a usage error now
    return cluster


def memory_command(
    config: ConfigArg,
    gpus: GpusOpt,
    gpu: GpuOpt = "h100",
    tp: Annotated[int, typer.Option("--tp", min=1, help="Tensor parallel.")] = 1,
    cp: Annotated[int, typer.Option("--cp", min=1, help="Context parallel.")] = 1,
    pp: Annotated[int, typer.Option("--pp", min=1, help="Pipeline stages.")] = 1,
    vp: Annotated[int, typer.Option("--vp", min=1, help="Virtual stages per pipeline rank.")] = 1,
    ep: Annotated[int, typer.Option("--ep", min=1, help="Expert parallel.")] = 1,
    etp: Annotated[int, typer.Option("--etp", min=1, help="Expert tensor parallel.")] = 1,
    micro_batch: Annotated[int, typer.Option("--micro-batch", min=1, help="Sequences per micro-batch.")] = 1,
    global_batch: Annotated[int | None, typer.Option("--global-batch", min=1, help="Sequences per step.")] = None,
    seq_len: SeqLenOpt = None,
    hbm_gb: HbmOpt = None, bf16_flops: Bf16Opt = None, fp8_flops: Fp8FlopsOpt = None, hbm_tbps: HbmBwOpt = None,
    domain: DomainOpt = None, scaleup_gbps: ScaleupOpt = None, internode_gbps: InternodeOpt = None,
    fp8: Fp8Opt = False, recompute: RecomputeOpt = "selective", recompute_modules: ModulesOpt = "core_attn",
    weight_bytes: WeightBytesOpt = 2.0, grad_bytes: GradBytesOpt = 4.0, master_bytes: MasterBytesOpt = 4.0,
    moment_bytes: MomentBytesOpt = 8.0, no_distributed_optimizer: NoDistOptOpt = False,
    capacity_factor: CapacityOpt = 1.0, reserve_gib: ReserveOpt = 3.0,
    json_out: JsonOpt = False,
) -> None:
    """Memory per device of an architecture on one parallel layout: every term, every assumption, fits or not."""
    from moeplan.cluster.layout import Layout
    from moeplan.cluster.report import evaluate
    from moeplan.flops.hf import load_architecture

    arch = load_architecture(config, seq_len)
    cluster = cluster_of(gpus, gpu, hbm_gb, bf16_flops, fp8_flops, hbm_tbps, domain, scaleup_gbps, internode_gbps,
                         fp8, recompute, recompute_modules, weight_bytes, grad_bytes, master_bytes, moment_bytes,
                         no_distributed_optimizer, capacity_factor, reserve_gib, None)
    try:
        layout = Layout(world=gpus, tp=tp, cp=cp, pp=pp, vp=vp, ep=ep, etp=etp, micro_batch=micro_batch,
                        global_batch=global_batch)
    except ValidationError as err:
        raise UsageError(validation_message(err)) from None
    result = evaluate(arch, cluster, layout, tokens=0.0)
    if json_out:
        emit_json(result)
        return
    render_memory(result)


def render_memory(p) -> None:
    m = p.memory
    t = Table(title=f"memory per device: {p.accelerator.name}, {p.gpus} devices", title_justify="left",
              title_style="bold", show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold cyan", no_wrap=True)
    t.add_column(justify="right", no_wrap=True)
    t.add_column()
    rows = [("weights", m.weights, "bf16 copy of the stage's parameters (experts over EP x ETP)"),
            ("gradients", m.gradients, "main gradients"),
            ("optimizer", m.optimizer, "master weights and Adam moments (sharded if distributed)"),
            ("activations", m.activations, f"{m.in_flight_micro_batches:g} micro-batches in flight on the first stage"
                                            if m.stage == "first" else "last stage: one micro-batch, fp32 logits"),
            ("dispatch buffers", m.dispatch_buffers, "all-to-all send and receive of one MoE layer"),
            ("reserve", m.reserve, "CUDA context, NCCL, fragmentation")]
    for name, gib, why in rows:
        t.add_row(name, f"{gib:,.2f} GiB", f"[dim]{why}[/dim]")
    verdict = "[green]fits[/green]" if m.fits else "[red]does not fit[/red]"
    t.add_row("total", f"[bold]{m.total:,.2f} GiB[/bold]", f"of {m.capacity:g} GiB: {verdict} ({m.stage} stage)")
    t.add_row("Megatron-LM", f"{sum(m.megatron_formula):,.2f} GiB",
              f"[dim]theoretical_memory_usage.py: {m.megatron_formula[0]:,.2f} weights+optimizer, "
              f"{m.megatron_formula[1]:,.2f} activations (no EP split of experts)[/dim]")
    stdout.print(t)
    stdout.print(f"layout: {p.layout.describe()}; recompute {p.recompute}")
    for problem in p.layout_problems:
        stdout.print(f"[yellow]Megatron-Core would refuse: {problem}[/yellow]")
    stdout.print(f"speed: step {p.step_time_s:.3g} s, {human(p.tokens_per_s_per_gpu)} tokens/s per device, "
                 f"MFU {p.mfu:.1%}")
    stdout.print("[dim]assumptions: " + " | ".join(p.assumptions) + "[/dim]")
