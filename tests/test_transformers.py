"""Ground truth from transformers and PyTorch: instantiated models have moeplan's counts and FLOPs."""

from __future__ import annotations

import json
import shlex
import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoConfig, AutoModelForCausalLM
from transformers.utils import logging as hf_logging

from moeplan import MLA, Architecture, count
from moeplan.flops.hf import FAMILIES, default_family, from_hf_config, to_hf_config
from moeplan.planner.family import plan_family, plannable

hf_logging.set_verbosity_error()
warnings.filterwarnings("ignore", module="transformers")


def checkpoint_tensors(model) -> int:
    """What a checkpoint stores: parameters (shared ones once) and persistent buffers (e.g. correction biases)."""
    persistent = set(model.state_dict())
    return sum(p.numel() for p in model.parameters()) + sum(
        b.numel() for name, b in model.named_buffers() if name in persistent)


def build(cfg: dict, device: str = "meta", **kw):
    # experts as a loop of matmuls: transformers' default torch._grouped_mm is invisible to FlopCounterMode
    config = AutoConfig.for_model(**cfg, **kw, experts_implementation="eager")
    with torch.device(device):
        return AutoModelForCausalLM.from_config(config), config


@st.composite
def architectures_for(draw, family: str):
    """Small architectures that `family` holds exactly."""
    fam = FAMILIES[family]
    n_layers = draw(st.integers(1, 4))
    n_kv = draw(st.sampled_from([1, 2]))
    n_heads = n_kv * draw(st.sampled_from([1, 2]))
    n_experts = draw(st.integers(2, 8))
    d_expert = draw(st.sampled_from([8, 16, 24]))
    fields = dict(n_layers=n_layers, d_hidden=draw(st.sampled_from([32, 48, 64])), n_heads=n_heads,
                  n_kv_heads=n_kv, d_head=draw(st.sampled_from([8, 16])), d_expert=d_expert, n_experts=n_experts,
                  top_k=draw(st.integers(1, n_experts)), vocab_size=draw(st.integers(50, 150)),
                  tie_embeddings=draw(st.booleans()) if family != "gpt_oss" else False,
                  router_bias=fam.router_bias, expert_bias=fam.expert_bias, attention_sinks=fam.sinks,
                  norm_bias=fam.norm_bias, seq_len=16)
    if not fam.head_dim:
        fields["d_head"] = fields["d_hidden"] // n_heads
    if fam.mla:
        fields |= {"n_kv_heads": n_heads, "d_head": None, "mla": MLA(
            q_lora_rank=draw(st.sampled_from([None, 24])), kv_lora_rank=draw(st.sampled_from([16, 32])),
            qk_rope_head_dim=8, qk_nope_head_dim=draw(st.sampled_from([8, 16])), v_head_dim=draw(st.sampled_from([8, 16])))}
    else:
        bias = fam.attention_bias if isinstance(fam.attention_bias, str) else draw(st.sampled_from(["none", fam.attention_bias[1]]))
        qk = {"flag": draw(st.sampled_from(["none", "head"]))}.get(fam.qk_norm, fam.qk_norm)
        fields |= {"attention_bias": bias, "qk_norm": qk}
    if fam.shared == "count":
        fields["n_shared_experts"] = draw(st.integers(0, 2))
    elif fam.shared == "fused" and fam.shared_key == fam.expert_width:
        fields["n_shared_experts"] = 1
    elif fam.shared == "fused":
        fields |= {"n_shared_experts": draw(st.integers(int(fam.shared_required), 1)),
                   "d_shared_expert": draw(st.sampled_from([8, 40]))}
        fields["shared_expert_gate"] = fam.shared_gate and fields["n_shared_experts"] > 0
    if fam.dense != "none" and n_layers > 1:
        k = draw(st.integers(0, n_layers - 1))
        if fam.dense == "first_k":
            fields["dense_layers"] = tuple(range(k))
        else:
            fields["dense_layers"] = tuple(draw(st.sets(st.integers(0, n_layers - 1), max_size=n_layers - 1)))
        fields["d_dense_ffn"] = draw(st.sampled_from([40, 56]))
    if fam.sliding == "all" and draw(st.booleans()):
        fields |= {"sliding_window": 8, "sliding_layers": tuple(range(n_layers))}
    elif fam.sliding == "layer_types" and draw(st.booleans()):
        fields |= {"sliding_window": 8, "sliding_layers": tuple(draw(st.sets(st.integers(0, n_layers - 1),
                                                                           min_size=1)))}
    return Architecture(**fields)


@pytest.mark.parametrize("family", sorted(FAMILIES))
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_exported_config_instantiates_with_moeplans_count(family, data):
    arch = data.draw(architectures_for(family))
    cfg = to_hf_config(arch, family)
    model, config = build(cfg)
    assert checkpoint_tensors(model) == count(arch).total.all
    d_qk = arch.d_head if arch.mla is None else arch.mla.qk_nope_head_dim + arch.mla.qk_rope_head_dim
    (scale,) = attention_scales(model)
    assert scale == pytest.approx(d_qk ** -0.5, rel=1e-12)
    # round trip: the instantiated config, read back, is the same architecture
    assert from_hf_config(config.to_dict(), seq_len=arch.seq_len) == arch


SMALL = {"hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
         "vocab_size": 128, "intermediate_size": 96, "moe_intermediate_size": 32, "head_dim": 16}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_transformers_default_configs_are_read_exactly(family):
    """transformers' own defaults (every field it sets), shrunk: the reader must get the count right."""
    extra = {"deepseek_v3": {"n_group": 1, "topk_group": 1}, "glm4_moe": {"n_group": 1, "topk_group": 1},
             "glm4_moe_lite": {"n_group": 1, "topk_group": 1, "q_lora_rank": 32, "kv_lora_rank": 32},
             "deepseek_v2": {"n_group": 1, "topk_group": 1, "q_lora_rank": None, "kv_lora_rank": 32,
                             "num_experts_per_tok": 2},
             "gpt_oss": {"num_local_experts": 4}, "minimax_m2": {"num_local_experts": 8},
             "exaone_moe": {"num_experts": 8, "mlp_layer_types": ["dense", "sparse", "sparse"]},
             "hunyuan_v1_moe": {"num_experts": 4, "moe_topk": 2}}.get(family, {})
    model, config = build({"model_type": family} | SMALL | extra)
    assert checkpoint_tensors(model) == count(from_hf_config(config.to_dict())).total.all


# -- FLOPs measured by PyTorch -------------------------------------------------------------------------
FLOP_CASES = {
    "mixtral": Architecture(n_layers=2, d_hidden=64, n_heads=4, n_kv_heads=2, d_head=16, d_expert=48, n_experts=4,
                            top_k=2, vocab_size=97, seq_len=24),
    "qwen3_moe": Architecture(n_layers=2, d_hidden=64, n_heads=4, n_kv_heads=2, d_head=16, qk_norm="head",
                              d_expert=32, n_experts=8, top_k=3, vocab_size=97, seq_len=24, dense_layers=(0,),
                              d_dense_ffn=80),
    "deepseek_v3": Architecture(n_layers=3, d_hidden=64, n_heads=4, mla=MLA(q_lora_rank=32, kv_lora_rank=24,
                                qk_rope_head_dim=8, qk_nope_head_dim=16, v_head_dim=16), d_expert=24, n_experts=8,
                                top_k=2, n_shared_experts=1, router_bias=True, dense_layers=(0,), d_dense_ffn=96,
                                vocab_size=97, seq_len=24),
}


@pytest.mark.parametrize("family", sorted(FLOP_CASES))
def test_measured_flops_equal_exact_flops(family):
    """FlopCounterMode counts matmuls (QK^T and AV over every key: no causal skipping) -> --no-causal."""
    arch = FLOP_CASES[family]
    extra = {"n_group": 1, "topk_group": 1} if family == "deepseek_v3" else {}
    torch.manual_seed(0)
    model, _ = build(to_hf_config(arch, family) | extra, device="cpu", attn_implementation="eager")
    tokens = torch.randint(0, arch.vocab_size, (2, arch.seq_len))
    expected = count(arch, "exact", causal=False)
    with FlopCounterMode(display=False) as forward:
        with torch.no_grad():
            model(tokens)
    assert forward.get_total_flops() == expected.forward_flops_per_token * tokens.numel()
    with FlopCounterMode(display=False) as training:
        model(tokens, labels=tokens).loss.backward()
    assert training.get_total_flops() == expected.train_flops_per_token * tokens.numel()


def test_default_family_is_chosen_by_features():
    assert default_family(FLOP_CASES["deepseek_v3"]) == "deepseek_v3"
    assert default_family(FLOP_CASES["qwen3_moe"]) == "qwen3_moe"
    planned = Architecture(n_layers=4, d_hidden=64, n_heads=4, n_kv_heads=1, d_expert=32, n_experts=8, top_k=2,
                           n_shared_experts=2, vocab_size=100)
    assert default_family(planned) == "granitemoeshared"


def test_family_class_names_are_transformers_own():
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    for name, fam in FAMILIES.items():
        assert MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[name] == fam.causal_lm


FAST_FAMILIES = ("glm4_moe", "qwen3_moe", "mixtral")  # the default, q/k norms, no shared experts; others: slow


def attention_scales(model) -> set[float]:
    """The factor each attention layer multiplies q·k by (transformers' `self_attn.scaling`)."""
    return {m.scaling for name, m in model.named_modules() if name.endswith("self_attn")}


@pytest.mark.parametrize("family", [f if f in FAST_FAMILIES else pytest.param(f, marks=pytest.mark.slow)
                                    for f in plannable()])
def test_plan_for_each_family_builds_in_transformers_with_the_plans_count(cli, tmp_path, family):
    """`plan --family F --export hf`: transformers builds exactly the counted model, attention scaled by
    1/sqrt(d_head) (granite's attention_multiplier defaulted to 1.0 before)."""
    dense = "1" if plan_family(family).dense_layers else "0"
    result = cli("plan", "--flops", "1e20", "--family", family, "--dense-layers", dense, "--max-d-hidden", "1024",
                 "--max-experts", "32", "--storage", ":memory:", "--export", "hf", "--out", f"{tmp_path}/", "--json")
    assert result.code == 0, result.err
    planned = result.json()
    assert planned["request"]["family"] == family
    config = AutoConfig.from_pretrained(tmp_path)
    assert config.model_type == family
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    assert checkpoint_tensors(model) == planned["counts"]["total"]["all"]
    assert attention_scales(model) == {planned["architecture"]["d_head"] ** -0.5}
    assert count(from_hf_config(config.to_dict())).total.all == planned["counts"]["total"]["all"]


def test_plan_json_exports_as_its_family_and_mla_families_are_refused(cli, tmp_path):
    plan_json = tmp_path / "plan.json"
    result = cli("plan", "--flops", "1e19", "--max-d-hidden", "1024", "--max-experts", "32", "--storage", ":memory:",
                 "--json")
    plan_json.write_text(result.out)
    assert result.json()["request"]["family"] == "glm4_moe"  # default: it holds the whole planned space
    assert json.loads(cli("export", plan_json).out)["model_type"] == "glm4_moe"
    refused = cli("plan", "--flops", "1e19", "--family", "deepseek_v3")
    assert refused.code == 2 and "multi-head latent attention" in refused.err
    assert len(refused.err.strip().splitlines()) == 1
    assert cli("plan", "--flops", "1e19", "--family", "mixtral", "--dense-layers", "2").code == 1


def test_export_cli_megatron_and_refusals(cli, tmp_path):
    arch_path = tmp_path / "arch.json"
    arch_path.write_text(FLOP_CASES["deepseek_v3"].model_dump_json())
    out = cli("export", arch_path, "--format", "megatron")
    assert out.code == 0
    args = shlex.split(out.out)
    assert args[args.index("--num-experts") + 1] == "8" and "--multi-latent-attention" in args
    assert args[args.index("--moe-layer-freq") + 1] == "[0,1,1]" and "--moe-router-enable-expert-bias" in args
    refused = cli("export", arch_path, "--format", "hf", "--family", "mixtral", "--out", tmp_path / "x.json")
    assert refused.code == 1 and "mixtral cannot hold this architecture exactly" in refused.err
    assert not (tmp_path / "x.json").exists()
    unknown = cli("export", arch_path, "--family", "llama4_text")
    assert unknown.code == 1 and "interleaved chunked attention" in unknown.err
