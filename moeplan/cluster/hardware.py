"""The accelerator catalogue (data/accelerators.json): one row per device, a source for every number."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError

from moeplan.errors import UsageError


class Accelerator(BaseModel):
    """One device: memory, peak dense FLOP/s and the bandwidths the throughput model uses."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    name: str
    hbm_gb: PositiveFloat = Field(description="HBM per device as marketed (GB), read as GiB: HBM stacks are binary")
    bf16_flops: PositiveFloat = Field(description="peak dense bf16 FLOP/s")
    fp8_flops: PositiveFloat | None = Field(None, description="peak dense fp8 FLOP/s; None: no fp8 units")
    hbm_tbps: PositiveFloat = Field(description="HBM bandwidth, TB/s")
    domain: PositiveInt = Field(description="devices per scale-up (NVLink) domain")
    scaleup_gbps: PositiveFloat = Field(description="scale-up bandwidth per device, GB/s one way")
    internode_gbps: PositiveFloat = Field(description="scale-out bandwidth per device, GB/s one way")
    sources: dict[str, str] = Field(default_factory=dict, description="where each number comes from")

    def peak_flops(self, fp8: bool) -> float:
        """Dense GEMM peak: fp8 where the device has fp8 units and fp8 is asked for, else bf16."""
        return self.fp8_flops if fp8 and self.fp8_flops else self.bf16_flops


ALIASES = {"a100": "a100-80g"}  # the 40 GB A100 has the same peak FLOP/s; memory differs
OVERRIDABLE = ("hbm_gb", "bf16_flops", "fp8_flops", "hbm_tbps", "domain", "scaleup_gbps", "internode_gbps")


def peak_bf16_by_name() -> dict[str, float]:
    """Peak dense bf16 FLOP/s by catalogue key and alias (the planner's --gpu-hours budget)."""
    rows = catalogue()
    return {k: a.bf16_flops for k, a in rows.items()} | {alias: rows[k].bf16_flops for alias, k in ALIASES.items()}


@cache
def catalogue() -> dict[str, Accelerator]:
    """Every accelerator of the shipped catalogue, by key."""
    text = resources.files("moeplan.cluster").joinpath("data/accelerators.json").read_text()
    rows = json.loads(text)["accelerators"]
    return {key: Accelerator(key=key, **row) for key, row in rows.items()}


def accelerator(key: str, **overrides) -> Accelerator:
    """The catalogue row `key` (case-insensitive) with any field overridden (None: keep the catalogue's)."""
    rows = catalogue()
    row = rows.get(ALIASES.get(key.lower(), key.lower()))
    if row is None:
        raise UsageError(f"unknown gpu {key!r}; known: {', '.join(rows)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    bad = set(given) - set(OVERRIDABLE)
    if bad:
        raise UsageError(f"cannot override {', '.join(sorted(bad))}")
    if not given:
        return row
    sources = dict(row.sources) | {k: "given on the command line" for k in given}
    try:
        return Accelerator(**(row.model_dump() | given | {"sources": sources}))
    except ValidationError as err:
        first = err.errors()[0]
        raise UsageError(f"{first['loc'][0]}: {first['msg']}") from None
