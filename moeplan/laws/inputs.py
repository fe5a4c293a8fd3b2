"""What each law needs from an architecture and a token count, under the law's own counting convention."""

from __future__ import annotations

from moeplan.flops.count import Count
from moeplan.laws.model import Law


def law_inputs(law: Law, c: Count, tokens: float | None = None, compute: float | None = None) -> dict[str, float]:
    """The law's variables for a counted architecture.

    N and N_a are non-embedding counts ([HY] Eq. 2-3; [KRAJ] and [JOINT] count active non-embedding too);
    G and S count shared experts in d_expert units; G_K = 4 d_hidden / d_expert ([KRAJ] granularity
    against a 4d dense FFN); E = n_e / n_k for [JOINT] (expansion) and n_e for [CLARK].
    """
    a = c.architecture
    available = {
        "N": float(c.total.without_embeddings),
        "N_a": float(c.active.without_embeddings),
        "G": a.activated_experts,
        "S": a.shared_ratio,
        "G_K": 4 * a.d_hidden / a.d_expert,
        "E": a.n_experts / a.top_k if law.name == "joint" else float(a.n_experts),
        "S_inactive": 1 - a.top_k / a.n_experts,
        "A": a.activation_ratio,
        "G_L": a.granularity,
    }
    if law.name in ("clark", "krajewski"):
        available["N"] = float(c.active.without_embeddings)
    if tokens is not None:
        available["D"] = float(tokens)
    if compute is not None:
        available["C"] = float(compute)
    return {v: available[v] for v in law.variable_names if v in available}
