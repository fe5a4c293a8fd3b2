"""`PlanRequest`: the budget, the caps and the priors that define the buildable space (docs/planning.md)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator

from moeplan.flops.conventions import Convention

# Peak dense bf16 FLOP/s per accelerator (vendor datasheets, no sparsity); override with gpu_flops.
GPU_PEAK_FLOPS = {
    "a100": 312e12,   # NVIDIA A100 SXM
    "h100": 989e12,   # NVIDIA H100 SXM
    "h200": 989e12,   # NVIDIA H200 SXM
    "b200": 2.25e15,  # NVIDIA B200
    "mi300x": 1.307e15,  # AMD Instinct MI300X
    "tpu-v5p": 459e12,   # Google TPU v5p
}


# Every input has a limit, checked before any work: far beyond any model built or planned today, and small
# enough that counts stay exact in int64 and float64 (docs/robustness.md lists them).
MAX_LAYERS = 4096
MAX_D_HIDDEN = 1 << 20
MAX_EXPERTS = 1 << 16
MAX_FLOPS = 1e32  # about 10^6 times the largest training run reported to date


class Priors(BaseModel):
    """Shape priors: the laws cannot see depth versus width, so these decide it (rationale in docs/planning.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    min_layers: PositiveInt = Field(2, le=MAX_LAYERS)
    max_layers: PositiveInt = Field(128, le=MAX_LAYERS)
    min_d_hidden: PositiveInt = Field(512, le=MAX_D_HIDDEN)
    max_d_hidden: PositiveInt = Field(16384, le=MAX_D_HIDDEN)
    min_aspect: PositiveFloat = Field(32.0, le=1e6, description="d_hidden / layers, lower end")
    max_aspect: PositiveFloat = Field(128.0, le=1e6, description="d_hidden / layers, upper end")
    min_expert_ratio: PositiveFloat = Field(0.25, le=64, description="d_expert / d_hidden, lower end")
    max_expert_ratio: PositiveFloat = Field(0.75, le=64, description="d_expert / d_hidden, upper end")
    max_experts: PositiveInt = Field(256, le=MAX_EXPERTS, description="routed experts per layer (DeepSeek-V3: 256)")
    max_top_k: PositiveInt = Field(16, le=1024, description="routed experts per token")
    max_shared: int = Field(4, ge=0, le=64, description="shared experts per layer")
    dense_layers: int = Field(0, ge=0, le=MAX_LAYERS, description="leading dense-FFN layers")
    dense_ffn_ratio: PositiveFloat = Field(3.0, le=64, description="dense FFN width / d_hidden ([HOL]: 3)")
    min_tokens_per_param: PositiveFloat = Field(
        20.0, le=1e6,
        description="D / total parameters floor: bounds total parameters, which the [HY] law always wants more of"
    )

    @model_validator(mode="after")
    def _check(self) -> Priors:
        for low, high in (("min_layers", "max_layers"), ("min_d_hidden", "max_d_hidden"),
                          ("min_aspect", "max_aspect"), ("min_expert_ratio", "max_expert_ratio")):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"{low}={getattr(self, low)} exceeds {high}={getattr(self, high)}")
        if self.dense_layers >= self.max_layers:
            raise ValueError(f"dense_layers={self.dense_layers} leaves no MoE layer within "
                             f"max_layers={self.max_layers}")
        return self


class PlanRequest(BaseModel):
    """Everything a plan depends on. Same request and seed, same plan."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    flops: PositiveFloat | None = Field(None, le=MAX_FLOPS, description="training compute C in FLOPs")
    gpu_hours: PositiveFloat | None = Field(None, le=1e12)
    gpu: str | None = Field(None, description=f"accelerator for --gpu-hours: {', '.join(GPU_PEAK_FLOPS)}")
    gpu_flops: PositiveFloat | None = Field(None, le=1e20,
                                            description="peak dense FLOP/s per accelerator (overrides --gpu)")
    mfu: float = Field(0.4, gt=0, le=1, description="model FLOPs utilisation for --gpu-hours")

    max_params: PositiveFloat | None = Field(None, le=1e18, description="cap on total parameters (everything)")
    memory_gb: PositiveFloat | None = Field(None, le=1e12, description="memory for the weights, implies max_params")
    bytes_per_param: PositiveFloat = Field(2.0, le=64, description="bytes per parameter of the weights (bf16: 2)")
    max_tokens: PositiveFloat | None = Field(None, le=1e20, description="unique training tokens available")

    seq_len: PositiveInt = Field(4096, le=1 << 24)
    vocab_size: PositiveInt = Field(128256, le=1 << 24)
    tie_embeddings: bool = False
    d_head: PositiveInt = Field(128, le=4096)
    gqa_group: PositiveInt = Field(4, le=1024, description="query heads per key/value head")
    convention: Convention = Convention.EXACT
    law: str = "hy"
    law_params: str | None = Field(None, description="JSON of fitted constants (moeplan fit)")

    tensor_parallel: PositiveInt = Field(1, le=1024)
    expert_parallel: PositiveInt = Field(8, le=MAX_EXPERTS)
    pipeline_parallel: PositiveInt = Field(1, le=MAX_LAYERS)
    hidden_align: PositiveInt = Field(128, le=1 << 16)
    expert_align: PositiveInt = Field(64, le=1 << 16)
    priors: Priors = Priors()

    objective: Literal["loss", "efficient", "pareto"] = "loss"
    tolerance: float = Field(0.001, ge=0, le=0.1, description="loss tolerance of the near-optimal band")
    trials: PositiveInt | None = Field(None, le=1_000_000,
                                       description="Optuna trials; default: seeds + optimum + band best")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="sampler seed (numpy's range)")
    storage: str | None = Field(None, description="Optuna storage URL; default sqlite:///moeplan.db")
    study_name: str | None = None
    workers: PositiveInt = Field(1, le=256, description="processes running trials on the study")
    resume: bool = Field(False, description="continue a study whose run was killed")

    @model_validator(mode="after")
    def _budget(self) -> PlanRequest:
        if (self.flops is None) == (self.gpu_hours is None):
            raise ValueError("give exactly one budget: flops, or gpu_hours with gpu (or gpu_flops) and mfu")
        if self.gpu_hours is not None and self.gpu_flops is None:
            if self.gpu is None:
                raise ValueError("gpu_hours needs gpu or gpu_flops")
            if self.gpu.lower() not in GPU_PEAK_FLOPS:
                raise ValueError(f"unknown gpu {self.gpu!r}; known: {', '.join(GPU_PEAK_FLOPS)} (or give gpu_flops)")
        return self

    @property
    def compute(self) -> float:
        """Training FLOPs: given, or GPU-hours x 3600 x peak FLOP/s x MFU."""
        if self.flops is not None:
            return self.flops
        peak = self.gpu_flops or GPU_PEAK_FLOPS[self.gpu.lower()]
        return self.gpu_hours * 3600 * peak * self.mfu

    @property
    def params_cap(self) -> float | None:
        """The binding total-parameter cap: the smaller of max_params and memory_gb / bytes_per_param."""
        caps = [c for c in (self.max_params,
                            self.memory_gb * 1e9 / self.bytes_per_param if self.memory_gb else None) if c]
        return min(caps) if caps else None

    @property
    def d_hidden_step(self) -> int:
        """d_hidden is a multiple of this: alignment, and whole heads whose kv heads TP divides.

        Megatron-Core splits the kv heads (query groups) over tensor-parallel ranks and refuses a count TP does
        not divide (megatron/core/transformer/transformer_config.py, `num_query_groups % tensor_model_parallel_size`),
        so n_heads is a multiple of gqa_group x TP: --tp 8 with 4 queries per kv head needs 32 heads.
        """
        return math.lcm(self.hidden_align, self.d_head * self.gqa_group * self.tensor_parallel)
