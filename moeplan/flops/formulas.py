"""Per-layer parameter and matmul-FLOP formulas, written once for Python ints and numpy int64 arrays alike.

`a` is anything with the `Architecture` field names as attributes: an `Architecture` (ints) for the
layer-wise counter, or a namespace of broadcastable arrays for the vectorised one. Categorical fields
(qk_norm, attention_bias, flags, whether MLA exists) are always plain Python values.
Conventions: SwiGLU FFNs have 3 matrices (docs/science.md section 1); a matmul of k x n weights costs 2·k·n
forward FLOPs per token (multiply-add = 2, Megatron/[HOL] convention); norms and biases are not matmuls.
"""

from __future__ import annotations


def d_qk(a):
    """Per-head query/key width: d_head, or nope + rope dims under MLA."""
    return a.mla.qk_nope_head_dim + a.mla.qk_rope_head_dim if a.mla is not None else a.d_head


def d_v(a):
    """Per-head value width: d_head, or v_head_dim under MLA."""
    return a.mla.v_head_dim if a.mla is not None else a.d_head


def attention_weights(a):
    """Projection weights of one attention layer: q, k, v, o (GQA) or q(a/b), kv_a, kv_b, o (MLA)."""
    d, n_h = a.d_hidden, a.n_heads
    if a.mla is None:
        return 2 * d * n_h * a.d_head + 2 * d * a.n_kv_heads * a.d_head
    m = a.mla
    q = d * n_h * d_qk(a) if m.q_lora_rank is None else d * m.q_lora_rank + m.q_lora_rank * n_h * d_qk(a)
    kv = d * (m.kv_lora_rank + m.qk_rope_head_dim) + m.kv_lora_rank * n_h * (m.qk_nope_head_dim + m.v_head_dim)
    return q + kv + n_h * m.v_head_dim * d


def attention_extras(a):
    """Non-matmul attention parameters of one layer: projection biases and per-head sink logits."""
    sinks = a.n_heads if a.attention_sinks else 0
    if a.mla is not None or a.attention_bias == "none":
        return sinks
    qkv = a.n_heads * a.d_head + 2 * a.n_kv_heads * a.d_head
    return qkv + (a.d_hidden if a.attention_bias == "all" else 0) + sinks


def final_norm(a):
    """The norm before the LM head: d weights, and d biases for LayerNorm."""
    return a.d_hidden * (2 if a.norm_bias else 1)


def layer_norms(a):
    """Norm weights of one layer: two norms of d (with biases for LayerNorm), q/k norms, MLA's latent norms."""
    block = 2 * final_norm(a)
    if a.mla is not None:
        return block + a.mla.kv_lora_rank + (a.mla.q_lora_rank if a.mla.q_lora_rank is not None else 0)
    if a.qk_norm == "none":
        return block
    if a.qk_norm == "head":
        return block + 2 * a.d_head
    return block + (a.n_heads + a.n_kv_heads) * a.d_head


def router(a):
    """Router of one MoE layer: a d x n_e linear, plus a per-expert bias if present."""
    return a.d_hidden * a.n_experts + (a.n_experts if a.router_bias else 0)


def swiglu(d, width):
    """One SwiGLU FFN: gate, up and down matrices of d x width."""
    return 3 * d * width


def routed_expert(a):
    """One routed expert: SwiGLU weights plus, if present, biases on gate/up (2·width) and down (d)."""
    return swiglu(a.d_hidden, a.d_expert) + (2 * a.d_expert + a.d_hidden if a.expert_bias else 0)


def shared_experts(a):
    """All shared experts of one MoE layer, plus the d -> 1 shared-expert gate if present."""
    return a.n_shared_experts * swiglu(a.d_hidden, a.d_shared_expert) + (a.d_hidden if a.shared_expert_gate else 0)


def routed_expert_matmul_weights(a):
    """Routed-expert weights that are matmuls (the biases are not)."""
    return swiglu(a.d_hidden, a.d_expert)


def attention_scores_x_seq(a, window, causal: bool):
    """Forward FLOPs of QK^T and AV in one layer, per token, times seq (an exact integer).

    Each query scores against `keys` keys: 2·n_h·(d_qk + d_v)·keys FLOPs. With `causal` the kernel skips
    masked blocks: a window w (w = seq for full attention) gives w·seq − w²/2 keys summed over the
    sequence, so seq/2 per query for full attention (the usual causal halving). Without it every query
    scores all seq keys, which is what a dense masked kernel (and torch's FLOP counter) does.
    """
    seq = a.seq_len
    per_key = a.n_heads * (d_qk(a) + d_v(a))
    if not causal:
        return 2 * per_key * seq * seq
    w = window
    return per_key * (2 * w * seq - w * w)
