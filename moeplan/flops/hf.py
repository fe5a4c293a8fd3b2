"""Hugging Face `config.json` <-> `Architecture`, through one declarative spec per transformers family.

Each `Family` states what the family's transformers modeling code builds (which projections carry biases,
which layers are dense, where shared experts and router biases live), so one spec serves import and
export, and the count equals the instantiated model's checkpoint tensors (tests/test_transformers.py).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from moeplan.errors import MoeplanError, Notice, UsageError
from moeplan.flops.architecture import MLA, Architecture
from moeplan.jsonio import read_json, validation_message  # noqa: F401 - their home before moeplan.jsonio

DEFAULT_SEQ_LEN = 4096


@dataclass(frozen=True)
class Family:
    """How one transformers MoE family names and builds what `Architecture` describes."""

    model_type: str
    causal_lm: str                     # the transformers class, written as config "architectures"
    experts: tuple[str, ...]           # config keys of n_experts, the first is written
    expert_width: str                  # key of d_expert
    top_k: tuple[str, ...] = ("num_experts_per_tok",)
    dense: str = "none"                # none | first_k | qwen | mlp_layer_types: how dense layers are marked
    dense_width: str | None = None     # key of the dense FFN width
    shared: str = "none"               # none | count (key = number, width d_expert) | fused (key = width)
    shared_key: str | None = None
    shared_gate: bool = False
    router_bias: bool = False          # a per-expert router bias or correction bias in every MoE layer
    qk_norm: str = "none"              # none | head | full | flag (per-head, switched by use_qk_norm)
    attention_bias: tuple[str, str] | str = "none"  # fixed kind, or (config key, kind when true)
    attention_bias_default: bool = False  # the key's value when a config omits it
    mla: bool = False
    sliding: str = "none"              # none | layer_types | all
    sinks: bool = False
    expert_bias: bool = False
    norm_bias: bool = False
    head_dim: bool = True              # honours config.head_dim (else d_head = hidden_size / heads)
    shared_required: bool = False      # builds a shared expert (and gate) whatever its width
    extra: dict = field(default_factory=dict)  # fixed values written on export


FAMILIES: dict[str, Family] = {f.model_type: f for f in (
    Family("mixtral", "MixtralForCausalLM", ("num_local_experts", "num_experts"), "intermediate_size", sliding="all"),
    Family("qwen2_moe", "Qwen2MoeForCausalLM", ("num_experts", "num_local_experts"), "moe_intermediate_size", shared_required=True, dense="qwen", dense_width="intermediate_size",
           shared="fused", shared_key="shared_expert_intermediate_size", shared_gate=True,
           attention_bias=("qkv_bias", "qkv"), attention_bias_default=True, sliding="layer_types"),
    Family("qwen3_moe", "Qwen3MoeForCausalLM", ("num_experts", "num_local_experts"), "moe_intermediate_size", dense="qwen", dense_width="intermediate_size",
           qk_norm="head", attention_bias=("attention_bias", "all"), sliding="layer_types"),
    Family("olmoe", "OlmoeForCausalLM", ("num_experts", "num_local_experts"), "intermediate_size", qk_norm="full", attention_bias=("attention_bias", "all"),
           head_dim=False),
    Family("deepseek_v2", "DeepseekV2ForCausalLM", ("n_routed_experts",), "moe_intermediate_size", dense="first_k",
           dense_width="intermediate_size", shared="count", shared_key="n_shared_experts", mla=True,
           extra={"topk_method": "greedy"}),
    Family("deepseek_v3", "DeepseekV3ForCausalLM", ("n_routed_experts",), "moe_intermediate_size", dense="first_k",
           dense_width="intermediate_size", shared="count", shared_key="n_shared_experts", router_bias=True,
           mla=True),
    Family("gpt_oss", "GptOssForCausalLM", ("num_local_experts", "num_experts"), "intermediate_size",
           top_k=("num_experts_per_tok", "experts_per_token"), router_bias=True,
           attention_bias=("attention_bias", "all"), attention_bias_default=True, sliding="layer_types", sinks=True,
           expert_bias=True),
    Family("glm4_moe", "Glm4MoeForCausalLM", ("n_routed_experts", "num_local_experts"), "moe_intermediate_size", dense="first_k",
           dense_width="intermediate_size", shared="count", shared_key="n_shared_experts", router_bias=True,
           qk_norm="flag", attention_bias=("attention_bias", "qkv")),
    Family("glm4_moe_lite", "Glm4MoeLiteForCausalLM", ("n_routed_experts", "num_local_experts"), "moe_intermediate_size",
           dense="mlp_layer_types", dense_width="intermediate_size", shared="count", shared_key="n_shared_experts",
           router_bias=True, mla=True),
    Family("hunyuan_v1_moe", "HunYuanMoEV1ForCausalLM", ("num_experts", "num_local_experts"), "intermediate_size", top_k=("moe_topk",),
           shared="fused", shared_required=True,
           shared_key="intermediate_size", qk_norm="head", attention_bias=("attention_bias", "all")),
    Family("granitemoe", "GraniteMoeForCausalLM", ("num_local_experts",), "intermediate_size", attention_bias=("attention_bias", "all")),
    Family("granitemoeshared", "GraniteMoeSharedForCausalLM", ("num_local_experts",), "intermediate_size", shared="fused",
           shared_key="shared_intermediate_size", attention_bias=("attention_bias", "all")),
    Family("minimax_m2", "MiniMaxM2ForCausalLM", ("num_local_experts",), "intermediate_size", qk_norm="full", router_bias=True),
    Family("exaone_moe", "ExaoneMoeForCausalLM", ("num_experts", "num_local_experts"), "moe_intermediate_size", dense="mlp_layer_types",
           dense_width="intermediate_size", shared="count", shared_key="num_shared_experts", router_bias=True,
           qk_norm="head", sliding="layer_types"),
    Family("phimoe", "PhimoeForCausalLM", ("num_local_experts",), "intermediate_size", norm_bias=True,
           attention_bias=("attention_bias", "all"), sliding="all"),
)}
ALIASES = {"kimi_k2": "deepseek_v3"}  # Kimi-K2 ships the DeepSeek-V3 architecture under its own name
UNSUPPORTED = {
    "qwen3_next": "hybrid linear attention", "qwen3_5_moe": "hybrid linear attention", "minimax": "lightning attention",
    "jamba": "Mamba layers", "lfm2_moe": "convolution layers", "jetmoe": "mixture-of-attention heads",
    "afmoe": "gated attention and extra norms", "deepseek_v32": "sparse-attention indexer",
    "longcat_flash": "zero-computation experts and dual attention", "llama4_text": "interleaved chunked attention",
    "dbrx": "fused qkv with clipping", "switch_transformers": "encoder-decoder",
    "nllb_moe": "encoder-decoder", "ernie4_5_moe": "statistics-based router",
}


# Config fields that change the built model and that moeplan does not count: (why, whether it is an error).
# False: the count stays the transformers model's (which leaves the part out too) and one line says so.
UNCOUNTED = {
    "num_nextn_predict_layers": ("multi-token-prediction layers (transformers does not build them either)", False),
    "mlp_bias": ("biases in the MLP projections", True),
}


def _name(cfg: dict) -> str:
    return str(cfg.get("model_type", "config"))


def _present(cfg: dict, keys: tuple[str, ...]):
    """(key, value) of the first of `keys` present and not null in `cfg` (HF renamed fields across versions)."""
    for key in keys:
        if cfg.get(key) is not None:
            return key, cfg[key]
    return keys[0], None


def _as_int(cfg: dict, key: str, value, low: int) -> int:
    """`value` of field `key` as an integer >= low; a float, string or boolean is an error naming the field."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise MoeplanError(f"{_name(cfg)}: {key} must be an integer, not {value!r}")
    if value < low:
        raise MoeplanError(f"{_name(cfg)}: {key}={value} must be at least {low}")
    return value


def _req(cfg: dict, *keys: str, low: int = 1) -> int:
    """A required integer field (the first of `keys` present)."""
    key, value = _present(cfg, keys)
    if value is None:
        raise MoeplanError(f"{_name(cfg)}: missing field {keys[0]!r}")
    return _as_int(cfg, key, value, low)


def _opt(cfg: dict, key: str, default: int | None, low: int = 1) -> int | None:
    """An optional integer field: absent or null gives `default`; zero is not a stand-in for absent."""
    value = cfg.get(key)
    return default if value is None else _as_int(cfg, key, value, low)


def _flag(cfg: dict, key: str, default: bool) -> bool:
    """A boolean field: absent or null gives `default`; "false" or 0 is an error, not true."""
    value = cfg.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise MoeplanError(f"{_name(cfg)}: {key} must be true or false, not {value!r}")
    return value


def _int_list(cfg: dict, key: str, low: int = 0) -> list[int]:
    value = cfg.get(key) or []
    if not isinstance(value, list):
        raise MoeplanError(f"{_name(cfg)}: {key} must be a list of integers, not {value!r}")
    return [_as_int(cfg, key, v, low) for v in value]


def _str_list(cfg: dict, key: str) -> list[str] | None:
    value = cfg.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MoeplanError(f"{_name(cfg)}: {key} must be a list of strings, not {value!r}")
    return value


def _scalar(cfg: dict, keys: tuple[str, ...]) -> int:
    """An integer field that some configs give per layer (all equal)."""
    key, value = _present(cfg, keys)
    if isinstance(value, list):
        if not value or len(set(map(repr, value))) != 1:
            raise MoeplanError(f"{_name(cfg)}: per-layer {key} {value} is not supported")
        value = value[0]
    if value is None:
        raise MoeplanError(f"{_name(cfg)}: missing field {keys[0]!r}")
    return _as_int(cfg, key, value, 1)


def _per_layer(cfg: dict, key: str, n_layers: int, types: list[str] | None) -> None:
    if types is not None and len(types) != n_layers:
        raise MoeplanError(f"{_name(cfg)}: {key} has {len(types)} entries for {n_layers} layers")


def _dense_layers(fam: Family, cfg: dict, n_layers: int) -> tuple[int, ...]:
    if fam.dense == "first_k":
        first, freq = _opt(cfg, "first_k_dense_replace", 0, low=0), _opt(cfg, "moe_layer_freq", 1)
        return tuple(i for i in range(n_layers) if i < first or i % freq)
    if fam.dense == "qwen":
        only, step = set(_int_list(cfg, "mlp_only_layers")), _opt(cfg, "decoder_sparse_step", 1)
        return tuple(i for i in range(n_layers) if i in only or (i + 1) % step)
    if fam.dense == "mlp_layer_types":
        types = _str_list(cfg, "mlp_layer_types")
        if types:
            _per_layer(cfg, "mlp_layer_types", n_layers, types)
            return tuple(i for i, t in enumerate(types) if t != "sparse")
        return tuple(range(_opt(cfg, "first_k_dense_replace", 0, low=0)))
    return ()


def _sliding(fam: Family, cfg: dict, n_layers: int) -> dict:
    if fam.sliding == "none" or cfg.get("sliding_window") is None or not _flag(cfg, "use_sliding_window", True):
        return {}
    types = _str_list(cfg, "layer_types")
    if fam.sliding == "all":
        layers = tuple(range(n_layers))
    elif types:
        _per_layer(cfg, "layer_types", n_layers, types)
        layers = tuple(i for i, t in enumerate(types) if t == "sliding_attention")
    elif _flag(cfg, "use_sliding_window", False):
        layers = tuple(range(_opt(cfg, "max_window_layers", 0, low=0), n_layers))
    else:
        layers = ()
    if not layers:  # a window no layer uses (some families require an int even then) is not read
        return {}
    return {"sliding_window": _opt(cfg, "sliding_window", None), "sliding_layers": layers}


def _flag_bias(fam: Family, cfg: dict) -> str:
    if isinstance(fam.attention_bias, str):
        return fam.attention_bias
    key, kind = fam.attention_bias
    return kind if _flag(cfg, key, fam.attention_bias_default) else "none"


def _uncounted(cfg: dict) -> None:
    """Refuse, or name in one line, a field that changes the model and that the count leaves out."""
    for key, (what, fatal) in UNCOUNTED.items():
        value = cfg.get(key)
        if value in (None, False, 0):
            continue
        if fatal:
            raise MoeplanError(f"{_name(cfg)}: {key}={value!r} ({what}) is not supported")
        warnings.warn(f"{_name(cfg)}: {key}={value!r}: {what} are left out of the count", Notice, stacklevel=4)


def read_family(fam: Family, cfg: dict) -> dict:
    """`Architecture` fields from a config dict of family `fam`."""
    d, h = _req(cfg, "hidden_size"), _req(cfg, "num_attention_heads")
    n_layers = _req(cfg, "num_hidden_layers")
    fields = {
        "n_layers": n_layers, "d_hidden": d, "n_heads": h, "vocab_size": _req(cfg, "vocab_size"),
        "tie_embeddings": _flag(cfg, "tie_word_embeddings", False),
        "d_expert": _req(cfg, fam.expert_width),
        "n_experts": _scalar(cfg, fam.experts),
        "top_k": _scalar(cfg, fam.top_k),
        "router_bias": fam.router_bias, "attention_sinks": fam.sinks, "expert_bias": fam.expert_bias,
        "norm_bias": fam.norm_bias, "shared_expert_gate": False,
    }
    _uncounted(cfg)
    if fam.mla:
        if _flag(cfg, "attention_bias", False):
            raise MoeplanError(f"{fam.model_type}: attention_bias with MLA is not supported")
        fields["mla"] = MLA(q_lora_rank=_opt(cfg, "q_lora_rank", None), kv_lora_rank=_req(cfg, "kv_lora_rank"),
                            qk_rope_head_dim=_req(cfg, "qk_rope_head_dim"),
                            qk_nope_head_dim=_req(cfg, "qk_nope_head_dim"), v_head_dim=_req(cfg, "v_head_dim"))
    else:
        d_head = (_opt(cfg, "head_dim", None) if fam.head_dim else None) or d // h
        fields |= {"n_kv_heads": _opt(cfg, "num_key_value_heads", h), "d_head": d_head,
                   "attention_bias": _flag_bias(fam, cfg),
                   "qk_norm": ("head" if _flag(cfg, "use_qk_norm", False) else "none") if fam.qk_norm == "flag"
                   else fam.qk_norm}
    shared = _opt(cfg, fam.shared_key, 0, low=0) if fam.shared_key else 0
    if fam.shared == "count" and shared:
        fields["n_shared_experts"] = shared
    elif fam.shared == "fused" and shared:
        fields |= {"n_shared_experts": 1, "d_shared_expert": shared, "shared_expert_gate": fam.shared_gate}
    elif fam.shared_required:
        raise MoeplanError(f"{fam.model_type}: a shared expert of width 0 (the family still builds its gate) "
                           "is not supported")
    dense = _dense_layers(fam, cfg, n_layers)
    if dense:
        fields |= {"dense_layers": dense, "d_dense_ffn": _req(cfg, fam.dense_width)}
    if fam.model_type == "phimoe" and _flag(cfg, "lm_head_bias", False):
        raise MoeplanError("phimoe: lm_head_bias is not supported")
    return fields | _sliding(fam, cfg, n_layers)


def architecture(fields: dict) -> Architecture:
    """Build an `Architecture`, turning validation errors into one-line `MoeplanError`s."""
    try:
        return Architecture.model_validate(fields)
    except ValidationError as err:
        raise MoeplanError(f"invalid architecture: {validation_message(err)}") from None


def family_of(model_type) -> Family:
    if not isinstance(model_type, str):
        raise MoeplanError(f"model_type must be a string, not {model_type!r}")
    fam = FAMILIES.get(ALIASES.get(model_type, model_type))
    if fam is None:
        why = f" ({UNSUPPORTED[model_type]})" if model_type in UNSUPPORTED else ""
        raise MoeplanError(f"unsupported model_type {model_type!r}{why}; supported: "
                           f"{', '.join(sorted([*FAMILIES, *ALIASES]))}")
    return fam


def from_hf_config(cfg: dict, seq_len: int | None = None) -> Architecture:
    """Read a Hugging Face MoE `config.json` dict into an `Architecture`."""
    if not isinstance(cfg, dict):
        raise UsageError(f"from_hf_config() takes a config dict, not {type(cfg).__name__}")
    if seq_len is not None and (isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1):
        raise UsageError(f"seq_len must be a positive integer, not {seq_len!r}")
    fam = family_of(cfg.get("model_type"))
    fields = read_family(fam, cfg)
    if not fields.get("n_experts"):
        raise MoeplanError(f"{fam.model_type}: the config has no routed experts")
    return architecture(fields | {"seq_len": seq_len or DEFAULT_SEQ_LEN})


# -- export ---------------------------------------------------------------------------------------------
def default_family(a: Architecture) -> str:
    """The family that holds `a` exactly, chosen by the features it uses."""
    if a.mla is not None:
        return "deepseek_v3" if a.router_bias else "deepseek_v2"
    if a.attention_sinks or a.expert_bias:
        return "gpt_oss"
    if a.norm_bias:
        return "phimoe"
    if a.shared_expert_gate:
        return "qwen2_moe"
    if a.n_shared_experts:
        if a.router_bias:
            return "exaone_moe" if a.qk_norm == "head" else "glm4_moe"
        return "granitemoeshared"
    if a.qk_norm == "full":
        return "minimax_m2" if a.router_bias else "olmoe"
    if a.qk_norm == "head" or a.dense_layers or a.sliding_layers:
        return "qwen3_moe"
    return "mixtral"


def _cannot(fam: Family, what: str) -> MoeplanError:
    return MoeplanError(f"{fam.model_type} cannot hold this architecture exactly: {what}")


def to_hf_config(a: Architecture, family: str | None = None) -> dict:
    """A Hugging Face config.json dict of `family` (default: by features) that builds exactly `a`."""
    fam = family_of(family or default_family(a))
    if bool(a.mla) != fam.mla:
        raise _cannot(fam, "multi-head latent attention" if a.mla else "it has no MLA")
    for flag in ("router_bias", "expert_bias", "norm_bias"):
        if getattr(a, flag) != getattr(fam, flag):
            raise _cannot(fam, f"{flag} must be {getattr(fam, flag)}")
    if a.attention_sinks != fam.sinks:
        raise _cannot(fam, f"attention_sinks must be {fam.sinks}")
    if a.shared_expert_gate != (fam.shared_gate and a.n_shared_experts > 0):
        raise _cannot(fam, "shared-expert gate")
    cfg = {"architectures": [fam.causal_lm], "model_type": fam.model_type, "hidden_size": a.d_hidden, "num_hidden_layers": a.n_layers,
           "num_attention_heads": a.n_heads, "num_key_value_heads": a.n_kv_heads, "vocab_size": a.vocab_size,
           "tie_word_embeddings": a.tie_embeddings, "max_position_embeddings": a.seq_len,
           fam.experts[0]: a.n_experts, fam.top_k[0]: a.top_k, fam.expert_width: a.d_expert} | fam.extra
    if fam.mla:
        m = a.mla
        cfg |= {"q_lora_rank": m.q_lora_rank, "kv_lora_rank": m.kv_lora_rank, "qk_rope_head_dim": m.qk_rope_head_dim,
                "qk_nope_head_dim": m.qk_nope_head_dim, "v_head_dim": m.v_head_dim, "attention_bias": False,
                "head_dim": m.qk_rope_head_dim}
    else:
        if not fam.head_dim and a.d_head * a.n_heads != a.d_hidden:
            raise _cannot(fam, "head dim other than d_hidden / n_heads")
        cfg["head_dim"] = a.d_head
        if isinstance(fam.attention_bias, str):
            if a.attention_bias != fam.attention_bias:
                raise _cannot(fam, f"attention_bias must be {fam.attention_bias!r}")
        else:
            key, kind = fam.attention_bias
            if a.attention_bias not in ("none", kind):
                raise _cannot(fam, f"attention_bias {a.attention_bias!r} (only {kind!r} or none)")
            cfg[key] = a.attention_bias == kind
        if fam.qk_norm == "flag":
            if a.qk_norm == "full":
                raise _cannot(fam, "full-width q/k norms")
            cfg["use_qk_norm"] = a.qk_norm == "head"
        elif a.qk_norm != fam.qk_norm:
            raise _cannot(fam, f"qk_norm must be {fam.qk_norm!r}")
    # shared experts
    if a.n_shared_experts:
        if fam.shared == "none":
            raise _cannot(fam, "shared experts")
        if fam.shared == "count":
            if a.d_shared_expert != a.d_expert:
                raise _cannot(fam, "shared experts of another width than the routed ones")
            cfg[fam.shared_key] = a.n_shared_experts
        elif fam.shared_key == fam.expert_width:
            if a.n_shared_experts * a.d_shared_expert != a.d_expert:
                raise _cannot(fam, "its one shared expert has the routed experts' width")
        else:
            cfg[fam.shared_key] = a.n_shared_experts * a.d_shared_expert
    elif fam.shared_required:
        raise _cannot(fam, "it always has a shared expert")
    elif fam.shared != "none":
        cfg[fam.shared_key] = 0
    # dense layers
    dense = list(a.dense_layers)
    if dense and fam.dense == "none":
        raise _cannot(fam, "dense FFN layers")
    if fam.dense_width:
        cfg[fam.dense_width] = a.d_dense_ffn or a.d_expert
    if fam.dense == "first_k":
        if dense != list(range(len(dense))):
            raise _cannot(fam, "dense layers other than the leading ones")
        cfg |= {"first_k_dense_replace": len(dense), "moe_layer_freq": 1}
    elif fam.dense == "qwen":
        cfg |= {"decoder_sparse_step": 1, "mlp_only_layers": dense}
    elif fam.dense == "mlp_layer_types":
        cfg |= {"mlp_layer_types": ["dense" if i in a.dense_layers else "sparse" for i in range(a.n_layers)],
                "first_k_dense_replace": 0}
    # sliding windows
    sliding = list(a.sliding_layers)
    if fam.sliding == "all":
        if sliding and sliding != list(range(a.n_layers)):
            raise _cannot(fam, "a sliding window on some layers only")
        cfg["sliding_window"] = a.sliding_window
    elif fam.sliding == "layer_types":
        cfg["layer_types"] = ["sliding_attention" if i in a.sliding_layers else "full_attention"
                              for i in range(a.n_layers)]
        cfg["sliding_window"] = a.sliding_window or a.seq_len  # some families require an int even if unused
        if fam.model_type.startswith("qwen"):
            cfg["use_sliding_window"] = bool(sliding)
    elif sliding:
        raise _cannot(fam, "sliding-window layers")
    if fam.model_type == "hunyuan_v1_moe":
        cfg["use_mixed_mlp_moe"] = True
    if fam.model_type.startswith("granitemoe"):  # granite scales attention logits by this (default 1.0), not by
        cfg["attention_multiplier"] = a.d_head ** -0.5  # 1/sqrt(d_head): write the standard scaling
    return cfg


def to_megatron_args(a: Architecture) -> list[str]:
    """Megatron-LM (megatron.core) command-line arguments for `a` (SwiGLU, RMSNorm, RoPE)."""
    unsupported = [name for name, on in (("attention sinks", a.attention_sinks), ("expert biases", a.expert_bias),
                                         ("LayerNorm biases", a.norm_bias), ("output-projection bias",
                                                                              a.attention_bias == "all"),
                                         ("sliding-window layers", bool(a.sliding_layers)),
                                         ("full-width q/k norms", a.qk_norm == "full")) if on]
    if unsupported:
        raise MoeplanError(f"Megatron-LM arguments cannot express: {', '.join(unsupported)}")
    dense = set(a.dense_layers)
    args = ["--num-layers", a.n_layers, "--hidden-size", a.d_hidden, "--num-attention-heads", a.n_heads,
            "--seq-length", a.seq_len, "--max-position-embeddings", a.seq_len, "--vocab-size", a.vocab_size,
            "--swiglu", "--normalization", "RMSNorm", "--position-embedding-type", "rope",
            "--num-experts", a.n_experts, "--moe-router-topk", a.top_k, "--moe-ffn-hidden-size", a.d_expert,
            "--moe-layer-freq", "[" + ",".join("0" if i in dense else "1" for i in range(a.n_layers)) + "]",
            "--ffn-hidden-size", a.d_dense_ffn or a.d_expert]
    if a.attention_bias == "qkv":
        args += ["--disable-bias-linear", "--add-qkv-bias"]
    else:
        args += ["--disable-bias-linear"]
    if a.mla is not None:
        m = a.mla
        args += ["--multi-latent-attention", "--kv-lora-rank", m.kv_lora_rank, "--qk-head-dim", m.qk_nope_head_dim,
                 "--qk-pos-emb-head-dim", m.qk_rope_head_dim, "--v-head-dim", m.v_head_dim]
        args += ["--q-lora-rank", m.q_lora_rank] if m.q_lora_rank else []
    else:
        args += ["--kv-channels", a.d_head]
        if a.n_kv_heads != a.n_heads:
            args += ["--group-query-attention", "--num-query-groups", a.n_kv_heads]
    if a.qk_norm == "head":
        args += ["--qk-layernorm"]
    if a.n_shared_experts:
        args += ["--moe-shared-expert-intermediate-size", a.n_shared_experts * a.d_shared_expert]
    if a.shared_expert_gate:
        args += ["--moe-shared-expert-gate"]
    if a.router_bias:
        args += ["--moe-router-enable-expert-bias"]
    if not a.tie_embeddings:
        args += ["--untie-embeddings-and-output-weights"]
    return [str(x) for x in args]


def load_architecture(path: Path, seq_len: int | None = None) -> Architecture:
    """An `Architecture` from a moeplan architecture JSON, a plan JSON, or a Hugging Face config.json."""
    data = read_json(path)
    if "model_type" in data:
        return from_hf_config(data, seq_len)
    fields = data.get("architecture", data)
    if not isinstance(fields, dict) or "d_hidden" not in fields:
        raise MoeplanError(f"{path}: neither a moeplan architecture (no 'd_hidden') nor a HF config (no 'model_type')")
    return architecture(fields | ({"seq_len": seq_len} if seq_len else {}))
