"""`Layout`: how a training job splits a model over devices, and the rules Megatron-Core checks.

Megatron-Core folds two groupings over one world (Liu et al. 2025, "MoE Parallel Folding"; the
`RankGenerator` in megatron/core/parallel_state.py): attention and dense layers use TP x CP x DP x PP,
expert layers use ETP x EP x EDP x PP, and both products equal the world size.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

from moeplan.flops.architecture import Architecture

Recompute = Literal["none", "selective", "full"]


class Layout(BaseModel):
    """Parallel degrees and batch split of one job. DP and expert-DP follow from the world size."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    world: PositiveInt = Field(description="devices")
    tp: PositiveInt = Field(1, description="tensor parallel (attention and dense layers)")
    cp: PositiveInt = Field(1, description="context parallel")
    pp: PositiveInt = Field(1, description="pipeline stages")
    vp: PositiveInt = Field(1, description="virtual stages per pipeline rank (interleaved 1F1B); 1: plain 1F1B")
    ep: PositiveInt = Field(1, description="expert parallel")
    etp: PositiveInt = Field(1, description="expert tensor parallel")
    micro_batch: PositiveInt = Field(1, description="sequences per micro-batch")
    global_batch: PositiveInt | None = Field(None, description="sequences per optimizer step; default DP x micro-batch x 2 PP")

    @model_validator(mode="after")
    def _fold(self) -> Layout:
        for name, group in (("TP x CP x PP", self.tp * self.cp * self.pp), ("ETP x EP x PP", self.etp * self.ep * self.pp)):
            if self.world % group:
                raise ValueError(f"{name} = {group} does not divide {self.world} devices")
        if self.global_batch is not None and self.global_batch % (self.micro_batch * self.dp):
            raise ValueError(f"global batch {self.global_batch} is not a multiple of micro-batch x DP = "
                             f"{self.micro_batch * self.dp}")
        if self.vp > 1 and self.pp == 1:
            raise ValueError("virtual pipeline stages need pp > 1")
        return self

    @property
    def dp(self) -> int:
        """Data parallel degree of attention and dense layers: world / (TP x CP x PP)."""
        return self.world // (self.tp * self.cp * self.pp)

    @property
    def edp(self) -> int:
        """Expert data parallel degree: world / (ETP x EP x PP)."""
        return self.world // (self.etp * self.ep * self.pp)

    @property
    def batch(self) -> int:
        """Sequences per optimizer step (the default keeps the pipeline busy: 2 PP micro-batches per rank)."""
        return self.global_batch or self.micro_batch * self.dp * 2 * self.pp

    @property
    def micro_batches(self) -> int:
        """Micro-batches per pipeline per step (gradient accumulation)."""
        return self.batch // (self.micro_batch * self.dp)

    def describe(self) -> str:
        parts = [f"TP {self.tp}", f"CP {self.cp}", f"PP {self.pp}" + (f" (VP {self.vp})" if self.vp > 1 else ""),
                 f"DP {self.dp}", f"EP {self.ep}", f"ETP {self.etp}", f"EDP {self.edp}"]
        return ", ".join(parts) + f"; micro-batch {self.micro_batch}, global batch {self.batch}"


def stage_layers(n_layers: int, pp: int) -> tuple[int, int]:
    """(layers of the first stage, layers of the last stage). Uneven rule: every stage but the last holds
    ceil(L / PP) layers, the last holds the rest (Megatron's --decoder-last-pipeline-num-layers); it must hold one."""
    per = -(-n_layers // pp)
    return per, n_layers - (pp - 1) * per


def layout_problems(arch: Architecture, layout: Layout) -> list[str]:
    """Why Megatron-Core would refuse `layout` for `arch` (empty: it accepts it)."""
    out = []
    if arch.n_heads % layout.tp:
        out.append(f"TP {layout.tp} does not divide {arch.n_heads} query heads")
    if arch.mla is None and arch.n_kv_heads % layout.tp:
        out.append(f"TP {layout.tp} does not divide {arch.n_kv_heads} kv heads")
    if arch.n_experts % layout.ep:
        out.append(f"EP {layout.ep} does not divide {arch.n_experts} routed experts")
    if arch.d_expert % layout.etp:
        out.append(f"ETP {layout.etp} does not divide d_expert {arch.d_expert}")
    first, last = stage_layers(arch.n_layers, layout.pp)
    if last < 1:
        out.append(f"PP {layout.pp} leaves the last stage without layers ({arch.n_layers} layers)")
    if layout.vp > 1 and first % layout.vp:
        out.append(f"VP {layout.vp} does not divide the {first} layers of a pipeline stage")
    if layout.cp > 1 and arch.seq_len % (2 * layout.cp):
        out.append(f"CP {layout.cp} needs seq_len divisible by {2 * layout.cp}")
    return out


def is_even(arch: Architecture, layout: Layout) -> bool:
    return arch.n_layers % layout.pp == 0


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def powers_of_two(limit: int) -> list[int]:
    return [2**i for i in range(int(math.log2(limit)) + 1)] if limit >= 1 else []
