"""Real Hugging Face config.json dicts built from the normalised fixture fields (tests/data)."""

from __future__ import annotations


def hf_config(name: str, fx: dict) -> dict:
    """The HF config of fixture model `name`, with the field names its transformers family uses."""
    common = {
        "model_type": fx["model_type"],
        "hidden_size": fx["hidden_size"],
        "num_hidden_layers": fx["num_hidden_layers"],
        "num_attention_heads": fx["num_attention_heads"],
        "num_key_value_heads": fx["num_key_value_heads"],
        "vocab_size": fx["vocab_size"],
        "tie_word_embeddings": fx["tie_word_embeddings"],
        "num_experts_per_tok": fx["num_experts_per_tok"],
    }
    if fx["head_dim"]:
        common["head_dim"] = fx["head_dim"]
    t = fx["model_type"]
    if t == "mixtral":
        return common | {"intermediate_size": fx["moe_intermediate_size"], "num_local_experts": fx["num_experts"],
                         "sliding_window": None}
    if t == "olmoe":
        return common | {"intermediate_size": fx["moe_intermediate_size"], "num_experts": fx["num_experts"]}
    if t == "qwen2_moe":
        return common | {"intermediate_size": fx["intermediate_size"],
                         "moe_intermediate_size": fx["moe_intermediate_size"],
                         "shared_expert_intermediate_size": fx["shared_expert_intermediate_size"],
                         "num_experts": fx["num_experts"], "decoder_sparse_step": 1, "mlp_only_layers": [],
                         "qkv_bias": fx["attention_bias"] == "qkv only"}
    if t == "qwen3_moe":
        return common | {"intermediate_size": fx["intermediate_size"],
                         "moe_intermediate_size": fx["moe_intermediate_size"], "num_experts": fx["num_experts"],
                         "decoder_sparse_step": 1, "mlp_only_layers": [], "attention_bias": fx["attention_bias"]}
    if t in ("deepseek_v2", "deepseek_v3"):
        return common | fx["mla"] | {
            "intermediate_size": fx["intermediate_size"], "moe_intermediate_size": fx["moe_intermediate_size"],
            "n_routed_experts": fx["num_experts"], "n_shared_experts": fx["n_shared_experts"],
            "first_k_dense_replace": fx["first_k_dense_replace"], "moe_layer_freq": 1,
            "topk_method": "noaux_tc" if t == "deepseek_v3" else "greedy",
        }
    if t == "gpt_oss":
        n = fx["num_hidden_layers"]
        return common | {
            "intermediate_size": fx["moe_intermediate_size"], "num_local_experts": fx["num_experts"],
            "attention_bias": True, "sliding_window": fx["sliding_window"],
            "layer_types": ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(n)],
        }
    raise KeyError(t)
