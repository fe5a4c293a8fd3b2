"""Memory per device of a training job: Megatron-LM's theoretical formula, and moeplan's fuller model.

`megatron_theoretical_bytes` reproduces megatron/training/theoretical_memory_usage.py (NVIDIA/Megatron-LM,
commit 00caa53a) term by term, for checking. `device_memory` is what moeplan plans with; it models more
than Megatron's formula (docs/cluster.md lists each difference):
- expert weights and their optimizer state are split over EP x ETP and expert-DP (Megatron's formula
  divides every parameter by TP and PP only, so a 671B MoE looks the same at EP 1 and EP 64);
- SwiGLU stores gate, up and activation outputs (6F bytes per token), not a GELU MLP's 4F;
- MoE layers store the router logits, the dispatched token copies (tokens x top-k x capacity factor)
  and the shared experts' activations; the all-to-all send and receive buffers of one layer are added;
- GQA/MLA projections use their real widths; flash attention's log-sum-exp is kept;
- both the first stage (embedding, most micro-batches in flight) and the last (LM head, fp32 logits)
  are evaluated and the larger is reported; a fixed framework reserve is added.
Everything is numpy-broadcast: one architecture against many layouts, or many architectures against one.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat

from typing import Literal

from moeplan.cluster.layout import Layout, Recompute
from moeplan.flops import formulas as f
from moeplan.flops.architecture import Architecture

GIB = 2**30  # HBM comes in binary sizes: an "80 GB" H100 holds 80 GiB (nvidia-smi: 81,559 MiB usable)
RecomputeModule = Literal["core_attn", "layernorm", "mla_up_proj", "moe_act", "mlp", "shared_experts"]
MIB = 1024 * 1024


class MemoryOptions(BaseModel):
    """Byte counts and training choices behind the memory model; defaults are Megatron-LM's."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    weight_bytes: PositiveFloat = Field(2, description="bytes per weight (bf16)")
    grad_bytes: PositiveFloat = Field(4, description="bytes per gradient (Megatron keeps fp32 main grads)")
    master_bytes: NonNegativeFloat = Field(4, description="bytes of the fp32 master weight")
    moment_bytes: NonNegativeFloat = Field(8, description="bytes of Adam's two fp32 moments")
    distributed_optimizer: bool = Field(True, description="shard master weights and moments over DP (expert: EDP)")
    recompute: Recompute = Field("selective", description="none, selective (the modules below) or full (Korthikanti 2022)")
    recompute_modules: tuple[RecomputeModule, ...] = Field(
        ("core_attn",), description="selective recompute: Megatron-Core's --recompute-modules")
    capacity_factor: PositiveFloat = Field(1.0, description="token copies per expert slot; 1: balanced, dropless")
    fp8: bool = Field(False, description="fp8 GEMMs: Transformer Engine keeps GEMM inputs for backward in fp8 (1 byte)")
    reserve_gib: NonNegativeFloat = Field(3.0, description="CUDA context, NCCL buffers, allocator fragmentation")

    @property
    def optimizer_bytes(self) -> float:
        return self.master_bytes + self.moment_bytes


# -- Megatron-LM's formula, reproduced -------------------------------------------------------------------

def padded_vocab(vocab: int, tp: int, divisible_by: int = 128) -> int:
    """Megatron pads the vocabulary to a multiple of 128 x TP (_vocab_size_with_padding)."""
    step = divisible_by * tp
    return -(-vocab // step) * step


def megatron_args(arch: Architecture, layout: Layout, options: MemoryOptions = MemoryOptions(),
                  sequence_parallel: bool | None = None) -> SimpleNamespace:
    """The Megatron-LM arguments that `theoretical_memory_usage.py` reads, for `arch` on `layout`."""
    moe = arch.n_moe_layers > 0
    m = arch.mla
    return SimpleNamespace(
        num_layers=arch.n_layers, hidden_size=arch.d_hidden, num_attention_heads=arch.n_heads,
        kv_channels=arch.d_head if m is None else arch.d_v, group_query_attention=arch.n_kv_heads != arch.n_heads,
        num_query_groups=arch.n_kv_heads, swiglu=True,
        ffn_hidden_size=arch.d_dense_ffn or arch.d_expert,
        num_experts=arch.n_experts if moe else None, moe_ffn_hidden_size=arch.d_expert,
        moe_shared_expert_intermediate_size=(arch.n_shared_experts * arch.d_shared_expert) or None,
        moe_layer_freq=[0 if i in set(arch.dense_layers) else 1 for i in range(arch.n_layers)],
        mtp_num_layers=None, normalization="LayerNorm" if arch.norm_bias else "RMSNorm",
        multi_latent_attention=m is not None,
        q_lora_rank=m.q_lora_rank if m else None, kv_lora_rank=m.kv_lora_rank if m else None,
        qk_head_dim=m.qk_nope_head_dim if m else None, qk_pos_emb_head_dim=m.qk_rope_head_dim if m else None,
        v_head_dim=m.v_head_dim if m else None,
        padded_vocab_size=padded_vocab(arch.vocab_size, layout.tp),
        untie_embeddings_and_output_weights=not arch.tie_embeddings,
        pipeline_model_parallel_size=layout.pp, tensor_model_parallel_size=layout.tp,
        virtual_pipeline_model_parallel_size=layout.vp if layout.vp > 1 else None,
        use_distributed_optimizer=options.distributed_optimizer, data_parallel_size=layout.dp,
        seq_length=arch.seq_len, micro_batch_size=layout.micro_batch,
        sequence_parallel=layout.tp > 1 if sequence_parallel is None else sequence_parallel,
        recompute_granularity="selective" if options.recompute == "selective" else
        ("full" if options.recompute == "full" else None),
    )


def _megatron_params(args) -> tuple[float, float, float]:
    """(transformer block, MTP block, one embedding matrix) parameters, as Megatron's formula counts them."""
    h = args.hidden_size
    groups = args.num_query_groups if args.group_query_attention else args.num_attention_heads
    glu = 1.5 if args.swiglu else 1.0
    norm = 1 if args.normalization == "RMSNorm" else 2
    if args.num_experts is not None:
        freq = args.moe_layer_freq
        pattern = [int(i % freq == 0) for i in range(args.num_layers)] if isinstance(freq, int) else list(freq)
        n_moe, experts, moe_ffn = sum(pattern), args.num_experts, args.moe_ffn_hidden_size
    else:
        pattern, n_moe, experts, moe_ffn = [0] * args.num_layers, 0, 1, 0
    n_dense = args.num_layers - n_moe
    shared = args.moe_shared_expert_intermediate_size or 0
    if args.multi_latent_attention:
        heads, qk, rope, v = args.num_attention_heads, args.qk_head_dim, args.qk_pos_emb_head_dim, args.v_head_dim
        q = h * heads * (qk + rope) if args.q_lora_rank is None else args.q_lora_rank * (h + heads * (qk + rope) + norm)
        attn = q + args.kv_lora_rank * (h + heads * (qk + v) + norm) + h * rope + heads * v * h
    else:
        ratio = args.kv_channels * args.num_attention_heads / h
        attn = 2 * h * h * ((1 + groups / args.num_attention_heads) * ratio)
    dense_layer = 2 * h * (args.ffn_hidden_size * glu + norm) + attn
    moe_layer = 2 * h * (moe_ffn * experts * glu + shared * glu + norm) + attn
    block = dense_layer * n_dense + moe_layer * n_moe + norm * h
    mtp = 0.0
    if args.mtp_num_layers is not None:
        mtp = (moe_layer if pattern[-1] else dense_layer) * args.mtp_num_layers
    return block, mtp, h * args.padded_vocab_size


def megatron_weight_and_optimizer_bytes(args) -> float:
    """compute_weight_and_optimizer_memory: the most loaded shard (first stage) x 18 (or 6 + 12/DP) bytes."""
    block, mtp, embedding = _megatron_params(args)
    tp, pp = args.tensor_model_parallel_size, args.pipeline_model_parallel_size
    shard = (block / pp + mtp + embedding) / tp
    if args.untie_embeddings_and_output_weights and pp == 1:
        shard += embedding / tp
    per_param = 6 + 12 / args.data_parallel_size if args.use_distributed_optimizer else 18
    return shard * per_param


def _pipeline_factor(args, num_microbatches) -> float:
    pp, vp = args.pipeline_model_parallel_size, args.virtual_pipeline_model_parallel_size
    if vp is not None:
        return 1 + (pp - 1) / (pp * vp)
    if pp > 1 and num_microbatches is not None:
        return min(1, num_microbatches / pp)
    return 1.0


def megatron_activation_bytes(args, num_microbatches=None) -> float:
    """compute_activation_memory (SP with selective recompute) or ..._without_sp (otherwise), as
    report_theoretical_memory chooses: Korthikanti et al. 2022 Table 2, first pipeline stage."""
    s, b, h = args.seq_length, args.micro_batch_size, args.hidden_size
    tp, pp, vocab = args.tensor_model_parallel_size, args.pipeline_model_parallel_size, args.padded_vocab_size
    with_sp = args.sequence_parallel and args.recompute_granularity == "selective"
    per_layer = s * b * h * ((18 + 4 * args.ffn_hidden_size / h) if with_sp else (10 + 24 / tp))
    total = per_layer * args.num_layers + 8 * s * b * pp + s * b * h * pp
    total *= _pipeline_factor(args, num_microbatches)
    if with_sp:
        if pp == 1:
            total += s * b * h * 4 * (1 + vocab / h)
        return total / tp
    if pp == 1:
        total += (s * b * vocab / tp + s * b * h) * 2
    return total * 1.05


def megatron_theoretical_bytes(arch: Architecture, layout: Layout, options: MemoryOptions = MemoryOptions(),
                               sequence_parallel: bool | None = None) -> tuple[float, float]:
    """(weights and optimizer, activations) bytes per device by Megatron-LM's theoretical formula."""
    args = megatron_args(arch, layout, options, sequence_parallel)
    return megatron_weight_and_optimizer_bytes(args), megatron_activation_bytes(args, layout.micro_batches)


# -- moeplan's model ----------------------------------------------------------------------------------

def model_shape(a) -> SimpleNamespace:
    """Per-layer parameter counts and widths the memory and time models read, from an `Architecture` or a
    namespace of arrays with its field names (plus `n_dense`, the count of leading dense layers)."""
    n_dense = np.asarray(a.n_dense if hasattr(a, "n_dense") else len(a.dense_layers))
    d_dense = a.d_dense_ffn if a.d_dense_ffn is not None else 0
    mla = a.mla
    q_dim = a.n_heads * f.d_qk(a)
    kv_dim = a.n_heads * (f.d_qk(a) + f.d_v(a)) if mla is not None else 2 * a.n_kv_heads * a.d_head
    latent = (mla.kv_lora_rank + (mla.q_lora_rank or 0)) if mla is not None else 0
    n_sliding = np.asarray(a.n_sliding if hasattr(a, "n_sliding") else len(a.sliding_layers))
    window = a.sliding_window if a.sliding_window is not None else a.seq_len
    scores = ((a.n_layers - n_sliding) * f.attention_scores_x_seq(a, a.seq_len, True)
              + n_sliding * f.attention_scores_x_seq(a, window, True)) / (a.seq_len * a.n_layers)
    return SimpleNamespace(
        n_layers=np.asarray(a.n_layers), n_dense=n_dense, d_hidden=np.asarray(a.d_hidden),
        n_heads=np.asarray(a.n_heads), q_dim=np.asarray(q_dim), kv_dim=np.asarray(kv_dim),
        o_in=np.asarray(a.n_heads * f.d_v(a)), latent=latent,
        d_expert=np.asarray(a.d_expert), n_experts=np.asarray(a.n_experts), top_k=np.asarray(a.top_k),
        shared_width=np.asarray(a.n_shared_experts * a.d_shared_expert), d_dense=np.asarray(d_dense),
        vocab=np.asarray(a.vocab_size), seq=np.asarray(a.seq_len), tied=bool(a.tie_embeddings),
        attn_params=np.asarray(f.attention_weights(a) + f.attention_extras(a) + f.layer_norms(a)),
        moe_dense_params=np.asarray(f.router(a) + f.shared_experts(a)),
        expert_params=np.asarray(a.n_experts * f.routed_expert(a)),
        dense_ffn_params=np.asarray(f.swiglu(a.d_hidden, d_dense)),
        embedding=np.asarray(a.vocab_size * a.d_hidden), final_norm=np.asarray(f.final_norm(a)),
        attn_matmul=np.asarray(f.attention_weights(a)), scores=np.asarray(scores),
        sinks=bool(a.attention_sinks),
    )


def layout_arrays(layouts) -> SimpleNamespace:
    """A `Layout`, a list of them, or a namespace of arrays, as a namespace of int64 arrays with DP and EDP."""
    if isinstance(layouts, SimpleNamespace):
        return layouts
    items = [layouts] if isinstance(layouts, Layout) else list(layouts)
    names = ("world", "tp", "cp", "pp", "vp", "ep", "etp", "micro_batch")
    out = {n: np.array([getattr(x, n) for x in items], dtype=np.int64) for n in names}
    out["batch"] = np.array([x.batch for x in items], dtype=np.int64)
    return SimpleNamespace(**out)


def _stage_counts(s, pp):
    """Layers, dense layers and MoE layers of the first and last stages (dense layers lead the model)."""
    per = -(-s.n_layers // pp)
    last = s.n_layers - (pp - 1) * per
    first_dense = np.minimum(s.n_dense, per)
    last_dense = np.where(pp > 1, np.maximum(0, s.n_dense - (s.n_layers - last)), first_dense)
    last = np.where(pp > 1, last, per)
    return (per, first_dense, per - first_dense), (last, last_dense, last - last_dense)


def _layer_activation_bytes(s, L, o: MemoryOptions):
    """Activation bytes per token of one (attention, dense-FFN layer, MoE layer) on one device, per
    micro-batch, under sequence parallelism (divided by TP) and with the expert part over ETP.

    Korthikanti et al. 2022 Table 2 generalised: bf16 tensors kept for backward are the norm inputs (2h),
    the projection inputs (2h), q/k/v (GQA or MLA widths), the attention output, flash attention's fp32
    log-sum-exp; SwiGLU keeps gate and up outputs and the activation (6F); under fp8 GEMM inputs take 1
    byte; routed experts also keep their fc2 output for the combine's probability gradient. Selective recompute drops what
    its modules recompute (Megatron-Core --recompute-modules); "none" also keeps the scores (5as)."""
    tp, etp, h = L.tp, L.etp, s.d_hidden
    x = 1 if o.fp8 else 2  # bytes of a GEMM input kept for the weight gradient
    mods = set(o.recompute_modules) if o.recompute == "selective" else set()
    norm_out = 0 if "layernorm" in mods else x * h
    qkv = 2 * s.latent if "mla_up_proj" in mods and s.latent else 2 * s.q_dim + 2 * s.kv_dim + 2 * s.latent
    attention = (2 * h + norm_out + qkv + x * s.o_in + 4 * s.n_heads) / tp
    if o.recompute == "none" or (o.recompute == "selective" and "core_attn" not in mods):
        attention = attention + 5 * s.n_heads * s.seq / L.cp / tp  # scores, softmax, its output: 5as
    mlp_only_input = "mlp" in mods
    swiglu = 4 + (0 if "moe_act" in mods else x)  # gate and up outputs (bf16), the activation (fc2's input)
    dense = (2 * h + (0 if mlp_only_input else norm_out + swiglu * s.d_dense)) / tp
    shared = 0 if ("shared_experts" in mods or mlp_only_input) else swiglu * s.shared_width
    copies = s.top_k * o.capacity_factor
    if mlp_only_input:
        moe = (2 * h + 4 * s.n_experts) / tp
    else:
        moe = ((2 * h + norm_out + 4 * s.n_experts + shared) / tp
               + copies / tp * (etp * x * h + swiglu * s.d_expert + 2 * h))
    return attention, dense, moe


def _state_bytes(s, L, o: MemoryOptions, stage: int, counts) -> dict:
    """Weights, gradients and optimizer state of one stage (0 first, 1 last): no micro-batch dependence."""
    tp, pp = L.tp, L.pp
    dp = L.world // (L.tp * L.cp * L.pp)
    edp = L.world // (L.etp * L.ep * L.pp)
    layers, n_dense, n_moe = counts
    dense_params = (layers * s.attn_params + n_moe * s.moe_dense_params + n_dense * s.dense_ffn_params) / tp
    expert_params = n_moe * s.expert_params / (L.ep * L.etp)
    is_first, is_last = stage == 0, (stage == 1) | (pp == 1)
    dense_params = dense_params + (s.embedding / tp if is_first else 0)
    head = np.where(is_last, (s.embedding + s.final_norm * tp) / tp, 0)
    if s.tied:  # one copy serves both ends when PP = 1; a last stage keeps its own copy otherwise
        head = np.where(is_last & (pp > 1), head, np.where(is_last, s.final_norm, 0))
    dense_params = dense_params + head
    params = dense_params + expert_params
    if o.distributed_optimizer:
        optimizer = o.optimizer_bytes * (dense_params / (dp * L.cp) + expert_params / edp)
    else:
        optimizer = o.optimizer_bytes * params
    return {"weights": o.weight_bytes * params, "gradients": o.grad_bytes * params, "optimizer": optimizer}


def _in_flight(L):
    """Micro-batches whose activations the first stage holds: min(PP, m) under 1F1B, Megatron's interleaved
    penalty PP (1 + (PP-1)/(PP VP)) with virtual stages."""
    dp = L.world // (L.tp * L.cp * L.pp)
    micro_batches = L.batch // (L.micro_batch * dp)
    return np.where(L.vp > 1, L.pp * (1 + (L.pp - 1) / (L.pp * L.vp)), np.minimum(L.pp, np.maximum(micro_batches, 1)))


def _activation_pieces(s, L, o: MemoryOptions, stage: int, counts, per_token) -> tuple:
    """Activation bytes of one stage per sequence of the micro-batch: (held per micro-batch in flight, held
    once, dispatch buffers)."""
    tp, pp = L.tp, L.pp
    layers, n_dense, n_moe = counts
    attn, dense_act, moe_act = per_token
    tokens = s.seq / L.cp  # per sequence, before TP's sequence split
    is_first, is_last = stage == 0, (stage == 1) | (pp == 1)
    if o.recompute == "full":
        per_layer = 2 * s.d_hidden / tp * layers
        transient = np.maximum(attn + dense_act, attn + moe_act)  # one layer recomputed at a time
    else:
        per_layer = layers * attn + n_dense * dense_act + n_moe * moe_act
        transient = 0
    if is_first:
        per_layer = per_layer + 8  # input ids (int64), Megatron's 8sbp term
    once = transient + np.where(is_last, 2 * s.d_hidden / tp + 4 * s.vocab / tp, 0)  # fp32 logits
    buffers = np.where(n_moe > 0, 2 * tokens / tp * s.top_k * o.capacity_factor * 2 * s.d_hidden, 0)
    return tokens * per_layer, tokens * once, buffers


def _activation_bytes(s, L, o: MemoryOptions, stage: int, counts, per_token, in_flight) -> dict:
    """Activations and dispatch buffers of one stage for one micro-batch size and recompute choice."""
    held, once, buffers = _activation_pieces(s, L, o, stage, counts, per_token)
    flight = in_flight if stage == 0 else 1
    return {"activations": L.micro_batch * (held * flight + once), "dispatch_buffers": L.micro_batch * buffers}


def device_memory(shape, layouts, options: MemoryOptions = MemoryOptions()) -> dict[str, np.ndarray]:
    """Bytes per device of every term, on the more loaded of the first and last pipeline stages.

    Keys: weights, gradients, optimizer, activations, dispatch_buffers, reserve, total; and `stage`
    (0 first, 1 last) telling which stage is reported, `in_flight` micro-batches on the first stage.
    """
    s, L, o = shape, layout_arrays(layouts), options
    in_flight = _in_flight(L)
    per_token = _layer_activation_bytes(s, L, o)
    reserve = o.reserve_gib * GIB
    results = []
    for stage, counts in enumerate(_stage_counts(s, L.pp)):
        r = _state_bytes(s, L, o, stage, counts) | _activation_bytes(s, L, o, stage, counts, per_token, in_flight)
        r["total"] = r["weights"] + r["gradients"] + r["optimizer"] + r["activations"] + r["dispatch_buffers"] + reserve
        r["reserve"] = np.full_like(np.asarray(r["total"], float), reserve)
        results.append(r)
    first, last = results
    pick_last = last["total"] > first["total"]
    out = {k: np.where(pick_last, last[k], first[k]) for k in first}
    out["stage"] = pick_last.astype(np.int64)
    out["in_flight"] = np.broadcast_to(in_flight, np.shape(out["total"]))
    return out


def device_memory_variants(shape, layout, options: MemoryOptions, micro_batches, recomputes) -> dict:
    """Total bytes per device of one layout for each (micro-batch, recompute) pair: the state and the
    activations per sequence are computed once (the planner's fast path; equal to `device_memory`)."""
    s, L, reserve = shape, layout_arrays(layout), options.reserve_gib * GIB
    counts = _stage_counts(s, L.pp)
    state = [_state_bytes(s, L, options, stage, c) for stage, c in enumerate(counts)]
    state = [st["weights"] + st["gradients"] + st["optimizer"] + reserve for st in state]
    flights = {mb: _in_flight(SimpleNamespace(**(vars(L) | {"micro_batch": np.int64(mb)}))) for mb in micro_batches}
    out = {}
    for rc in recomputes:
        o = options.model_copy(update={"recompute": rc})
        per_token = _layer_activation_bytes(s, L, o)
        pieces = [_activation_pieces(s, L, o, stage, c, per_token) for stage, c in enumerate(counts)]
        for mb in micro_batches:
            totals = [state[k] + mb * (held * (flights[mb] if k == 0 else 1) + once + buffers)
                      for k, (held, once, buffers) in enumerate(pieces)]
            out[(mb, rc)] = np.maximum(*totals)
    return out


def memory_of(arch: Architecture, layout: Layout, options: MemoryOptions = MemoryOptions()) -> dict[str, float]:
    """`device_memory` of one architecture on one layout, as plain floats."""
    out = device_memory(model_shape(arch), layout, options)
    return {k: float(np.asarray(v).ravel()[0]) for k, v in out.items()}


def gib(x):
    return x / GIB


def ceil_div(a: int, b: int) -> int:
    return math.ceil(a / b)
