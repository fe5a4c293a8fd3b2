"""Named FLOPs-per-token conventions (docs/science.md section 7). Every count says which one it used."""

from __future__ import annotations

from enum import StrEnum


class Convention(StrEnum):
    """How training FLOPs per token are counted; vendors and tools disagree, so each is a named option."""

    EXACT = "exact"  # Megatron-style: 2 x every matmul forward (attention scores, router, LM head), x3 to train
    SIX_N = "6n"  # 6 x active non-embedding params [CHIN]/Kaplan
    TORCHTITAN = "torchtitan"  # 6 x active params without input embedding + 6·l·n_h·(d_qk+d_v)·seq
    DEEPSEEK = "deepseek"  # 6 x active non-embedding params + 6·l·n_h·(d_qk+d_v)·seq (no causal halving)
    HOLISTIC = "holistic"  # [HOL]: 6·N_a + 6·seq·n_h·d_head·l, embedding and LM head not counted


CONVENTION_HELP = {
    Convention.EXACT: "Megatron-style: 2 FLOPs per multiply-add of every matmul (attention projections, "
    "QK^T and AV, router, experts, LM head), training = 3 x forward; causal masking halves attention scores.",
    Convention.SIX_N: "6 x active parameters without embedding and LM head (Kaplan/[CHIN] C = 6ND).",
    Convention.TORCHTITAN: "torchtitan's get_nparams_and_flops: 6 x active parameters without the input "
    "embedding (LM head, router, shared experts, norms included) + 6·l·n_h·(d_qk+d_v)·seq.",
    Convention.DEEPSEEK: "6 x active non-embedding parameters + 12·l·n_h·d_head·seq, no causal halving "
    "(DeepSeek's reports).",
    Convention.HOLISTIC: "[HOL] M = 6·N_a + 6·seq·n_h·d_head·l (attention causally halved), embedding and LM "
    "head excluded.",
}
