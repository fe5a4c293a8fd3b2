"""Exact layer-wise parameter and FLOPs-per-token counts of one `Architecture` (nanoGPT-style breakdown).

Parameter conventions (docs/science.md section 7): `all` (everything stored), `without_input_embedding`,
`without_embeddings` (no input embedding, no LM head). With tied embeddings the shared matrix is counted
once, as the embedding. FLOPs conventions: `moeplan.flops.conventions`.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

from moeplan.errors import UsageError
from moeplan.flops import formulas as f
from moeplan.flops.architecture import Architecture
from moeplan.flops.conventions import Convention

PARAM_COMPONENTS = (
    "embedding", "attention", "norms", "router", "routed_experts", "shared_experts", "dense_ffn", "lm_head",
)
FLOP_COMPONENTS = (
    "attention", "attention_scores", "norms", "router", "routed_experts", "shared_experts", "dense_ffn", "lm_head",
)
_NON_EMBEDDING = frozenset(PARAM_COMPONENTS) - {"embedding", "lm_head"}


class ParamCounts(BaseModel):
    """One parameter count under the three conventions of docs/science.md section 7."""

    model_config = ConfigDict(frozen=True)

    all: int
    without_input_embedding: int
    without_embeddings: int


class Count(BaseModel):
    """Everything moeplan counts about one architecture, with the conventions that produced it."""

    model_config = ConfigDict(frozen=True)

    architecture: Architecture
    convention: Convention
    causal: bool
    seq_len: int
    total: ParamCounts
    active: ParamCounts
    total_by_component: dict[str, int]
    active_by_component: dict[str, int]
    forward_flops_per_token: float
    train_flops_per_token: float
    train_flops_by_component: dict[str, float]


def param_counts(by_component: Mapping) -> dict:
    """Totals under the three conventions from a component breakdown (ints or arrays)."""
    everything = sum(by_component[c] for c in PARAM_COMPONENTS)
    return {
        "all": everything,
        "without_input_embedding": everything - by_component["embedding"],
        "without_embeddings": everything - by_component["embedding"] - by_component["lm_head"],
    }


def train_flops_x_seq(convention: Convention, active: Mapping, matmul_forward: Mapping, scores_x_seq, a) -> dict:
    """Training FLOPs per token of each component, times seq (exact integers), under `convention`.

    `active` are active parameters by component, `matmul_forward` forward matmul FLOPs per token by
    component, `scores_x_seq` the `exact` forward attention-score FLOPs times seq, `a` the architecture
    (or array namespace) for the attention terms of the 6N-style conventions.
    """
    seq = a.seq_len
    if convention is Convention.EXACT:
        out = {c: 3 * matmul_forward[c] * seq for c in FLOP_COMPONENTS if c != "attention_scores"}
        out["attention_scores"] = 3 * scores_x_seq
        return {c: out[c] for c in FLOP_COMPONENTS}
    counted = set(_NON_EMBEDDING) | ({"lm_head"} if convention is Convention.TORCHTITAN else set())
    out = {c: (6 * active[c] * seq if c in counted else 0 * seq) for c in FLOP_COMPONENTS if c != "attention_scores"}
    heads_x_seq2 = a.n_layers * a.n_heads * (f.d_qk(a) + f.d_v(a)) * seq * seq
    out["attention_scores"] = {
        Convention.SIX_N: 0 * heads_x_seq2,
        Convention.TORCHTITAN: 6 * heads_x_seq2,
        Convention.DEEPSEEK: 6 * heads_x_seq2,
        Convention.HOLISTIC: 3 * heads_x_seq2,
    }[convention]
    return {c: out[c] for c in FLOP_COMPONENTS}


def per_token(x_seq, seq):
    """FLOPs per token from an exact integer numerator, identical for Python ints and int64 arrays.

    `float(x_seq) / seq` rounds twice once x_seq passes 2**53, so `6n`'s 6·N_a·seq / seq moved with seq.
    The whole quotient is exact and only the remainder is rounded: x_seq divisible by seq gives the exact
    quotient, and the result is monotone in x_seq / seq.
    """
    whole, rest = divmod(x_seq, seq)
    return whole + rest / seq


def count(arch: Architecture, convention: Convention | str = Convention.EXACT, causal: bool = True) -> Count:
    """Count `arch` layer by layer: parameters by component and FLOPs per token under `convention`."""
    if not isinstance(arch, Architecture):
        raise UsageError(f"count() takes an Architecture, not {type(arch).__name__}")
    try:
        convention = Convention(convention)
    except ValueError:
        raise UsageError(f"unknown convention {convention!r}; choose one of: "
                         f"{', '.join(c.value for c in Convention)}") from None
    total = dict.fromkeys(PARAM_COMPONENTS, 0)
    active = dict.fromkeys(PARAM_COMPONENTS, 0)
    matmul = dict.fromkeys(FLOP_COMPONENTS, 0)
    scores_x_seq = 0
    dense, sliding = set(arch.dense_layers), set(arch.sliding_layers)
    d = arch.d_hidden

    for layer in range(arch.n_layers):
        attn = f.attention_weights(arch) + f.attention_extras(arch)
        norms = f.layer_norms(arch)
        for counts in (total, active):
            counts["attention"] += attn
            counts["norms"] += norms
        matmul["attention"] += 2 * f.attention_weights(arch)
        window = min(arch.sliding_window, arch.seq_len) if layer in sliding else arch.seq_len
        scores_x_seq += f.attention_scores_x_seq(arch, window, causal)

        if layer in dense:
            ffn = f.swiglu(d, arch.d_dense_ffn)
            total["dense_ffn"] += ffn
            active["dense_ffn"] += ffn
            matmul["dense_ffn"] += 2 * ffn
            continue
        for counts in (total, active):
            counts["router"] += f.router(arch)
            counts["shared_experts"] += f.shared_experts(arch)
        total["routed_experts"] += arch.n_experts * f.routed_expert(arch)
        active["routed_experts"] += arch.top_k * f.routed_expert(arch)
        matmul["router"] += 2 * d * arch.n_experts
        matmul["shared_experts"] += 2 * f.shared_experts(arch)
        matmul["routed_experts"] += 2 * arch.top_k * f.swiglu(d, arch.d_expert)

    for counts in (total, active):
        counts["norms"] += f.final_norm(arch)
        counts["embedding"] += arch.vocab_size * d
        counts["lm_head"] += 0 if arch.tie_embeddings else arch.vocab_size * d
    matmul["lm_head"] = 2 * d * arch.vocab_size

    x_seq = train_flops_x_seq(convention, active, matmul, scores_x_seq, arch)
    train = {c: per_token(v, arch.seq_len) for c, v in x_seq.items()}
    train_total = per_token(sum(x_seq.values()), arch.seq_len)
    return Count(
        architecture=arch,
        convention=convention,
        causal=causal,
        seq_len=arch.seq_len,
        total=ParamCounts(**param_counts(total)),
        active=ParamCounts(**param_counts(active)),
        total_by_component=total,
        active_by_component=active,
        forward_flops_per_token=train_total / 3,
        train_flops_per_token=train_total,
        train_flops_by_component=train,
    )
