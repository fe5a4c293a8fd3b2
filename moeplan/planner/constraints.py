"""The one constraints table: every prior and cap of a request, with its label, point test, box test and route
into Optuna. Space feasibility, branch-and-bound pruning, binding constraints, the study's named
constraints and the plan's assumptions all read this table (docs/planning.md, "Constraints").

- `broken(values, ev)`: mask of the points (six axes in `values`, their `Evaluation` in `ev`) that break it.
- `box_may_hold(lo, hi)`: for count and token constraints, False where no point of a box can satisfy it
  (counts grow from the lower corner `lo` to the upper `hi`, tokens fall); None for the shape constraints
  the index space holds by construction.
- `optuna`: "bounds" if `suggest_int`'s ranges already enforce it (never recorded), "constraint" if each
  trial records it with `trial.set_constraint` (optuna-dashboard shows the trial infeasible).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

from moeplan.planner.request import PlanRequest


@dataclass(frozen=True)
class Constraint:
    label: str
    broken: Callable  # (values, ev) -> bool mask
    box_may_hold: Callable | None  # (lo, hi) -> bool mask, None: held by the index space's construction
    optuna: Literal["bounds", "constraint"]


def _axis(values, name):
    return np.asarray(values[name])


@lru_cache(maxsize=64)
def table(r: PlanRequest) -> tuple[Constraint, ...]:
    """The constraints of request `r`, shape priors first, then the caps on counts and tokens (cached: a
    Space asks on every evaluation, and must stay picklable for worker processes, so it keeps none)."""
    p = r.priors
    ax = _axis
    rows = [
        Constraint(f"layers in [{p.min_layers}, {p.max_layers}]",
                   lambda v, ev: (ax(v, "n_layers") < p.min_layers) | (ax(v, "n_layers") > p.max_layers),
                   None, "bounds"),
        Constraint(f"d_hidden in [{p.min_d_hidden}, {p.max_d_hidden}]",
                   lambda v, ev: (ax(v, "d_hidden") < p.min_d_hidden) | (ax(v, "d_hidden") > p.max_d_hidden),
                   None, "bounds"),
        Constraint(f"d_hidden/layers >= {p.min_aspect:g}",
                   lambda v, ev: ax(v, "d_hidden") < p.min_aspect * ax(v, "n_layers"), None, "constraint"),
        Constraint(f"d_hidden/layers <= {p.max_aspect:g}",
                   lambda v, ev: ax(v, "d_hidden") > p.max_aspect * ax(v, "n_layers"), None, "constraint"),
        Constraint(f"d_expert/d_hidden >= {p.min_expert_ratio:g}",
                   lambda v, ev: ax(v, "d_expert") < p.min_expert_ratio * ax(v, "d_hidden") - 1e-9,
                   None, "constraint"),
        Constraint(f"d_expert/d_hidden <= {p.max_expert_ratio:g}",
                   lambda v, ev: ax(v, "d_expert") > p.max_expert_ratio * ax(v, "d_hidden") + 1e-9,
                   None, "constraint"),
        Constraint(f"n_experts <= {p.max_experts}", lambda v, ev: ax(v, "n_experts") > p.max_experts,
                   None, "bounds"),
        Constraint(f"top_k <= {p.max_top_k}", lambda v, ev: ax(v, "top_k") > p.max_top_k, None, "bounds"),
        Constraint(f"n_shared_experts <= {p.max_shared}", lambda v, ev: ax(v, "n_shared_experts") > p.max_shared,
                   None, "bounds"),
        Constraint("top_k < n_experts", lambda v, ev: ax(v, "top_k") >= ax(v, "n_experts"), None, "constraint"),
        Constraint(f"tokens >= {p.min_tokens_per_param:g} x total parameters",
                   lambda v, ev: ev.tokens < p.min_tokens_per_param * ev.total,
                   lambda lo, hi: lo.tokens >= p.min_tokens_per_param * lo.total, "constraint"),
    ]
    if r.params_cap is not None:
        cap = r.params_cap
        rows.append(Constraint(f"total parameters <= {cap:.4g}", lambda v, ev: ev.total > cap,
                               lambda lo, hi: lo.total <= cap, "constraint"))
    if r.max_tokens is not None:
        most = r.max_tokens
        rows.append(Constraint(f"tokens <= {most:.4g}", lambda v, ev: ev.tokens > most,
                               lambda lo, hi: hi.tokens <= most, "constraint"))
    if r.cluster is not None:
        rows += _cluster_rows(r)
    return tuple(rows)


def _cluster_rows(r: PlanRequest) -> list[Constraint]:
    """Memory per device (grows with every size: a box whose smallest corner does not fit holds nothing that
    fits; it includes TP dividing the kv heads) and, under a FLOPs budget, a --days cap (not monotone over a
    box, so never pruned on). Their masks come from `moeplan.cluster.planning.cluster_tokens`."""
    c = r.cluster
    rows = [Constraint(f"memory per device <= {c.device().hbm_gb:g} GiB on {c.gpus} x {c.gpu}",
                       lambda v, ev: ~ev.cluster["memory_fits"], lambda lo, hi: lo.cluster["memory_fits"],
                       "constraint")]
    if c.days is not None and (r.flops is not None or r.gpu_hours is not None):
        days = c.days
        rows.append(Constraint(f"days <= {days:g}", lambda v, ev: ev.cluster["days"] > days * (1 + 1e-9),
                               lambda lo, hi: np.ones(np.shape(lo.tokens), dtype=bool), "constraint"))
    return rows


@lru_cache(maxsize=64)
def on_counts(r: PlanRequest) -> tuple[Constraint, ...]:
    """The constraints on counts and tokens (the ones with a box test): the index space does not hold them."""
    return tuple(c for c in table(r) if c.box_may_hold is not None)
