"""`SweepRequest`: what a sweep of small training runs is for (the target) and what it may spend."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator

from moeplan.planner.request import GPU_PEAK_FLOPS


class SweepRequest(BaseModel):
    """The target budget to plan for, the sweep's compute, its runs and the criterion (docs/sweeps.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    law: str = "hy"
    law_params: str | None = Field(None, description="JSON of fitted constants used as the design's prior")
    target_flops: PositiveFloat = Field(description="the budget the user will plan at after fitting")
    sweep_flops: PositiveFloat = Field(description="total training compute of all runs of the sweep")
    max_run_flops: PositiveFloat | None = Field(None, description="largest run; default sweep_flops / 10")
    min_run_flops: PositiveFloat | None = Field(None, description="smallest run; default max_run_flops / 100")
    budgets: int = Field(5, ge=1, le=20, description="IsoFLOP budgets, log-spaced from min to max run")
    runs: PositiveInt = Field(60, description="training runs in the sweep")
    criterion: Literal["target", "d"] = Field(
        "target", description="target: expected regret of the plan at target_flops; d: D-optimality")
    noise: PositiveFloat = Field(0.005, description="standard deviation of a run's final loss (nats)")
    min_tokens_per_param: PositiveFloat = Field(
        1.0, description="floor on a sweep run's tokens per parameter ([HY] Table 6 goes down to 1.1)")
    architectures: PositiveInt = Field(3000, description="buildable architectures sampled as candidates")
    seq_len: PositiveInt = 4096
    vocab_size: PositiveInt = 128256
    expert_parallel: PositiveInt = Field(8, description="n_experts is a multiple of this (as in plan --ep)")
    gpu: str | None = Field(None, description=f"accelerator for GPU-hours: {', '.join(GPU_PEAK_FLOPS)}")
    gpus: PositiveInt | None = Field(None, description="accelerators running the sweep (wall-clock days)")
    mfu: float = Field(0.4, gt=0, le=1, description="model FLOPs utilisation for GPU-hours")
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> SweepRequest:
        if self.sweep_flops >= self.target_flops:
            raise ValueError(f"the sweep's compute {self.sweep_flops:.3g} is not below the target "
                             f"{self.target_flops:.3g}: plan the target directly")
        if self.max_run > self.sweep_flops:
            raise ValueError(f"max_run_flops {self.max_run:.3g} exceeds the sweep's compute {self.sweep_flops:.3g}")
        if self.min_run > self.max_run:
            raise ValueError(f"min_run_flops {self.min_run:.3g} exceeds max_run_flops {self.max_run:.3g}")
        if self.runs * self.min_run > self.sweep_flops * (1 + 1e-9):
            raise ValueError(f"{self.runs} runs of at least {self.min_run:.3g} FLOPs exceed the sweep's compute "
                             f"{self.sweep_flops:.3g}")
        if self.gpu is not None and self.gpu.lower() not in GPU_PEAK_FLOPS:
            raise ValueError(f"unknown gpu {self.gpu!r}; known: {', '.join(GPU_PEAK_FLOPS)}")
        if self.gpus is not None and self.gpu is None:
            raise ValueError("gpus needs gpu")
        return self

    @property
    def max_run(self) -> float:
        return self.max_run_flops or self.sweep_flops / 10

    @property
    def min_run(self) -> float:
        return self.min_run_flops or self.max_run / 100
