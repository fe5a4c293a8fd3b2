"""`PlanRequest`: the budget, the caps and the priors that define the buildable space (docs/planning.md)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator

from moeplan.cluster.hardware import peak_bf16_by_name
from moeplan.cluster.planning import ClusterBudget, nominal_compute
from moeplan.flops.conventions import Convention

# Peak dense bf16 FLOP/s per accelerator, from the hardware catalogue (moeplan/cluster/data/accelerators.json).
GPU_PEAK_FLOPS = peak_bf16_by_name()


# Every input has a limit, checked before any work: far beyond any model built or planned today, and small
# enough that counts stay exact in int64 and float64 (docs/robustness.md lists them).
MAX_LAYERS = 4096
MAX_D_HIDDEN = 1 << 20
MAX_EXPERTS = 1 << 16
MAX_FLOPS = 1e32  # about 10^6 times the largest training run reported to date


class Priors(BaseModel):
    """Shape priors: the laws cannot see depth versus width, so these decide it (rationale in docs/planning.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    min_layers: PositiveInt = Field(2, le=MAX_LAYERS, description="fewest transformer layers")
    max_layers: PositiveInt = Field(128, le=MAX_LAYERS, description="most transformer layers")
    min_d_hidden: PositiveInt = Field(512, le=MAX_D_HIDDEN, description="smallest model width d_hidden")
    max_d_hidden: PositiveInt = Field(16384, le=MAX_D_HIDDEN, description="largest model width d_hidden")
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
    gpu_hours: PositiveFloat | None = Field(
        None, le=1e12, description="budget as accelerator-hours (with gpu or gpu_flops, and mfu)")
    gpu: str | None = Field(None, description=f"accelerator for gpu_hours (on the CLI also the --gpus "
                            f"cluster's): {', '.join(GPU_PEAK_FLOPS)}")
    gpu_flops: PositiveFloat | None = Field(None, le=1e20,
                                            description="peak dense FLOP/s per accelerator (overrides --gpu)")
    mfu: float = Field(0.4, gt=0, le=1, description="model FLOPs utilisation for --gpu-hours")

    max_params: PositiveFloat | None = Field(None, le=1e18, description="cap on total parameters (everything)")
    memory_gb: PositiveFloat | None = Field(
        None, le=1e12, description="memory for the weights alone (GB at bytes_per_param), implies max_params; "
        "training state per device is the cluster's constraint")
    bytes_per_param: PositiveFloat = Field(2.0, le=64, description="bytes per parameter of the weights (bf16: 2)")
    max_tokens: PositiveFloat | None = Field(None, le=1e20, description="unique training tokens available")

    seq_len: PositiveInt = Field(4096, le=1 << 24, description="training sequence length")
    vocab_size: PositiveInt = Field(128256, le=1 << 24, description="vocabulary size")
    tie_embeddings: bool = Field(False, description="input embedding and LM head share one matrix")
    d_head: PositiveInt = Field(128, le=4096, description="attention head dim")
    gqa_group: PositiveInt = Field(4, le=1024, description="query heads per key/value head")
    convention: Convention = Field(Convention.EXACT, description="FLOPs-per-token convention (docs/counting.md)")
    law: str = Field("hy", description="loss law: hy, or constants fitted to it (law_params)")
    law_params: str | None = Field(None, description="JSON of fitted constants (moeplan fit)")
    family: str = Field("glm4_moe", description="transformers model_type the plan is built and exported for; "
                        "it fixes router biases, q/k norms, and whether shared experts and dense layers exist")

    tensor_parallel: PositiveInt = Field(1, le=1024, description="tensor-parallel degree: divides heads and kv heads")
    expert_parallel: PositiveInt = Field(8, le=MAX_EXPERTS, description="expert-parallel degree: divides n_experts "
                                         "(the CLI's default with --gpus N: gcd(N, 64))")
    pipeline_parallel: PositiveInt = Field(1, le=MAX_LAYERS, description="pipeline stages: divide layers")
    hidden_align: PositiveInt = Field(128, le=1 << 16, description="d_hidden is a multiple of this")
    expert_align: PositiveInt = Field(64, le=1 << 16,
                                      description="d_expert (and the dense FFN width) is a multiple of this")
    priors: Priors = Field(Priors(), description="shape priors (docs/planning.md)")

    objective: Literal["loss", "efficient", "pareto", "cost"] = Field(
        "loss", description="loss: lowest predicted loss; efficient: fewest FLOPs/token within the tolerance; "
        "pareto: exact loss-memory and loss-serving fronts as a study; cost: least lifetime FLOPs "
        "(docs/decisions.md)")
    tolerance: float = Field(0.001, ge=0, le=1.0, description="loss tolerance of the near-optimal band (nats; the band is streamed, its size exact)")
    trials: PositiveInt | None = Field(None, le=1_000_000,
                                       description="Optuna trials; default: seeds + optimum + band best")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seed of the Optuna sampler (numpy's range)")
    storage: str = Field(":memory:", description="Optuna storage URL: sqlite:///FILE, postgresql+psycopg://..., "
                         "journal:PATH, or :memory: (the Python API's default: no file is written; the CLI's "
                         "default is sqlite:///moeplan.db in the current folder)")
    study_name: str | None = Field(None, description="Optuna study name; default derived from the request")
    workers: PositiveInt = Field(1, le=256, description="processes running trials on the study")
    resume: bool = Field(False, description="continue a study whose run was killed")
    band_keep: PositiveInt = Field(1000, le=1_000_000, description="band members kept in full (the band's size is always exact)")
    max_memory_gb: PositiveFloat = Field(2.0, le=1024, description="memory the search may use; beyond it, one error line")

    cluster: ClusterBudget | None = Field(None, description="devices, days and training choices (docs/cluster.md)")

    # Decisions under uncertainty and lifetime cost (docs/decisions.md)
    laws: tuple[str, ...] | None = Field(None, max_length=16,
                                         description="laws to compare (names or fitted-constant JSON files)")
    robust: bool = Field(False, description="plan across the bootstrap samples of law_params (minimax regret)")
    serve_tokens: float | None = Field(None, ge=0, le=1e20, description="tokens served over the model's life (cost, pareto)")
    serve_context: PositiveInt | None = Field(None, le=1 << 24, description="context of a served token; default seq_len")
    target_loss: PositiveFloat | None = Field(None, le=100, description="loss the cost objective must reach")

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
        days_budget = self.cluster is not None and self.cluster.days is not None
        if (self.flops is None) == (self.gpu_hours is None) and not (days_budget and self.flops is None):
            raise ValueError("give exactly one budget: flops, gpu_hours with gpu (or gpu_flops) and mfu, "
                             "or gpus with days")
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
        if self.gpu_hours is None:  # a --days budget: nominal (docs/cluster.md), the plan reports what it spends
            return nominal_compute(self.cluster, self.mfu)
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
