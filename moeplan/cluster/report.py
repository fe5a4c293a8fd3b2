"""What a cluster does with one architecture: the request (`Cluster`) and the answer (`ClusterPlan`)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt

from moeplan.cluster.hardware import Accelerator, accelerator
from moeplan.cluster.layout import Layout, layout_problems
from moeplan.cluster.memory import GIB, MemoryOptions, megatron_theoretical_bytes, memory_of, model_shape
from moeplan.cluster.search import best_layout
from moeplan.cluster.throughput import Efficiency, calibrated, step_parts, step_time
from moeplan.flops.architecture import Architecture
from moeplan.flops.conventions import Convention
from moeplan.flops.count import count

SECONDS_PER_DAY = 86400.0


class Cluster(BaseModel):
    """A cluster: how many devices of which kind, any catalogue field overridden, and the training choices."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gpus: PositiveInt = Field(description="devices in the job")
    gpu: str = Field("h100", description="catalogue key (moeplan/cluster/data/accelerators.json)")
    hbm_gb: PositiveFloat | None = Field(None, description="HBM per device (GiB), overriding the catalogue")
    bf16_flops: PositiveFloat | None = None
    fp8_flops: PositiveFloat | None = None
    hbm_tbps: PositiveFloat | None = None
    domain: PositiveInt | None = None
    scaleup_gbps: PositiveFloat | None = None
    internode_gbps: PositiveFloat | None = None
    memory: MemoryOptions = MemoryOptions()
    price_per_gpu_hour: PositiveFloat | None = Field(None, description="price per device-hour, for the cost line")

    def device(self) -> Accelerator:
        return accelerator(self.gpu, hbm_gb=self.hbm_gb, bf16_flops=self.bf16_flops, fp8_flops=self.fp8_flops,
                           hbm_tbps=self.hbm_tbps, domain=self.domain, scaleup_gbps=self.scaleup_gbps,
                           internode_gbps=self.internode_gbps)


class MemoryBreakdown(BaseModel):
    """GiB per device on the more loaded pipeline stage."""

    model_config = ConfigDict(frozen=True)

    weights: float
    gradients: float
    optimizer: float
    activations: float
    dispatch_buffers: float
    reserve: float
    total: float
    capacity: float = Field(description="HBM per device, GiB")
    fits: bool
    stage: Literal["first", "last"]
    in_flight_micro_batches: float = Field(description="micro-batches whose activations the first stage holds")
    megatron_formula: tuple[float, float] = Field(
        description="Megatron-LM theoretical_memory_usage.py: (weights and optimizer, activations), GiB")


class ClusterPlan(BaseModel):
    """One architecture on one cluster: layout, memory per device, speed, and the calendar for `tokens`."""

    model_config = ConfigDict(frozen=True)

    accelerator: Accelerator
    gpus: int
    layout: Layout
    layout_problems: list[str] = Field(description="why Megatron-Core would refuse the layout (empty: accepted)")
    recompute: str
    fp8: bool
    memory: MemoryBreakdown
    step_time_s: float
    tokens_per_step: float
    tokens_per_s: float
    tokens_per_s_per_gpu: float
    mfu: float = Field(description="model FLOPs (exact convention) / bf16 peak")
    tokens: float
    optimizer_steps: float
    days: float
    gpu_hours: float
    cost: float | None
    efficiency: Efficiency
    layouts_considered: int
    assumptions: list[str]


def breakdown(arch: Architecture, layout: Layout, options: MemoryOptions, dev: Accelerator) -> MemoryBreakdown:
    m = memory_of(arch, layout, options)
    mw, ma = megatron_theoretical_bytes(arch, layout, options)
    return MemoryBreakdown(**{k: m[k] / GIB for k in ("weights", "gradients", "optimizer", "activations",
                                                       "dispatch_buffers", "reserve", "total")},
                           capacity=dev.hbm_gb, fits=m["total"] <= dev.hbm_gb * GIB,
                           stage="last" if m["stage"] else "first", in_flight_micro_batches=m["in_flight"],
                           megatron_formula=(mw / GIB, ma / GIB))


def assumptions(options: MemoryOptions, eff: Efficiency) -> list[str]:
    o = options
    return [
        f"bytes per parameter: weight {o.weight_bytes:g}, gradient {o.grad_bytes:g}, master {o.master_bytes:g}, "
        f"Adam moments {o.moment_bytes:g}; distributed optimizer {'on' if o.distributed_optimizer else 'off'} "
        "(dense state over DP x CP, expert state over expert-DP)",
        f"recompute {o.recompute}" + (f" ({', '.join(o.recompute_modules)})" if o.recompute == "selective" else "")
        + f"; {'fp8' if o.fp8 else 'bf16'} GEMMs; capacity factor {o.capacity_factor:g} (balanced, dropless); "
        f"{o.reserve_gib:g} GiB framework reserve",
        "sequence parallel with TP; 1F1B (interleaved with VP > 1); dense layers lead the model; uneven pipelines "
        "give the last stage the remainder",
        f"step time: roofline GEMMs at {eff.compute:.0%} of peak, elementwise traffic at {eff.memory:.0%} of HBM "
        f"bandwidth, {eff.network:.0%} of communication exposed, {eff.overhead * 1e3:.1f} ms per layer and "
        "micro-batch (fitted, docs/cluster.md); DP gradient traffic once per step",
    ]


def evaluate(arch: Architecture, cluster: Cluster, layout: Layout, tokens: float, options: MemoryOptions | None = None,
             considered: int = 1) -> ClusterPlan:
    """The cluster plan of `arch` on a given `layout` (fits or not), training on `tokens`."""
    dev, eff = cluster.device(), calibrated()
    options = options or cluster.memory
    parts = step_parts(model_shape(arch), layout, dev, options)
    t = float(np.ravel(step_time(parts, eff))[0])
    per_step = float(layout.batch * arch.seq_len)
    tokens_s = per_step / t
    flops = count(arch, Convention.EXACT).train_flops_per_token
    steps = tokens / per_step
    seconds = steps * t
    hours = seconds / 3600 * layout.world
    return ClusterPlan(
        accelerator=dev, gpus=layout.world, layout=layout, layout_problems=layout_problems(arch, layout),
        recompute=options.recompute, fp8=options.fp8, memory=breakdown(arch, layout, options, dev), step_time_s=t,
        tokens_per_step=per_step, tokens_per_s=tokens_s, tokens_per_s_per_gpu=tokens_s / layout.world,
        mfu=flops * tokens_s / (layout.world * dev.bf16_flops), tokens=tokens, optimizer_steps=steps,
        days=seconds / SECONDS_PER_DAY, gpu_hours=hours,
        cost=hours * cluster.price_per_gpu_hour if cluster.price_per_gpu_hour else None, efficiency=eff,
        layouts_considered=considered, assumptions=assumptions(options, eff))


def plan_on_cluster(arch: Architecture, cluster: Cluster, tokens: float, global_batch: int) -> ClusterPlan:
    """The fastest layout of `arch` that fits the cluster, and what training on `tokens` costs with it."""
    s, k = best_layout(arch, cluster.gpus, cluster.device(), global_batch, cluster.memory)
    options = cluster.memory.model_copy(update={"recompute": s.recompute(k)})
    return evaluate(arch, cluster, s.layout(k), tokens, options, considered=len(s))
