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


class Priors(BaseModel):
    """Shape priors: the laws cannot see depth versus width, so these decide it (rationale in docs/planning.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_layers: PositiveInt = 2
    max_layers: PositiveInt = 128
    min_d_hidden: PositiveInt = 512
    max_d_hidden: PositiveInt = 16384
    min_aspect: PositiveFloat = Field(32.0, description="d_hidden / layers, lower end")
    max_aspect: PositiveFloat = Field(128.0, description="d_hidden / layers, upper end")
    min_expert_ratio: PositiveFloat = Field(0.25, description="d_expert / d_hidden, lower end")
    max_expert_ratio: PositiveFloat = Field(0.75, description="d_expert / d_hidden, upper end")
    max_experts: PositiveInt = Field(256, description="routed experts per layer (DeepSeek-V3: 256)")
    max_top_k: PositiveInt = Field(16, description="routed experts per token")
    max_shared: int = Field(4, ge=0, description="shared experts per layer")
    dense_layers: int = Field(0, ge=0, description="leading dense-FFN layers")
    dense_ffn_ratio: PositiveFloat = Field(3.0, description="dense FFN width / d_hidden ([HOL]: 3)")
    min_tokens_per_param: PositiveFloat = Field(
        20.0, description="D / total parameters floor: bounds total parameters, which the [HY] law always wants more of"
    )

    @model_validator(mode="after")
    def _check(self) -> Priors:
        for low, high in (("min_layers", "max_layers"), ("min_d_hidden", "max_d_hidden"),
                          ("min_aspect", "max_aspect"), ("min_expert_ratio", "max_expert_ratio")):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"{low}={getattr(self, low)} exceeds {high}={getattr(self, high)}")
        return self


class PlanRequest(BaseModel):
    """Everything a plan depends on. Same request and seed, same plan."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    flops: PositiveFloat | None = Field(None, description="training compute C in FLOPs")
    gpu_hours: PositiveFloat | None = None
    gpu: str | None = Field(None, description=f"accelerator for --gpu-hours: {', '.join(GPU_PEAK_FLOPS)}")
    gpu_flops: PositiveFloat | None = Field(None, description="peak dense FLOP/s per accelerator (overrides --gpu)")
    mfu: float = Field(0.4, gt=0, le=1, description="model FLOPs utilisation for --gpu-hours")

    max_params: PositiveFloat | None = Field(None, description="cap on total parameters (everything)")
    memory_gb: PositiveFloat | None = Field(None, description="memory for the weights, implies max_params")
    bytes_per_param: PositiveFloat = Field(2.0, description="bytes per parameter for memory_gb (bf16: 2)")
    max_tokens: PositiveFloat | None = Field(None, description="unique training tokens available")

    seq_len: PositiveInt = 4096
    vocab_size: PositiveInt = 128256
    tie_embeddings: bool = False
    d_head: PositiveInt = 128
    gqa_group: PositiveInt = Field(4, description="query heads per key/value head")
    convention: Convention = Convention.EXACT
    law: str = "hy"
    law_params: str | None = Field(None, description="JSON of fitted constants (moeplan fit)")

    tensor_parallel: PositiveInt = 1
    expert_parallel: PositiveInt = 8
    pipeline_parallel: PositiveInt = 1
    hidden_align: PositiveInt = 128
    expert_align: PositiveInt = 64
    priors: Priors = Priors()

    objective: Literal["loss", "efficient", "pareto", "cost"] = "loss"
    tolerance: float = Field(0.001, ge=0, description="loss tolerance of the near-optimal band")
    trials: PositiveInt | None = Field(None, description="Optuna trials; default: seeds + optimum + band best")
    seed: int = 0
    storage: str | None = Field(None, description="Optuna storage URL; default sqlite:///moeplan.db")
    study_name: str | None = None
    workers: PositiveInt = Field(1, description="processes running trials on the study")
    resume: bool = Field(False, description="continue a study whose run was killed")

    # Decisions under uncertainty and lifetime cost (docs/decisions.md)
    laws: list[str] | None = Field(None, description="laws to compare (names or fitted-constant JSON files)")
    robust: bool = Field(False, description="plan across the bootstrap samples of law_params (minimax regret)")
    serve_tokens: float | None = Field(None, ge=0, description="tokens served over the model's life (cost, pareto)")
    serve_context: PositiveInt | None = Field(None, description="context of a served token; default seq_len")
    target_loss: PositiveFloat | None = Field(None, description="loss the cost objective must reach")

    @model_validator(mode="after")
    def _decisions(self) -> PlanRequest:
        if self.objective == "cost" and self.serve_tokens is None:
            raise ValueError("objective cost needs serve_tokens (tokens served over the model's life)")
        if self.target_loss is not None and self.objective != "cost":
            raise ValueError("target_loss is for objective cost")
        if self.objective == "pareto" and self.trials is not None:
            raise ValueError("objective pareto records the exact fronts as the study's trials: trials is not used")
        return self

    @property
    def context(self) -> int:
        """Context a served token attends to: serve_context, or the training sequence length."""
        return self.serve_context or self.seq_len

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
        """d_hidden is a multiple of this: alignment, and whole heads divisible by GQA group and TP."""
        heads = math.lcm(self.gqa_group, self.tensor_parallel)
        return math.lcm(self.hidden_align, self.d_head * heads)
