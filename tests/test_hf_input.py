"""Issue 15 item 13 and 6: a HF config's wrong types and impossible values are errors naming the field, and a
part of the model the count leaves out (DeepSeek-V3's multi-token prediction) is named in one line."""

from __future__ import annotations

import json
import warnings

import pytest

from moeplan.errors import MoeplanError, Notice
from moeplan.flops.hf import from_hf_config

MIXTRAL = {"model_type": "mixtral", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "vocab_size": 100, "intermediate_size": 32, "num_local_experts": 8,
           "num_experts_per_tok": 2, "tie_word_embeddings": False}
DEEPSEEK_V3 = {"model_type": "deepseek_v3", "hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4,
               "vocab_size": 100, "intermediate_size": 96, "moe_intermediate_size": 32, "n_routed_experts": 8,
               "num_experts_per_tok": 2, "n_shared_experts": 1, "first_k_dense_replace": 1, "moe_layer_freq": 1,
               "q_lora_rank": 24, "kv_lora_rank": 16, "qk_rope_head_dim": 8, "qk_nope_head_dim": 8, "v_head_dim": 8,
               "tie_word_embeddings": False}
INTEGERS = {"mixtral": [k for k, v in MIXTRAL.items() if type(v) is int],
            "deepseek_v3": [k for k, v in DEEPSEEK_V3.items() if type(v) is int]}


def test_the_bases_are_valid():
    assert from_hf_config(MIXTRAL).n_experts == 8
    assert from_hf_config(DEEPSEEK_V3).dense_layers == (0,)


@pytest.mark.parametrize("base", [MIXTRAL, DEEPSEEK_V3], ids=["mixtral", "deepseek_v3"])
@pytest.mark.parametrize("wrong", [128.7, 8.0, "8", True, [8, 9], {"n": 8}])
def test_every_integer_field_refuses_another_type_by_name(base, wrong):
    for key in INTEGERS[base["model_type"]]:
        with pytest.raises(MoeplanError) as err:
            from_hf_config(base | {key: wrong})
        assert key in str(err.value) and base["model_type"] in str(err.value), (key, str(err.value))


def test_the_issues_examples():
    with pytest.raises(MoeplanError, match=r"^mixtral: num_local_experts must be an integer, not 128.7$"):
        from_hf_config(MIXTRAL | {"num_local_experts": 128.7})
    with pytest.raises(MoeplanError, match=r"^mixtral: tie_word_embeddings must be true or false, not 'false'$"):
        from_hf_config(MIXTRAL | {"tie_word_embeddings": "false"})
    with pytest.raises(MoeplanError, match=r"^mixtral: num_key_value_heads=0 must be at least 1$"):
        from_hf_config(MIXTRAL | {"num_key_value_heads": 0})  # was read as "absent": 4 kv heads


@pytest.mark.parametrize(("key", "value"), [("head_dim", 0), ("moe_layer_freq", 0), ("first_k_dense_replace", -1),
                                            ("n_shared_experts", -1), ("q_lora_rank", 0)])
def test_zeros_and_negatives_are_not_defaults(key, value):
    with pytest.raises(MoeplanError, match=f"{key}={value} must be at least"):
        from_hf_config(DEEPSEEK_V3 | {key: value} if key != "head_dim" else MIXTRAL | {key: value})


@pytest.mark.parametrize("key", ["use_sliding_window", "attention_bias", "tie_word_embeddings"])
def test_booleans_are_booleans(key):
    base = {"model_type": "qwen3_moe", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "vocab_size": 100, "moe_intermediate_size": 32, "num_experts": 8, "num_experts_per_tok": 2,
            "sliding_window": 16}
    assert from_hf_config(base).n_experts == 8
    for wrong in ("true", 1, 0):
        with pytest.raises(MoeplanError, match=f"{key} must be true or false"):
            from_hf_config(base | {key: wrong})


def test_an_unmodelled_field_that_changes_the_model_is_refused():
    with pytest.raises(MoeplanError, match=r"^mixtral: mlp_bias=True \(biases in the MLP projections\) is not supported$"):
        from_hf_config(MIXTRAL | {"mlp_bias": True})
    assert from_hf_config(MIXTRAL | {"mlp_bias": False}) == from_hf_config(MIXTRAL)


def test_multi_token_prediction_is_named_in_one_line(tmp_path, cli):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with_mtp = from_hf_config(DEEPSEEK_V3 | {"num_nextn_predict_layers": 1})
    assert with_mtp == from_hf_config(DEEPSEEK_V3)  # counted as transformers builds it: without the MTP module
    assert [(w.category, str(w.message)) for w in caught] == [
        (Notice, "deepseek_v3: num_nextn_predict_layers=1: multi-token-prediction layers (transformers does not "
                 "build them either) are left out of the count")]
    config = tmp_path / "config.json"
    config.write_text(json.dumps(DEEPSEEK_V3 | {"num_nextn_predict_layers": 1}))
    result = cli("count", config, "--json")
    assert result.code == 0 and json.loads(result.out)
    assert result.err == ("moeplan: note: deepseek_v3: num_nextn_predict_layers=1: multi-token-prediction layers "
                          "(transformers does not build them either) are left out of the count\n")
