"""The counter against published numbers: real models' fixture counts, [HY] Table 1, torchtitan's FLOPs."""

from __future__ import annotations

import json
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal

import pytest

from moeplan import Architecture, count
from tests.conftest import DATA
from tests.hf_configs import hf_config

FIXTURES = json.loads((DATA / "real-moe-configs.json").read_text())

# Each maker's published figure and the convention that reproduces it (docs/science.md section 7), in billions,
# written at the precision it was published at. Qwen and DeepSeek truncate: Qwen3's 3,353,032,704 active is
# published as 3.3B, V2-Lite's 2,451,435,008 (LM head in, input embedding out) as 2.4B; the others round.
TRUNCATED = {("Qwen3-30B-A3B", "active", "all"), ("DeepSeek-V2-Lite", "active", "without_input_embedding")}
PUBLISHED = {
    "Qwen3-30B-A3B": [("total", "all", "30.5"), ("active", "all", "3.3")],
    "Mixtral-8x7B": [("total", "all", "46.7"), ("active", "all", "12.9")],
    "OLMoE-1B-7B-0924": [("total", "all", "6.9"), ("total", "all", "7"), ("active", "all", "1.3"),
                         ("active", "without_embeddings", "1")],
    "DeepSeek-V2-Lite": [("total", "all", "15.7"), ("total", "all", "16"),
                         ("active", "without_input_embedding", "2.4")],
    "Qwen1.5-MoE-A2.7B": [("total", "all", "14.3"), ("active", "all", "2.7")],
    "gpt-oss-20b": [("total", "all", "20.9"), ("total", "all", "21"), ("active", "without_input_embedding", "3.6")],
    "Moonlight-16B-A3B": [("total", "without_embeddings", "15.29"), ("total", "all", "16"),
                          ("active", "without_embeddings", "2.24"), ("active", "all", "3")],
}
FIXTURE_KEYS = {
    "total": ("total", "all"),
    "total_excl_emb_and_head": ("total", "without_embeddings"),
    "active": ("active", "all"),
    "active_excl_input_emb": ("active", "without_input_embedding"),
    "active_excl_emb_and_head": ("active", "without_embeddings"),
}


@pytest.fixture(params=sorted(FIXTURES))
def counted(request, cli, tmp_path):
    name = request.param
    path = tmp_path / "config.json"
    path.write_text(json.dumps(hf_config(name, FIXTURES[name])))
    result = cli("count", path, "--json")
    assert result.code == 0, result.err
    return name, result.json()


def test_fixture_recomputed_counts_match_exactly(counted):
    name, out = counted
    for key, (which, convention) in FIXTURE_KEYS.items():
        assert out[which][convention] == FIXTURES[name]["computed"][key], (name, key)


def test_published_counts_reproduced_at_their_precision(counted):
    name, out = counted
    assert set(PUBLISHED) == set(FIXTURES)
    for which, convention, published in PUBLISHED[name]:
        exponent = Decimal(published).as_tuple().exponent
        ours = Decimal(out[which][convention]) / Decimal(10**9)
        mode = ROUND_DOWN if (name, which, convention) in TRUNCATED else ROUND_HALF_EVEN
        assert ours.quantize(Decimal(1).scaleb(exponent), rounding=mode) == Decimal(published), (name, which)


def test_qwen3_torchtitan_flops_per_token_exact(cli, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(hf_config("Qwen3-30B-A3B", FIXTURES["Qwen3-30B-A3B"])))
    out = cli("count", path, "--convention", "torchtitan", "--seq-len", "8192", "--json").json()
    assert out["train_flops_per_token"] == 37_578_559_488


# [HY] Table 1 (docs/science.md section 2): total N, active N_a, l, n_e, n_k, n_s, heads, d_hidden, d_expert, d_head.
HY_TABLE1 = [
    (247e6, 48e6, 12, 32, 4, 1, 8, 512, 384, 64),
    (496e6, 99e6, 12, 32, 4, 1, 12, 768, 512, 64),
    (907e6, 181e6, 12, 32, 4, 1, 16, 1024, 704, 64),
    (2.40e9, 476e6, 20, 32, 4, 1, 20, 1280, 896, 64),
    (3.96e9, 793e6, 24, 32, 4, 1, 24, 1536, 1024, 64),
]


@pytest.mark.parametrize("row", HY_TABLE1, ids=[f"{r[0]:.3g}" for r in HY_TABLE1])
def test_hy_table1_non_embedding_counts(row):
    n, n_a, l, n_e, n_k, n_s, heads, d, d_e, d_head = row
    arch = Architecture(n_layers=l, d_hidden=d, n_heads=heads, d_head=d_head, d_expert=d_e, n_experts=n_e,
                        top_k=n_k, n_shared_experts=n_s, vocab_size=50280)
    c = count(arch)
    assert c.total.without_embeddings == pytest.approx(n, rel=0.005)
    assert c.active.without_embeddings == pytest.approx(n_a, rel=0.005)
