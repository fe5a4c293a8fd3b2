"""`Architecture`: a frozen description of a decoder-only MoE transformer, as people actually build them.

Symbols follow docs/science.md section 1. Every size is an integer count of units (layers, heads, features);
anything a count depends on is a field here, so a count is a pure function of an `Architecture`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class MLA(BaseModel):
    """Multi-head latent attention (DeepSeek-V2/V3): low-rank q and kv projections, split rope/nope heads."""

    model_config = _FROZEN

    q_lora_rank: PositiveInt | None = Field(None, description="rank of the q down-projection; None: full q_proj")
    kv_lora_rank: PositiveInt = Field(description="rank of the compressed kv latent")
    qk_rope_head_dim: PositiveInt = Field(description="per-head dims carrying rotary position")
    qk_nope_head_dim: PositiveInt = Field(description="per-head dims without rotary position")
    v_head_dim: PositiveInt = Field(description="per-head value dims")


class Architecture(BaseModel):
    """A decoder-only MoE transformer: attention (MHA/GQA/MLA), MoE and dense FFN layers, embeddings."""

    model_config = _FROZEN

    n_layers: PositiveInt = Field(description="transformer layers (l)")
    d_hidden: PositiveInt = Field(description="model width (d)")
    n_heads: PositiveInt = Field(description="query heads (n_h)")
    n_kv_heads: PositiveInt | None = Field(None, description="key/value heads (GQA); default n_heads (MHA)")
    d_head: PositiveInt | None = Field(None, description="head dim; default d_hidden // n_heads")
    mla: MLA | None = Field(None, description="multi-head latent attention instead of MHA/GQA projections")
    qk_norm: Literal["none", "head", "full"] = Field(
        "none", description="RMSNorm on q and k: 'head' shares one d_head weight (Qwen3), 'full' spans all heads (OLMoE)"
    )
    attention_bias: Literal["none", "qkv", "all"] = Field(
        "none", description="biases on the q/k/v projections ('qkv', Qwen2) or on q/k/v/o ('all', gpt-oss)"
    )
    attention_sinks: bool = Field(False, description="one learned sink logit per query head (gpt-oss)")
    norm_bias: bool = Field(False, description="LayerNorm with a bias instead of RMSNorm (PhiMoE)")

    d_expert: PositiveInt = Field(description="FFN width of one routed expert (SwiGLU: 3 matrices of d x d_expert)")
    n_experts: PositiveInt = Field(description="routed experts per MoE layer (n_e)")
    top_k: PositiveInt = Field(description="routed experts activated per token (n_k)")
    n_shared_experts: int = Field(0, ge=0, description="always-on shared experts per MoE layer (n_s)")
    d_shared_expert: PositiveInt | None = Field(
        None, description="width of each shared expert; default d_expert. One fused shared FFN: n_shared_experts=1"
    )
    shared_expert_gate: bool = Field(False, description="sigmoid gate d -> 1 on the shared expert (Qwen2-MoE)")
    router_bias: bool = Field(False, description="a per-expert router bias (gpt-oss; DeepSeek-V3's correction bias)")
    expert_bias: bool = Field(False, description="biases inside every routed expert's matrices (gpt-oss)")

    dense_layers: tuple[int, ...] = Field((), description="indices of layers with a dense FFN instead of MoE")
    d_dense_ffn: PositiveInt | None = Field(None, description="SwiGLU width of the dense FFN layers")

    vocab_size: PositiveInt = Field(description="vocabulary size (V)")
    tie_embeddings: bool = Field(False, description="LM head shares the input embedding matrix")
    seq_len: PositiveInt = Field(4096, description="training sequence length")
    sliding_window: PositiveInt | None = Field(None, description="attention window of the sliding-window layers")
    sliding_layers: tuple[int, ...] = Field((), description="indices of the sliding-window layers")

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        leading = data.pop("n_leading_dense", None)
        if leading is not None:
            if not isinstance(leading, int) or leading < 0:
                raise ValueError("n_leading_dense must be a non-negative integer")
            data["dense_layers"] = tuple(sorted(set(data.get("dense_layers", ())) | set(range(leading))))
        if data.get("mla") is None and data.get("d_head") is None:
            d, h = data.get("d_hidden"), data.get("n_heads")
            if isinstance(d, int) and isinstance(h, int) and h > 0:
                if d % h:
                    raise ValueError(f"d_head not given and n_heads={h} does not divide d_hidden={d}")
                data["d_head"] = d // h
        if data.get("n_kv_heads") is None:
            data["n_kv_heads"] = data.get("n_heads")
        # Canonical form: fields that build nothing take their defaults, so equal models compare equal.
        if data.get("d_shared_expert") is None or not data.get("n_shared_experts"):
            data["d_shared_expert"] = data.get("d_expert")
        n_s, d_s, d_e = data.get("n_shared_experts"), data.get("d_shared_expert"), data.get("d_expert")
        if isinstance(n_s, int) and isinstance(d_s, int) and isinstance(d_e, int) and n_s > 0 and d_e > 0 \
                and d_s != d_e and (n_s * d_s) % d_e == 0:
            # shared FFNs are fused in practice: k x d_expert of shared width is k shared experts ([HY]'s units)
            data["n_shared_experts"], data["d_shared_expert"] = n_s * d_s // d_e, d_e
        if not data.get("dense_layers") and not data.get("n_leading_dense"):
            data["d_dense_ffn"] = None
        for key in ("dense_layers", "sliding_layers"):
            if key in data and data[key] is not None:
                data[key] = tuple(sorted(set(data[key])))
        return data

    @model_validator(mode="after")
    def _check(self) -> Architecture:
        if self.top_k > self.n_experts:
            raise ValueError(f"top_k={self.top_k} exceeds n_experts={self.n_experts}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_kv_heads={self.n_kv_heads} does not divide n_heads={self.n_heads}")
        if self.mla is not None:
            if self.n_kv_heads != self.n_heads:
                raise ValueError("MLA has no separate kv heads: n_kv_heads must equal n_heads")
            if self.attention_bias != "none" or self.qk_norm != "none":
                raise ValueError("attention biases and q/k norms are not defined for MLA here")
        for key in ("dense_layers", "sliding_layers"):
            bad = [i for i in getattr(self, key) if not 0 <= i < self.n_layers]
            if bad:
                raise ValueError(f"{key} {bad} outside 0..{self.n_layers - 1}")
        if self.dense_layers and self.d_dense_ffn is None:
            raise ValueError("dense_layers given but d_dense_ffn is not")
        if bool(self.sliding_layers) != (self.sliding_window is not None):
            raise ValueError("sliding_window and sliding_layers go together")
        if self.shared_expert_gate and self.n_shared_experts == 0:
            raise ValueError("shared_expert_gate needs n_shared_experts > 0")
        return self

    # Derived shape quantities, named as in the papers.
    @property
    def d_qk(self) -> int:
        """Per-head query/key width (MLA: nope + rope dims)."""
        return self.mla.qk_nope_head_dim + self.mla.qk_rope_head_dim if self.mla else self.d_head

    @property
    def d_v(self) -> int:
        """Per-head value width."""
        return self.mla.v_head_dim if self.mla else self.d_head

    @property
    def n_moe_layers(self) -> int:
        return self.n_layers - len(self.dense_layers)

    @property
    def activated_experts(self) -> float:
        """[HY] G = n_k + n_s, shared experts in units of d_expert (a fused shared FFN counts by its width)."""
        return self.top_k + self.n_shared_experts * self.d_shared_expert / self.d_expert

    @property
    def shared_ratio(self) -> float:
        """[HY] S = n_s / G, in the same d_expert units."""
        return (self.activated_experts - self.top_k) / self.activated_experts

    @property
    def granularity(self) -> float:
        """[LING] granularity G_L = 2 d_hidden / d_expert (not [HY]'s G)."""
        return 2 * self.d_hidden / self.d_expert

    @property
    def activation_ratio(self) -> float:
        """[LING] A = (E_a + E_s) / (E + E_s), counting experts (shared in d_expert units)."""
        shared = self.activated_experts - self.top_k
        return (self.top_k + shared) / (self.n_experts + shared)
