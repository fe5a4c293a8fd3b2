"""The transformers family a plan is built for: what the planner's space may vary, and what that family fixes.

The planner searches GQA attention, routed experts, shared experts of the routed width and leading dense
layers. A family (moeplan.flops.hf.FAMILIES) fixes the rest (router or expert biases, q/k norms, sinks) and
limits what varies (Mixtral has no shared experts and no dense layers; Qwen2-MoE always has a gated shared
expert). The plan is counted with exactly those features, so the exported config.json builds the counted model.
"""

from __future__ import annotations

from dataclasses import dataclass

from moeplan.errors import MoeplanError
from moeplan.flops.hf import ALIASES, FAMILIES, family_of

DEFAULT_FAMILY = "glm4_moe"  # GQA, shared experts of the routed width, leading dense layers: the whole space


@dataclass(frozen=True)
class PlanFamily:
    name: str
    features: dict          # Architecture fields the family fixes
    min_shared: int
    max_shared: int | None  # None: no limit from the family
    dense_layers: bool      # can mark leading layers dense


def plan_family(name: str) -> PlanFamily:
    """What a plan for transformers family `name` may vary and must contain; refuses families it cannot plan."""
    if name not in FAMILIES and name not in ALIASES:
        raise MoeplanError(f"unknown family {name!r}; plannable: {', '.join(plannable())}")
    fam = family_of(name)
    if fam.mla:
        raise MoeplanError(f"family {name!r} uses multi-head latent attention, which the planner does not search "
                           f"(it plans GQA); {DEFAULT_FAMILY} has DeepSeek-V3's MoE layout (shared experts, "
                           "leading dense layers, router correction bias) with GQA")
    features = {
        "router_bias": fam.router_bias, "expert_bias": fam.expert_bias, "attention_sinks": fam.sinks,
        "norm_bias": fam.norm_bias, "shared_expert_gate": fam.shared_gate,
        "qk_norm": "none" if fam.qk_norm == "flag" else fam.qk_norm,
        "attention_bias": fam.attention_bias if isinstance(fam.attention_bias, str) else "none",
    }
    if fam.shared == "none":
        shared = (0, 0)
    elif fam.shared == "fused" and fam.shared_key == fam.expert_width:
        shared = (1, 1)  # HunYuan: one shared expert, as wide as a routed one
    else:
        shared = (1 if fam.shared_required or fam.shared_gate else 0, None)
    return PlanFamily(fam.model_type, features, *shared, dense_layers=fam.dense != "none")


def plannable() -> list[str]:
    """Families a plan can target (all but those with multi-head latent attention)."""
    return sorted(name for name, fam in FAMILIES.items() if not fam.mla)
