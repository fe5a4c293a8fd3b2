"""Count many architectures at once: numpy int64 arrays in, arrays out, equal to `count` element by element.

A template `Architecture` fixes the categorical features (attention kind, norms, biases, tying); any
numeric field can be overridden by a broadcastable array. Layer patterns enter as counts: `n_dense`
(dense-FFN layers) and `n_sliding` (sliding-window layers), since totals depend only on how many.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from moeplan.flops import formulas as f
from moeplan.flops.architecture import Architecture
from moeplan.flops.conventions import Convention
from moeplan.flops.count import FLOP_COMPONENTS, PARAM_COMPONENTS, param_counts, per_token, train_flops_x_seq

_NUMERIC = (
    "n_layers", "d_hidden", "n_heads", "n_kv_heads", "d_head", "d_expert", "n_experts", "top_k",
    "n_shared_experts", "d_shared_expert", "d_dense_ffn", "vocab_size", "seq_len", "sliding_window",
)
_MLA_NUMERIC = ("q_lora_rank", "kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim")
# int64 holds FLOPs x seq up to 9.2e18; refuse rather than wrap around silently.
_INT64_HEADROOM = 2.0**62


@dataclass(frozen=True)
class CountArrays:
    """Counts of many architectures, one array element each (same names as `Count`).

    Components keep the smallest shape they broadcast to (a scalar where a count does not vary).
    """

    shape: tuple[int, ...]
    total: dict[str, np.ndarray]
    active: dict[str, np.ndarray]
    total_by_component: dict[str, np.ndarray]
    active_by_component: dict[str, np.ndarray]
    train_flops_per_token: np.ndarray
    _x_seq: dict[str, np.ndarray]
    _seq: np.ndarray

    def train_flops_by_component(self) -> dict[str, np.ndarray]:
        """Training FLOPs per token of each component, broadcast to `shape`."""
        return {c: np.broadcast_to(per_token(np.asarray(v, dtype=np.int64), self._seq), self.shape)
                for c, v in self._x_seq.items()}


def _namespace(template: Architecture, arrays: dict, reduce=None, dtype=np.int64) -> SimpleNamespace:
    unknown = set(arrays) - set(_NUMERIC) - set(_MLA_NUMERIC) - {"n_dense", "n_sliding"}
    if unknown:
        raise ValueError(f"not numeric architecture fields: {sorted(unknown)}")

    def value(v):
        if v is None:
            return None
        return int(np.max(v)) if reduce else np.asarray(v, dtype=dtype)

    ns = SimpleNamespace(**dict(template))
    for name in _NUMERIC:
        setattr(ns, name, value(arrays.get(name, getattr(template, name))))
    if template.mla is not None:
        ns.mla = SimpleNamespace(**{k: value(arrays.get(k, getattr(template.mla, k))) for k in _MLA_NUMERIC})
    ns.n_dense = value(arrays.get("n_dense", len(template.dense_layers)))
    ns.n_sliding = value(arrays.get("n_sliding", len(template.sliding_layers)))
    if ns.d_dense_ffn is None:
        ns.d_dense_ffn = 0
    if ns.sliding_window is None:
        ns.sliding_window = ns.seq_len
    return ns


def _components(a, template: Architecture, convention: Convention, causal: bool):
    """Parameter components (total, active) and training FLOPs x seq by component, aggregated over layers."""
    l, d = a.n_layers, a.d_hidden
    n_moe = l - a.n_dense
    embedding = a.vocab_size * d
    total = {
        "embedding": embedding,
        "attention": l * (f.attention_weights(a) + f.attention_extras(a)),
        "norms": l * f.layer_norms(a) + f.final_norm(a),
        "router": n_moe * f.router(a),
        "routed_experts": n_moe * a.n_experts * f.routed_expert(a),
        "shared_experts": n_moe * f.shared_experts(a),
        "dense_ffn": a.n_dense * f.swiglu(d, a.d_dense_ffn),
        "lm_head": 0 if template.tie_embeddings else embedding,
    }
    active = dict(total, routed_experts=n_moe * a.top_k * f.routed_expert(a))
    matmul = {
        "attention": 2 * l * f.attention_weights(a),
        "norms": 0,
        "router": 2 * n_moe * d * a.n_experts,
        "routed_experts": 2 * n_moe * a.top_k * f.swiglu(d, a.d_expert),
        "shared_experts": 2 * n_moe * f.shared_experts(a),
        "dense_ffn": 2 * a.n_dense * f.swiglu(d, a.d_dense_ffn),
        "lm_head": 2 * d * a.vocab_size,
    }
    # Python ints in the overflow check must stay Python ints: np.minimum would make them int64.
    window = min(a.sliding_window, a.seq_len) if isinstance(a.seq_len, int) else np.minimum(a.sliding_window, a.seq_len)
    scores_x_seq = (l - a.n_sliding) * f.attention_scores_x_seq(a, a.seq_len, causal) + a.n_sliding * (
        f.attention_scores_x_seq(a, window, causal)
    )
    return total, active, train_flops_x_seq(convention, active, matmul, scores_x_seq, a)


def count_arrays(
    template: Architecture, convention: Convention | str = Convention.EXACT, causal: bool = True, **arrays
) -> CountArrays:
    """Vectorised `count`: every numeric field may be an array; results broadcast over all of them."""
    convention = Convention(convention)
    # Every formula grows with every size, so the counts at the fields' maxima bound all elements: one
    # exact Python-int check instead of an elementwise overflow test.
    _, _, bound = _components(_namespace(template, arrays, reduce=True), template, convention, causal)
    if sum(int(v) for v in bound.values()) >= _INT64_HEADROOM:
        # The maxima combined may overflow where no element does: check element by element in float64.
        _, _, approx = _components(_namespace(template, arrays, dtype=np.float64), template, convention, causal)
        if np.max(sum(approx.values())) >= _INT64_HEADROOM:
            raise OverflowError("FLOPs x seq would exceed int64: count such models one at a time with moeplan.count")
    a = _namespace(template, arrays)
    total, active, x_seq = _components(a, template, convention, causal)
    total_x_seq = sum(x_seq[c] for c in FLOP_COMPONENTS)
    shape = np.broadcast_shapes(*(np.shape(v) for v in (*total.values(), *active.values(), total_x_seq)))
    seq = np.asarray(a.seq_len, dtype=np.int64)
    return CountArrays(
        shape=shape,
        total={k: np.broadcast_to(v, shape) for k, v in param_counts(total).items()},
        active={k: np.broadcast_to(v, shape) for k, v in param_counts(active).items()},
        total_by_component=total,
        active_by_component=active,
        train_flops_per_token=np.broadcast_to(per_token(np.asarray(total_x_seq, dtype=np.int64), seq), shape),
        _x_seq=x_seq,
        _seq=seq,
    )
