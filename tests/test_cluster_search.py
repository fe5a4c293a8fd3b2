"""Layout search: every candidate is one Megatron-Core accepts, the answer is the fastest that fits."""

from __future__ import annotations

import numpy as np
import pytest

from moeplan.cluster.hardware import accelerator
from moeplan.cluster.layout import layout_problems
from moeplan.cluster.memory import GIB, MemoryOptions, memory_of
from moeplan.cluster.search import best_layout, search
from moeplan.errors import MoeplanError
from moeplan.flops.architecture import Architecture

QWEN3_30B = Architecture(n_layers=48, d_hidden=2048, n_heads=32, n_kv_heads=4, d_head=128, qk_norm="head",
                         d_expert=768, n_experts=128, top_k=8, vocab_size=151936)


@pytest.fixture(scope="module")
def found():
    return search(QWEN3_30B, 64, accelerator("h100"), 512)


def test_every_candidate_is_accepted_and_folds(found):
    rng = np.random.default_rng(0)
    for k in rng.choice(len(found), size=200, replace=False):
        layout = found.layout(int(k))
        assert layout_problems(QWEN3_30B, layout) == []
        assert layout.tp * layout.cp * layout.pp * layout.dp == 64 == layout.etp * layout.ep * layout.pp * layout.edp
        assert QWEN3_30B.n_kv_heads % layout.tp == 0


def test_memory_of_a_candidate_matches_the_scalar_model(found):
    for k in (0, len(found) // 2, len(found) - 1):
        options = MemoryOptions(recompute=found.recompute(k))
        assert found.memory["total"][k] == pytest.approx(memory_of(QWEN3_30B, found.layout(k), options)["total"])


def test_best_is_the_fastest_that_fits(found):
    s, k = best_layout(QWEN3_30B, 64, accelerator("h100"), 512)
    assert s.fits[k]
    assert s.step_time[k] == pytest.approx(found.step_time[found.fits].min())
    assert s.memory["total"][k] <= 80 * GIB


def test_kv_heads_bound_tensor_parallelism():
    """14 kv heads: TP 4 and 8 are refused (Megatron-Core needs kv heads divisible by TP)."""
    arch = QWEN3_30B.model_copy(update={"n_heads": 56, "n_kv_heads": 14})
    s = search(arch, 64, accelerator("h100"), 512)
    assert set(np.unique(s.layouts.tp)) == {1, 2}


def test_model_too_big_names_the_memory_it_needs():
    big = QWEN3_30B.model_copy(update={"n_experts": 1024, "d_expert": 4096})
    with pytest.raises(MoeplanError, match=r"smallest memory per device any layout needs is [\d.]+ GiB"):
        best_layout(big, 8, accelerator("h100"), 64)


def test_cluster_with_no_layout_says_so():
    with pytest.raises(MoeplanError, match="no parallel layout of 97 devices"):
        best_layout(QWEN3_30B, 97, accelerator("h100"), 64)  # prime: only DP, which 64 refuses
