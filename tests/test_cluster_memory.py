"""Memory per device: Megatron-LM's theoretical formula reproduced exactly, published layouts fit, invariants.

Reference: megatron/training/theoretical_memory_usage.py in NVIDIA/Megatron-LM at commit
00caa53af30912914981c86f39db123961678bbd, transcribed below (compute_weight_and_optimizer_memory,
compute_activation_memory, compute_activation_memory_without_sp; the print statements dropped) and
evaluated on Namespaces written out by hand from the models' published configs.
"""

from __future__ import annotations

import json
import math
from argparse import Namespace
from importlib import resources

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moeplan.cluster.hardware import accelerator
from moeplan.cluster.layout import Layout, layout_problems
from moeplan.cluster.memory import (GIB, MemoryOptions, device_memory, megatron_args, megatron_theoretical_bytes,
                                    memory_of, model_shape)
from moeplan.flops.architecture import Architecture


# --- transcription of Megatron-LM's formula (commit 00caa53a) ------------------------------------------
def ref_weight_and_optimizer(args):
    query_projection_size = args.kv_channels * args.num_attention_heads
    query_projection_to_hidden_size_ratio = query_projection_size / args.hidden_size
    if not args.group_query_attention:
        args.num_query_groups = args.num_attention_heads
    num_experts = 1 if args.num_experts is None else args.num_experts
    gated_linear_multiplier = 3 / 2 if args.swiglu else 1
    shared_expert_ffn_hidden_size = (0 if args.moe_shared_expert_intermediate_size is None
                                     else args.moe_shared_expert_intermediate_size)
    if args.num_experts is not None:
        moe_layer_pattern = args.moe_layer_freq
        num_dense_layers = args.num_layers - sum(moe_layer_pattern)
        num_moe_layers = sum(moe_layer_pattern)
        moe_ffn_hidden_size = args.moe_ffn_hidden_size
    else:
        moe_layer_pattern = [0] * args.num_layers
        num_dense_layers = args.num_layers
        num_moe_layers = 0
        moe_ffn_hidden_size = 0
    mtp_num_moe_layers = mtp_num_dense_layers = 0
    norm_size = 1 if args.normalization == "RMSNorm" else 2
    if args.multi_latent_attention:
        if args.q_lora_rank is None:
            q_term = args.hidden_size * args.num_attention_heads * (args.qk_head_dim + args.qk_pos_emb_head_dim)
        else:
            q_term = args.q_lora_rank * (args.hidden_size + args.num_attention_heads
                                         * (args.qk_head_dim + args.qk_pos_emb_head_dim) + norm_size)
        self_attn_term = (q_term + args.kv_lora_rank * (args.hidden_size + args.num_attention_heads
                                                        * (args.qk_head_dim + args.v_head_dim) + norm_size)
                          + args.hidden_size * args.qk_pos_emb_head_dim
                          + (args.num_attention_heads * args.v_head_dim) * args.hidden_size)
    else:
        self_attn_term = (2 * args.hidden_size * args.hidden_size
                          * ((1 + (args.num_query_groups / args.num_attention_heads))
                             * query_projection_to_hidden_size_ratio))
    dense = 2 * args.hidden_size * ((args.ffn_hidden_size * gated_linear_multiplier) + norm_size) + self_attn_term
    moe = (2 * args.hidden_size * (+(moe_ffn_hidden_size * num_experts * gated_linear_multiplier)
                                   + (shared_expert_ffn_hidden_size * gated_linear_multiplier) + norm_size)
           + self_attn_term)
    embedding_size = args.hidden_size * args.padded_vocab_size
    final_layernorm = norm_size * args.hidden_size
    block = dense * num_dense_layers + moe * num_moe_layers + final_layernorm
    mtp = dense * mtp_num_dense_layers + moe * mtp_num_moe_layers
    shard = ((block / args.pipeline_model_parallel_size) + mtp + embedding_size) / args.tensor_model_parallel_size
    if args.untie_embeddings_and_output_weights and args.pipeline_model_parallel_size == 1:
        shard += embedding_size / args.tensor_model_parallel_size
    per_param = 18 if not args.use_distributed_optimizer else 6 + (12 / args.data_parallel_size)
    return shard * per_param


def ref_activation_sp(args, num_microbatches):
    m = (args.seq_length * args.micro_batch_size * args.hidden_size) * (18 + (4 * (args.ffn_hidden_size / args.hidden_size)))
    m *= args.num_layers
    m += 8 * args.seq_length * args.micro_batch_size * args.pipeline_model_parallel_size
    m += args.seq_length * args.micro_batch_size * args.hidden_size * args.pipeline_model_parallel_size
    if args.virtual_pipeline_model_parallel_size is not None:
        m *= 1 + ((args.pipeline_model_parallel_size - 1)
                  / (args.pipeline_model_parallel_size * args.virtual_pipeline_model_parallel_size))
    if args.virtual_pipeline_model_parallel_size is None and args.pipeline_model_parallel_size > 1:
        if num_microbatches is not None:
            m *= min(1, num_microbatches / args.pipeline_model_parallel_size)
    if args.pipeline_model_parallel_size == 1:
        m += (args.seq_length * args.micro_batch_size * args.hidden_size * 4
              * (1 + (args.padded_vocab_size / args.hidden_size)))
    return m / args.tensor_model_parallel_size


def ref_activation_without_sp(args, num_microbatches):
    m = args.seq_length * args.micro_batch_size * args.hidden_size * (10 + (24 / args.tensor_model_parallel_size))
    m *= args.num_layers
    m += 8 * args.seq_length * args.micro_batch_size * args.pipeline_model_parallel_size
    m += args.seq_length * args.micro_batch_size * args.hidden_size * args.pipeline_model_parallel_size
    if args.virtual_pipeline_model_parallel_size is not None:
        m *= 1 + ((args.pipeline_model_parallel_size - 1)
                  / (args.pipeline_model_parallel_size * args.virtual_pipeline_model_parallel_size))
    if args.virtual_pipeline_model_parallel_size is None and args.pipeline_model_parallel_size > 1:
        if num_microbatches is not None:
            m *= min(1, num_microbatches / args.pipeline_model_parallel_size)
    if args.pipeline_model_parallel_size == 1:
        logits = args.seq_length * args.micro_batch_size * args.padded_vocab_size / args.tensor_model_parallel_size
        m += (logits + args.seq_length * args.micro_batch_size * args.hidden_size) * 2
    return m * 1.05


def ref_activation(args, num_microbatches):
    if args.sequence_parallel and args.recompute_granularity == "selective":
        return ref_activation_sp(args, num_microbatches)
    return ref_activation_without_sp(args, num_microbatches)


# --- five configurations, Megatron arguments written out from the published configs -------------------
def _ns(**kw):
    base = dict(swiglu=True, normalization="RMSNorm", group_query_attention=False, num_query_groups=None,
                num_experts=None, moe_ffn_hidden_size=None, moe_shared_expert_intermediate_size=None,
                moe_layer_freq=None, mtp_num_layers=None, multi_latent_attention=False, q_lora_rank=None,
                kv_lora_rank=None, qk_head_dim=None, qk_pos_emb_head_dim=None, v_head_dim=None,
                untie_embeddings_and_output_weights=True, virtual_pipeline_model_parallel_size=None,
                use_distributed_optimizer=True, seq_length=4096, micro_batch_size=1, sequence_parallel=True,
                recompute_granularity="selective")
    return Namespace(**(base | kw))


CASES = {
    # Llama-3-8B-shaped dense model (all layers dense), TP 2, PP 1, distributed optimizer over DP 4
    "dense-llama3-8b": (
        dict(n_layers=32, d_hidden=4096, n_heads=32, n_kv_heads=8, d_head=128, d_expert=14336, n_experts=1, top_k=1,
             dense_layers=tuple(range(32)), d_dense_ffn=14336, vocab_size=128256, seq_len=8192),
        dict(world=8, tp=2, micro_batch=1, global_batch=64),
        _ns(num_layers=32, hidden_size=4096, num_attention_heads=32, kv_channels=128, group_query_attention=True,
            num_query_groups=8, ffn_hidden_size=14336, padded_vocab_size=128256, seq_length=8192,
            pipeline_model_parallel_size=1, tensor_model_parallel_size=2, data_parallel_size=4), 64 // 4),
    # Mixtral-8x7B, TP 1 (no sequence parallelism: the without-SP branch), PP 4, no distributed optimizer
    "mixtral-8x7b": (
        dict(n_layers=32, d_hidden=4096, n_heads=32, n_kv_heads=8, d_head=128, d_expert=14336, n_experts=8, top_k=2,
             vocab_size=32000),
        dict(world=64, tp=1, pp=4, ep=8, micro_batch=1, global_batch=256),
        _ns(num_layers=32, hidden_size=4096, num_attention_heads=32, kv_channels=128, group_query_attention=True,
            num_query_groups=8, ffn_hidden_size=14336, num_experts=8, moe_ffn_hidden_size=14336,
            moe_layer_freq=[1] * 32, padded_vocab_size=32000, pipeline_model_parallel_size=4,
            tensor_model_parallel_size=1, data_parallel_size=16, use_distributed_optimizer=False,
            sequence_parallel=False), 256 // 16),
    # Qwen3-30B-A3B, PP 2 with 12 virtual stages, EP 8 (Megatron-Bridge's H100 recipe layout)
    "qwen3-30b-a3b": (
        dict(n_layers=48, d_hidden=2048, n_heads=32, n_kv_heads=4, d_head=128, qk_norm="head", d_expert=768,
             n_experts=128, top_k=8, vocab_size=151936),
        dict(world=16, pp=2, vp=12, ep=8, micro_batch=2, global_batch=512),
        _ns(num_layers=48, hidden_size=2048, num_attention_heads=32, kv_channels=128, group_query_attention=True,
            num_query_groups=4, ffn_hidden_size=768, num_experts=128, moe_ffn_hidden_size=768,
            moe_layer_freq=[1] * 48, padded_vocab_size=151936, pipeline_model_parallel_size=2,
            virtual_pipeline_model_parallel_size=12, tensor_model_parallel_size=1, data_parallel_size=8,
            micro_batch_size=2, sequence_parallel=False), 512 // 16),
    # DeepSeek-V3: MLA, 3 leading dense layers, one shared expert, TP 2 with SP, PP 8 VP 4 (vocab padded to 256)
    "deepseek-v3": (
        dict(n_layers=61, d_hidden=7168, n_heads=128,
             mla=dict(q_lora_rank=1536, kv_lora_rank=512, qk_rope_head_dim=64, qk_nope_head_dim=128, v_head_dim=128),
             d_expert=2048, n_experts=256, top_k=8, n_shared_experts=1, n_leading_dense=3, d_dense_ffn=18432,
             vocab_size=129280),
        dict(world=1024, tp=2, pp=8, vp=4, ep=64, micro_batch=1, global_batch=8192),
        _ns(num_layers=61, hidden_size=7168, num_attention_heads=128, kv_channels=128, ffn_hidden_size=18432,
            num_experts=256, moe_ffn_hidden_size=2048, moe_shared_expert_intermediate_size=2048,
            moe_layer_freq=[0, 0, 0] + [1] * 58, multi_latent_attention=True, q_lora_rank=1536, kv_lora_rank=512,
            qk_head_dim=128, qk_pos_emb_head_dim=64, v_head_dim=128, padded_vocab_size=129280,
            pipeline_model_parallel_size=8, virtual_pipeline_model_parallel_size=4, tensor_model_parallel_size=2,
            data_parallel_size=64), 8192 // 64),
    # Qwen3-235B-A22B, TP 4 with SP, PP 1, tied-free, vocab 151936 padded to 152064 (multiple of 512)
    "qwen3-235b-a22b": (
        dict(n_layers=94, d_hidden=4096, n_heads=64, n_kv_heads=4, d_head=128, qk_norm="head", d_expert=1536,
             n_experts=128, top_k=8, vocab_size=151936),
        dict(world=256, tp=4, ep=64, micro_batch=1, global_batch=2048),
        _ns(num_layers=94, hidden_size=4096, num_attention_heads=64, kv_channels=128, group_query_attention=True,
            num_query_groups=4, ffn_hidden_size=1536, num_experts=128, moe_ffn_hidden_size=1536,
            moe_layer_freq=[1] * 94, padded_vocab_size=152064, pipeline_model_parallel_size=1,
            tensor_model_parallel_size=4, data_parallel_size=64), 2048 // 64),
    # GPT-2-XL-like tied dense model with LayerNorm (norm_size 2), TP 1, full recompute: the without-SP branch
    "dense-tied-layernorm": (
        dict(n_layers=48, d_hidden=1600, n_heads=25, d_head=64, d_expert=6400, n_experts=1, top_k=1, norm_bias=True,
             dense_layers=tuple(range(48)), d_dense_ffn=6400, vocab_size=50257, tie_embeddings=True, seq_len=1024),
        dict(world=4, micro_batch=8, global_batch=64),
        _ns(num_layers=48, hidden_size=1600, num_attention_heads=25, kv_channels=64, ffn_hidden_size=6400,
            normalization="LayerNorm", padded_vocab_size=50304, untie_embeddings_and_output_weights=False,
            seq_length=1024, micro_batch_size=8, pipeline_model_parallel_size=1, tensor_model_parallel_size=1,
            data_parallel_size=4, sequence_parallel=False, recompute_granularity="full"), 64 // 32),
}


@pytest.mark.parametrize("name", CASES)
def test_reproduces_megatron_theoretical_memory(name):
    arch_fields, layout_fields, args, microbatches = CASES[name]
    arch = Architecture(**arch_fields)
    layout = Layout(**layout_fields)
    options = MemoryOptions(recompute=args.recompute_granularity or "none",
                            distributed_optimizer=args.use_distributed_optimizer)
    assert layout.micro_batches == microbatches
    weights, activations = megatron_theoretical_bytes(arch, layout, options, sequence_parallel=args.sequence_parallel)
    assert weights == pytest.approx(ref_weight_and_optimizer(Namespace(**vars(args))), rel=1e-12)
    assert activations == pytest.approx(ref_activation(args, microbatches), rel=1e-12)
    ours = megatron_args(arch, layout, options, args.sequence_parallel)
    assert ours.padded_vocab_size == args.padded_vocab_size


def test_megatron_formula_ignores_expert_parallelism_and_ours_does_not():
    """What moeplan models beyond Megatron's formula: EP divides the experts' weights and state."""
    arch = Architecture(**CASES["deepseek-v3"][0])
    small, large = (Layout(world=1024, tp=2, pp=8, ep=ep, micro_batch=1, global_batch=8192) for ep in (8, 64))
    assert megatron_theoretical_bytes(arch, small)[0] == megatron_theoretical_bytes(arch, large)[0]
    assert memory_of(arch, large)["weights"] < memory_of(arch, small)["weights"] / 3


def _published():
    return json.loads(resources.files("moeplan.cluster").joinpath("data/published.json").read_text())


@pytest.mark.parametrize("row", _published()["memory_fits"], ids=lambda r: f"{r['model']}-{r['gpu']}-{r['gpus']}")
def test_published_layouts_fit(row):
    """Real MoE runs fit their devices under the recompute they report (sources in published.json)."""
    data = _published()
    arch = Architecture(**data["models"][row["model"]]["architecture"])
    layout = Layout(world=row["gpus"], tp=row["tp"], pp=row["pp"], vp=row["vp"], ep=row["ep"],
                    micro_batch=row["micro_batch"], global_batch=row["global_batch"])
    assert layout_problems(arch, layout) == []
    options = MemoryOptions(recompute=row["recompute"], recompute_modules=tuple(row["recompute_modules"]),
                            moment_bytes=row["moment_bytes"], fp8=row.get("fp8", False))
    total = memory_of(arch, layout, options)["total"]
    assert total <= accelerator(row["gpu"]).hbm_gb * GIB
    # and the same run without any recompute and with bf16 everywhere would not be cheaper
    assert memory_of(arch, layout, MemoryOptions(recompute="none"))["total"] > total


def test_terms_add_up_and_full_recompute_saves():
    arch = Architecture(**CASES["qwen3-30b-a3b"][0])
    layout = Layout(**CASES["qwen3-30b-a3b"][1])
    m = memory_of(arch, layout)
    parts = ("weights", "gradients", "optimizer", "activations", "dispatch_buffers", "reserve")
    assert sum(m[k] for k in parts) == pytest.approx(m["total"])
    full = memory_of(arch, layout, MemoryOptions(recompute="full"))
    assert full["activations"] < m["activations"] / 3
    assert full["weights"] == pytest.approx(m["weights"], rel=1e-3)  # the stage reported may differ


@settings(max_examples=40, deadline=None)
@given(tp=st.sampled_from([1, 2, 4]), pp=st.sampled_from([1, 2, 4]), ep=st.sampled_from([1, 2, 4, 8]),
       dp_mult=st.sampled_from([1, 2, 4]))
def test_more_sharding_never_costs_more_state(tp, pp, ep, dp_mult):
    """Weights per device fall as TP, PP or EP grow; the optimizer state falls as the world grows."""
    arch = Architecture(**CASES["qwen3-30b-a3b"][0])
    world = math.lcm(tp * pp, ep * pp) * dp_mult
    base = Layout(world=world, tp=tp, pp=pp, ep=ep)
    bigger = Layout(world=world * 2, tp=tp, pp=pp, ep=ep)
    shape = model_shape(arch)
    a, b = device_memory(shape, base), device_memory(shape, bigger)
    assert np.all(b["optimizer"] <= a["optimizer"] + 1e-6)
    if ep < 8:
        wider = Layout(world=math.lcm(tp * pp, 2 * ep * pp) * dp_mult, tp=tp, pp=pp, ep=2 * ep)
        assert device_memory(shape, wider)["weights"][0] < a["weights"][0]
