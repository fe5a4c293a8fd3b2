"""Hugging Face `config.json` -> `Architecture`, one small reader per transformers `model_type`.

Each reader mirrors what the family's transformers modeling code builds (which projections carry biases,
which layers are dense, which norms exist), so that the count equals the instantiated model's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from moeplan.errors import MoeplanError, UsageError
from moeplan.flops.architecture import MLA, Architecture

DEFAULT_SEQ_LEN = 4096


def _req(cfg: dict, *keys: str):
    """The first of `keys` present in `cfg` (HF renamed several fields across versions)."""
    for key in keys:
        if cfg.get(key) is not None:
            return cfg[key]
    raise MoeplanError(f"{cfg.get('model_type', 'config')}: missing field {keys[0]!r}")


def _attention(cfg: dict) -> dict:
    d, h = _req(cfg, "hidden_size"), _req(cfg, "num_attention_heads")
    return {
        "n_layers": _req(cfg, "num_hidden_layers"),
        "d_hidden": d,
        "n_heads": h,
        "n_kv_heads": cfg.get("num_key_value_heads") or h,
        "d_head": cfg.get("head_dim") or d // h,
        "vocab_size": _req(cfg, "vocab_size"),
        "tie_embeddings": bool(cfg.get("tie_word_embeddings", False)),
    }


def _sliding(cfg: dict, n_layers: int, default_all: bool = False) -> dict:
    """Sliding-window layers from `layer_types` (gpt-oss, Qwen) or, for Mixtral, a window on every layer."""
    window = cfg.get("sliding_window")
    if cfg.get("use_sliding_window") is False:
        window = None
    if window is None:
        return {}
    types = cfg.get("layer_types")
    if types:
        layers = tuple(i for i, t in enumerate(types) if t == "sliding_attention")
    elif default_all:
        layers = tuple(range(n_layers))
    elif cfg.get("use_sliding_window"):
        layers = tuple(range(cfg.get("max_window_layers", 0), n_layers))
    else:
        layers = ()
    return {"sliding_window": window, "sliding_layers": layers} if layers else {}


def _qwen_dense_layers(cfg: dict, n_layers: int) -> tuple[int, ...]:
    """Qwen2/3-MoE: a layer is dense if listed in mlp_only_layers or off the decoder_sparse_step grid."""
    only = set(cfg.get("mlp_only_layers") or ())
    step = cfg.get("decoder_sparse_step", 1) or 1
    return tuple(i for i in range(n_layers) if i in only or (i + 1) % step)


def _mixtral(cfg: dict) -> dict:
    base = _attention(cfg)
    return base | _sliding(cfg, base["n_layers"], default_all=True) | {
        "d_expert": _req(cfg, "intermediate_size"),
        "n_experts": _req(cfg, "num_local_experts", "num_experts"),
        "top_k": _req(cfg, "num_experts_per_tok"),
    }


def _qwen2_moe(cfg: dict) -> dict:
    base = _attention(cfg)
    dense = _qwen_dense_layers(cfg, base["n_layers"])
    shared = cfg.get("shared_expert_intermediate_size") or 0
    return base | _sliding(cfg, base["n_layers"]) | {
        "attention_bias": "qkv" if cfg.get("qkv_bias", True) else "none",
        "d_expert": _req(cfg, "moe_intermediate_size"),
        "n_experts": _req(cfg, "num_experts"),
        "top_k": _req(cfg, "num_experts_per_tok"),
        "n_shared_experts": 1 if shared else 0,
        "d_shared_expert": shared or None,
        "shared_expert_gate": bool(shared),
        "dense_layers": dense,
        "d_dense_ffn": cfg.get("intermediate_size") if dense else None,
    }


def _qwen3_moe(cfg: dict) -> dict:
    base = _attention(cfg)
    dense = _qwen_dense_layers(cfg, base["n_layers"])
    return base | _sliding(cfg, base["n_layers"]) | {
        "qk_norm": "head",
        "attention_bias": "all" if cfg.get("attention_bias") else "none",
        "d_expert": _req(cfg, "moe_intermediate_size"),
        "n_experts": _req(cfg, "num_experts"),
        "top_k": _req(cfg, "num_experts_per_tok"),
        "dense_layers": dense,
        "d_dense_ffn": cfg.get("intermediate_size") if dense else None,
    }


def _olmoe(cfg: dict) -> dict:
    return _attention(cfg) | {
        "qk_norm": "full",
        "attention_bias": "all" if cfg.get("attention_bias") else "none",
        "d_expert": _req(cfg, "intermediate_size"),
        "n_experts": _req(cfg, "num_experts"),
        "top_k": _req(cfg, "num_experts_per_tok"),
    }


def _deepseek(cfg: dict, correction_bias: bool) -> dict:
    base = _attention(cfg)
    n_layers = base["n_layers"]
    first_dense = cfg.get("first_k_dense_replace", 0) or 0
    freq = cfg.get("moe_layer_freq", 1) or 1
    dense = tuple(i for i in range(n_layers) if i < first_dense or i % freq)
    n_shared = cfg.get("n_shared_experts") or 0
    if cfg.get("attention_bias"):
        raise MoeplanError(f"{cfg['model_type']}: attention_bias with MLA is not supported")
    base.pop("d_head")
    base["n_kv_heads"] = base["n_heads"]
    return base | {
        "mla": MLA(
            q_lora_rank=cfg.get("q_lora_rank"),
            kv_lora_rank=_req(cfg, "kv_lora_rank"),
            qk_rope_head_dim=_req(cfg, "qk_rope_head_dim"),
            qk_nope_head_dim=_req(cfg, "qk_nope_head_dim"),
            v_head_dim=_req(cfg, "v_head_dim"),
        ),
        "d_expert": _req(cfg, "moe_intermediate_size"),
        "n_experts": _req(cfg, "n_routed_experts"),
        "top_k": _req(cfg, "num_experts_per_tok"),
        "n_shared_experts": n_shared,
        # DeepSeek-V3's aux-loss-free balancing keeps a per-expert correction bias in the checkpoint
        # (transformers holds it as a buffer); V2's greedy/group-limited routing has none.
        "router_bias": correction_bias or cfg.get("topk_method") == "noaux_tc",
        "dense_layers": dense,
        "d_dense_ffn": cfg.get("intermediate_size") if dense else None,
    }


def _gpt_oss(cfg: dict) -> dict:
    base = _attention(cfg)
    return base | _sliding(cfg, base["n_layers"]) | {
        "attention_bias": "all" if cfg.get("attention_bias", True) else "none",
        "attention_sinks": True,
        "d_expert": _req(cfg, "intermediate_size"),
        "n_experts": _req(cfg, "num_local_experts", "num_experts"),
        "top_k": _req(cfg, "num_experts_per_tok", "experts_per_token"),
        "router_bias": True,
        "expert_bias": True,
    }


READERS: dict[str, Callable[[dict], dict]] = {
    "mixtral": _mixtral,
    "qwen2_moe": _qwen2_moe,
    "qwen3_moe": _qwen3_moe,
    "olmoe": _olmoe,
    "deepseek_v2": lambda cfg: _deepseek(cfg, correction_bias=False),
    "deepseek_v3": lambda cfg: _deepseek(cfg, correction_bias=True),
    "gpt_oss": _gpt_oss,
}


def validation_message(err: ValidationError) -> str:
    """One line from a pydantic error: the first problem, with the field it concerns."""
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    return f"{where}: {msg}" if where else msg


def architecture(fields: dict) -> Architecture:
    """Build an `Architecture`, turning validation errors into one-line `MoeplanError`s."""
    try:
        return Architecture.model_validate(fields)
    except ValidationError as err:
        raise MoeplanError(f"invalid architecture: {validation_message(err)}") from None


def from_hf_config(cfg: dict, seq_len: int | None = None) -> Architecture:
    """Read a Hugging Face MoE `config.json` dict into an `Architecture`."""
    model_type = cfg.get("model_type")
    reader = READERS.get(model_type)
    if reader is None:
        raise MoeplanError(f"unsupported model_type {model_type!r}; supported: {', '.join(sorted(READERS))}")
    fields = reader(cfg)
    if fields.get("n_experts") in (None, 0):
        raise MoeplanError(f"{model_type}: the config has no routed experts")
    return architecture(fields | {"seq_len": seq_len or DEFAULT_SEQ_LEN})


def read_json(path: Path) -> dict:
    """A JSON object from `path`, or a one-line error saying why not."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise MoeplanError(f"{path}: cannot read: {err}") from None
    except json.JSONDecodeError as err:
        raise MoeplanError(f"{path}: not JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(data, dict):
        raise MoeplanError(f"{path}: expected a JSON object")
    return data


def load_architecture(path: Path, seq_len: int | None = None) -> Architecture:
    """An `Architecture` from a moeplan architecture JSON, a plan JSON, or a Hugging Face config.json."""
    data = read_json(path)
    if "model_type" in data:
        return from_hf_config(data, seq_len)
    fields = data.get("architecture", data)
    if not isinstance(fields, dict) or "d_hidden" not in fields:
        raise MoeplanError(f"{path}: neither a moeplan architecture (no 'd_hidden') nor a HF config (no 'model_type')")
    return architecture(fields | ({"seq_len": seq_len} if seq_len else {}))
