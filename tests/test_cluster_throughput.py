"""Throughput model: calibration against published MoE training throughput, and what the roofline implies."""

from __future__ import annotations

import numpy as np
import pytest

from moeplan.cluster.hardware import accelerator
from moeplan.cluster.layout import Layout
from moeplan.cluster.memory import model_shape
from moeplan.cluster.throughput import (_gemm, calibrated, calibration_rows, fit_efficiency, leave_one_out,
                                        step_parts, throughput)
from moeplan.flops.architecture import Architecture

QWEN3_30B = Architecture(n_layers=48, d_hidden=2048, n_heads=32, n_kv_heads=4, d_head=128, qk_norm="head",
                         d_expert=768, n_experts=128, top_k=8, vocab_size=151936)


@pytest.fixture(scope="module")
def rows():
    return calibration_rows()


def test_leave_one_out_error_is_within_twenty_percent(rows):
    """Must show: median |LOO error| <= 20 % over >= 8 public rows (data/published.json, docs/cluster.md)."""
    loo = leave_one_out(rows)
    assert len(loo) >= 8
    assert len({(r["model"], r["gpu"]) for r in loo}) >= 8
    assert np.median(np.abs([r["error"] for r in loo])) <= 0.20


def test_shipped_efficiency_is_the_fit(rows):
    fitted, shipped = fit_efficiency(rows), calibrated()
    for name in ("compute", "network", "memory", "overhead"):
        assert getattr(shipped, name) == pytest.approx(getattr(fitted, name), rel=1e-3, abs=1e-9)


def test_published_flops_per_token_is_consistent(rows):
    """Both sides of the table share each row's convention: published TFLOP/s / tokens/s is a FLOPs/token
    within 25 % of moeplan's exact count (Megatron counts causal attention in full, moeplan halves it)."""
    from moeplan.flops.count import count

    for r in rows:
        theirs = r["tflops_gpu"] * 1e12 / r["tokens_per_s_gpu"]
        ours = count(r["arch"]).train_flops_per_token
        assert 0.75 < theirs / ours < 1.35, r["model"]


def test_few_tokens_per_expert_are_memory_bound():
    """Roofline: a 768-wide expert seeing 16 tokens is bound by reading its weights, not by FLOPs."""
    h100 = accelerator("h100")
    m, k, n = 16, 2048, 3 * 768
    t = _gemm(m, k, n, 1, h100.bf16_flops, h100.hbm_tbps * 1e12, 2)
    assert t == pytest.approx((2 * (m * k + k * n) + 2 * m * n) / (h100.hbm_tbps * 1e12), rel=1e-12)
    assert t > 2 * m * k * n / h100.bf16_flops * 10


def test_expert_parallel_beyond_the_nvlink_domain_costs_more():
    shape = model_shape(QWEN3_30B)
    h100 = accelerator("h100")
    inside = step_parts(shape, Layout(world=64, ep=8, global_batch=512), h100)
    across = step_parts(shape, Layout(world=64, ep=32, global_batch=512), h100)
    assert float(across["network"][0]) > 2 * float(inside["network"][0])
    # a GB200 NVL72 domain holds the 32-way group: no inter-node term
    gb = step_parts(shape, Layout(world=64, ep=32, global_batch=512), accelerator("gb200"))
    assert float(gb["network"][0]) < float(across["network"][0]) / 4


def test_bubble_and_tokens():
    shape = model_shape(QWEN3_30B)
    dev = accelerator("h100")
    flat = throughput(shape, Layout(world=16, pp=1, ep=8, global_batch=256), dev)
    deep = throughput(shape, Layout(world=16, pp=2, ep=8, global_batch=256), dev)
    parts = step_parts(shape, Layout(world=16, pp=2, ep=8, global_batch=256), dev)
    assert float(parts["slots"][0]) == 256 / 8 + 1  # micro-batches + (PP-1)/VP
    assert flat["tokens_per_s"][0] == pytest.approx(256 * 4096 / flat["step_time"][0])
    assert deep["step_time"][0] > 0


def test_deepseek_v3_gpu_hours():
    """Out of sample: DeepSeek-V3 pre-training took 2,664K H800 GPU-hours for 14.8T tokens (arXiv:2412.19437
    Table 1) on PP 16, EP 64, ZeRO-1 DP (section 3.2); the fitted model lands within 15 %."""
    from moeplan.cluster.memory import MemoryOptions
    from moeplan.cluster.report import Cluster, evaluate
    from moeplan.cluster.throughput import published

    arch = Architecture(**published()["models"]["DeepSeek-V3"]["architecture"])
    options = MemoryOptions(fp8=True, recompute_modules=("core_attn", "layernorm", "mla_up_proj", "moe_act"),
                            moment_bytes=4)
    plan = evaluate(arch, Cluster(gpus=2048, gpu="h800", memory=options), Layout(world=2048, pp=16, ep=64,
                    global_batch=15360), 14.8e12, options)
    assert plan.gpu_hours == pytest.approx(2.664e6, rel=0.15)
    assert plan.memory.fits
