"""The one map from counts to law inputs: every law reads N, N_a, D, G, S, ... from here, on arrays or scalars.

Each quantity below has one meaning (docs/planning.md, "Law inputs"). A law names its own variables as
its paper does; `Variable.quantity` says which quantity feeds each (e.g. [KRAJ]'s N is N_a here).

| quantity | meaning | from |
|---|---|---|
| N | total non-embedding parameters ([HY] Eq. 3) | counter: total.without_embeddings |
| N_a | activated non-embedding parameters ([HY] Eq. 2) | counter: active.without_embeddings |
| D | training tokens | given, or compute / training FLOPs per token |
| G | [HY] activated experts n_k + n_s (shared in d_expert units) | architecture |
| S | [HY] shared share n_s / G | architecture |
| G_K | [KRAJ] granularity 4 d_hidden / d_expert (a 4d dense FFN) | architecture |
| expansion | [JOINT] Ê = n_e / n_k | architecture |
| n_experts | routed experts n_e ([CLARK]) | architecture |
| S_inactive | [ABNAR] 1 - n_k / n_e | architecture |
| A | [LING] activation ratio (E_a + E_s)/(E + E_s) | architecture |
| G_L | [LING] granularity 2 d_hidden / d_expert | architecture |
| C | training compute, FLOPs | given |

Over a planner box (layers, d_hidden, top_k and shared experts fixed; d_expert and n_experts in ranges) every
quantity is monotone in d_expert and in n_experts, each in one direction for both (`MONOTONE`), so its
range over the box lies between its values at the box's two corners: what `Law.lower_bound` needs.
"""

from __future__ import annotations

import numpy as np

from moeplan.errors import MoeplanError

QUANTITIES = ("N", "N_a", "D", "G", "S", "G_K", "expansion", "n_experts", "S_inactive", "A", "G_L", "C")
# Quantities set by the box's fixed axes (top_k, shared experts) alone: constant over a box.
FIXED_IN_BOX = frozenset({"G", "S"})
# Direction of each quantity in (d_expert, n_experts): +1 grows, -1 falls, 0 constant.
MONOTONE = {
    "N": (1, 1), "N_a": (1, 1), "D": (-1, -1), "G": (0, 0), "S": (0, 0), "G_K": (-1, 0),
    "expansion": (0, 1), "n_experts": (0, 1), "S_inactive": (0, 1), "A": (0, -1), "G_L": (-1, 0), "C": (0, 0),
}


def quantities(*, total_without_embeddings, active_without_embeddings, d_hidden, d_expert, n_experts, top_k,
               n_shared_experts, d_shared_expert=None, tokens=None, compute=None,
               needed=QUANTITIES) -> dict[str, np.ndarray]:
    """The quantities of the table above (those in `needed`), from counts and architecture fields (arrays
    broadcast)."""
    def f64(x):
        return np.asarray(x, dtype=np.float64)

    cache = {}

    def shared():  # shared experts in d_expert units
        if "shared" not in cache:
            cache["shared"] = (f64(n_shared_experts) if d_shared_expert is None
                               else f64(n_shared_experts) * f64(d_shared_expert) / f64(d_expert))
        return cache["shared"]

    def activated():
        if "G" not in cache:
            cache["G"] = top_k + shared()
        return cache["G"]

    recipes = {
        "N": lambda: np.asarray(total_without_embeddings),
        "N_a": lambda: np.asarray(active_without_embeddings),
        "D": lambda: f64(tokens),
        "G": activated,
        "S": lambda: shared() / activated(),
        "G_K": lambda: 4 * f64(d_hidden) / f64(d_expert),
        "expansion": lambda: f64(n_experts) / f64(top_k),
        "n_experts": lambda: f64(n_experts),
        "S_inactive": lambda: 1 - f64(top_k) / f64(n_experts),
        "A": lambda: activated() / (f64(n_experts) + shared()),
        "G_L": lambda: 2 * f64(d_hidden) / f64(d_expert),
        "C": lambda: f64(compute),
    }
    given = {"D": tokens, "C": compute}
    return {q: recipes[q]() for q in needed if given.get(q, 0) is not None}


def for_law(law, available: dict) -> dict[str, np.ndarray]:
    """The law's variables (by its own names) from `quantities(...)`; raises naming what is missing."""
    missing = [v.quantity for v in law.variables if v.quantity not in available]
    if missing:
        raise MoeplanError(f"law {law.name!r} needs {', '.join(missing)}")
    return {v.name: available[v.quantity] for v in law.variables}


def of_count(c, tokens: float | None = None, compute: float | None = None) -> dict[str, float]:
    """`quantities` of one counted architecture (a `moeplan.flops.count.Count`), as floats."""
    a = c.architecture
    q = quantities(total_without_embeddings=c.total.without_embeddings,
                   active_without_embeddings=c.active.without_embeddings, d_hidden=a.d_hidden,
                   d_expert=a.d_expert, n_experts=a.n_experts, top_k=a.top_k, n_shared_experts=a.n_shared_experts,
                   d_shared_expert=a.d_shared_expert, tokens=tokens, compute=compute)
    return {k: float(v) for k, v in q.items()}


def law_inputs(law, c, tokens: float | None = None, compute: float | None = None) -> dict[str, float]:
    """The law's variables for a counted architecture (those the counts and `tokens`/`compute` give)."""
    available = of_count(c, tokens, compute)
    return {v.name: available[v.quantity] for v in law.variables if v.quantity in available}
