"""The buildable space of a request as index axes, and the vectorised evaluation of any set of its points.

A point is (pair, combo, j, i): pair = (layers, d_hidden) within the aspect band, combo = (top_k, shared),
d_expert = expert_align·j within the expert-ratio band of that d_hidden, n_experts = expert_parallel·i.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from moeplan.errors import MoeplanError
from moeplan.flops.architecture import Architecture
from moeplan.flops.vectorised import count_arrays
from moeplan.laws.inputs import quantities
from moeplan.laws.model import Law
from moeplan.planner.family import PlanFamily, plan_family
from moeplan.planner import constraints
from moeplan.planner.request import PlanRequest

AXES = ("n_layers", "d_hidden", "d_expert", "n_experts", "top_k", "n_shared_experts")


@dataclass(frozen=True)
class Evaluation:
    """Counts, tokens, loss and feasibility of many points (arrays of one length)."""

    total: np.ndarray          # all parameters (memory)
    active: np.ndarray         # active parameters, everything counted (`active_params` everywhere)
    n: np.ndarray              # quantity N: total without embeddings
    n_a: np.ndarray            # quantity N_a: active without embeddings
    flops_per_token: np.ndarray
    tokens: np.ndarray
    loss: np.ndarray
    feasible: np.ndarray
    inputs: dict               # the law's variables (moeplan.laws.inputs), by the law's names
    cluster: dict | None = None  # with a cluster: memory_fits, feasible, days, least_memory (moeplan/cluster/planning.py)


@dataclass(frozen=True)
class Space:
    request: PlanRequest
    law: Law

    # -- axes -----------------------------------------------------------------------------------------
    @cached_property
    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(layers, d_hidden) pairs within the size ranges and the aspect band, layers a multiple of PP."""
        r, p = self.request, self.request.priors
        step = r.d_hidden_step
        widths = np.arange(math.ceil(p.min_d_hidden / step), p.max_d_hidden // step + 1) * step
        pp = r.pipeline_parallel
        fewest = max(p.min_layers, p.dense_layers + 1)  # at least one MoE layer after the dense ones
        layers = np.arange(math.ceil(fewest / pp), p.max_layers // pp + 1) * pp
        ll, dd = np.meshgrid(layers, widths, indexing="ij")
        ll, dd = ll.ravel(), dd.ravel()
        aspect = dd / ll
        keep = (aspect >= p.min_aspect) & (aspect <= p.max_aspect)
        ll, dd = ll[keep], dd[keep]
        j_lo, j_hi = self._expert_index_range(dd)
        keep = j_lo <= j_hi
        return ll[keep].astype(np.int64), dd[keep].astype(np.int64)

    def _expert_index_range(self, d_hidden: np.ndarray):
        p, align = self.request.priors, self.request.expert_align
        j_lo = np.ceil(p.min_expert_ratio * d_hidden / align - 1e-9).astype(np.int64)
        j_hi = np.floor(p.max_expert_ratio * d_hidden / align + 1e-9).astype(np.int64)
        return np.maximum(j_lo, 1), j_hi

    @cached_property
    def expert_index_range(self) -> tuple[np.ndarray, np.ndarray]:
        return self._expert_index_range(self.pairs[1])

    @cached_property
    def family(self) -> PlanFamily:
        """The transformers family the plan is built for: it fixes some features and limits shared experts."""
        return plan_family(self.request.family)

    @cached_property
    def combos(self) -> tuple[np.ndarray, np.ndarray]:
        """(top_k, shared) combinations allowed by the caps and the family."""
        p, fam = self.request.priors, self.family
        max_shared = p.max_shared if fam.max_shared is None else min(p.max_shared, fam.max_shared)
        k, s = np.meshgrid(np.arange(1, p.max_top_k + 1), np.arange(fam.min_shared, max_shared + 1), indexing="ij")
        return k.ravel().astype(np.int64), s.ravel().astype(np.int64)

    @cached_property
    def expert_count_range(self) -> tuple[int, int]:
        ep = self.request.expert_parallel
        return 1, self.request.priors.max_experts // ep

    def min_expert_index(self, top_k: np.ndarray) -> np.ndarray:
        """Smallest n_experts index with n_experts > top_k (routing must choose among more than it keeps)."""
        ep = self.request.expert_parallel
        return np.maximum(self.expert_count_range[0], top_k // ep + 1)

    @property
    def size(self) -> int:
        """Number of points in the space (before caps on parameters and tokens)."""
        j_lo, j_hi = self.expert_index_range
        per_pair = (j_hi - j_lo + 1).sum()
        i_max = self.expert_count_range[1]
        per_combo = np.maximum(0, i_max - self.min_expert_index(self.combos[0]) + 1).sum()
        return int(per_pair * per_combo)

    # -- evaluation -----------------------------------------------------------------------------------
    @cached_property
    def template(self) -> Architecture:
        r = self.request
        d = r.d_hidden_step
        dense = r.priors.dense_layers
        return Architecture(
            n_layers=max(dense + 1, 2), d_hidden=d, n_heads=d // r.d_head, n_kv_heads=d // r.d_head // r.gqa_group,
            d_head=r.d_head, d_expert=r.expert_align, n_experts=r.expert_parallel, top_k=1,
            vocab_size=r.vocab_size, tie_embeddings=r.tie_embeddings, seq_len=r.seq_len,
            n_leading_dense=dense, d_dense_ffn=self.dense_width(d) if dense else None,
            n_shared_experts=self.family.min_shared, **self.family.features,
        )

    def dense_width(self, d_hidden):
        align = self.request.expert_align
        return np.ceil(self.request.priors.dense_ffn_ratio * np.asarray(d_hidden) / align).astype(np.int64) * align

    def values(self, pair, combo, j, i) -> dict[str, np.ndarray]:
        """The six architecture axes (AXES) of points given by index arrays."""
        r = self.request
        return {
            "n_layers": self.pairs[0][pair], "d_hidden": self.pairs[1][pair],
            "d_expert": r.expert_align * np.asarray(j), "n_experts": r.expert_parallel * np.asarray(i),
            "top_k": self.combos[0][combo], "n_shared_experts": self.combos[1][combo],
        }

    def architecture_arrays(self, values: dict) -> dict[str, np.ndarray]:
        r = self.request
        dd = np.asarray(values["d_hidden"])
        heads = dd // r.d_head
        arrays = {k: np.asarray(v) for k, v in values.items()}
        arrays |= {"n_heads": heads, "n_kv_heads": heads // r.gqa_group, "d_shared_expert": arrays["d_expert"]}
        if r.priors.dense_layers:
            arrays["d_dense_ffn"] = self.dense_width(dd)
        return arrays

    def evaluate(self, pair, combo, j, i) -> Evaluation:
        """Exact counts and predicted loss of points given by index arrays (broadcast together)."""
        return self.evaluate_values(self.values(pair, combo, j, i))

    def law_inputs(self, axes: dict, n, n_a, tokens) -> dict[str, np.ndarray]:
        """The law's variables of architectures (their axes) with these counts N, N_a and tokens (the one map)."""
        return self.law.inputs(quantities(
            total_without_embeddings=n, active_without_embeddings=n_a, d_hidden=axes["d_hidden"],
            d_expert=axes["d_expert"], n_experts=axes["n_experts"], top_k=axes["top_k"],
            n_shared_experts=axes["n_shared_experts"], tokens=tokens, needed=self.law.quantities))

    def evaluate_values(self, values: dict) -> Evaluation:
        """Exact counts and predicted loss of architectures given by their six axes (AXES)."""
        r = self.request
        arrays = self.architecture_arrays(values)
        c = count_arrays(self.template, r.convention, True, **arrays)
        n, n_a = c.total["without_embeddings"], c.active["without_embeddings"]
        flops = c.train_flops_per_token
        tokens = r.compute / flops
        cluster = None
        if r.cluster is not None:  # memory per device and days x throughput (docs/cluster.md)
            from moeplan.cluster.planning import cluster_tokens

            cluster = cluster_tokens(self, arrays, flops)
            tokens = cluster["tokens"]
        inputs = self.law_inputs(arrays, n, n_a, tokens)
        loss = np.broadcast_to(self.law.loss(inputs), np.shape(flops))
        ev = Evaluation(total=c.total["all"], active=c.active["all"], n=n, n_a=n_a, flops_per_token=flops,
                        tokens=tokens, loss=loss, feasible=None, inputs=inputs, cluster=cluster)
        ok = np.ones(np.shape(flops), dtype=bool)
        for constraint in self.count_constraints:
            ok &= ~constraint.broken(values, ev)
        return replace(ev, feasible=ok)

    @property
    def constraints(self) -> tuple[constraints.Constraint, ...]:
        """The request's constraints table (moeplan.planner.constraints)."""
        return constraints.table(self.request)

    @property
    def count_constraints(self) -> tuple[constraints.Constraint, ...]:
        return constraints.on_counts(self.request)

    def box_may_be_feasible(self, lo: Evaluation, hi: Evaluation) -> np.ndarray:
        """Feasibility over boxes, from the table's box tests: False where no point of the box can be feasible."""
        ok = np.ones(np.shape(lo.tokens), dtype=bool)
        for constraint in self.count_constraints:
            ok &= constraint.box_may_hold(lo, hi)
        return ok

    def architecture(self, pair: int, combo: int, j: int, i: int) -> Architecture:
        """The `Architecture` of one point."""
        return self.architecture_of(self.values(pair, combo, j, i))

    def architecture_of(self, values: dict) -> Architecture:
        """The `Architecture` with these six axes and the request's fixed choices."""
        arrays = {k: int(np.asarray(v)) for k, v in self.architecture_arrays(values).items()}
        fields = dict(self.template) | arrays
        fields["dense_layers"] = tuple(range(self.request.priors.dense_layers))
        return Architecture(**fields)

    def prior_violations(self, values: dict) -> dict[str, np.ndarray]:
        """For each constraint of the table, a mask of the architectures (given by their axes) that break it."""
        ev = self.evaluate_values(values)
        return {c.label: np.asarray(c.broken(values, ev)) for c in self.constraints}

    def check(self) -> None:
        """Refuse a space with no points, naming the prior that empties it."""
        fam = self.family
        if self.request.priors.dense_layers and not fam.dense_layers:
            raise MoeplanError(f"family {fam.name} has no dense FFN layers: drop --dense-layers or plan for a "
                               "family that has them (glm4_moe, qwen3_moe, qwen2_moe, exaone_moe)")
        if len(self.combos[1]) == 0:
            raise MoeplanError(f"family {fam.name} always has {fam.min_shared} shared expert(s), above "
                               f"max_shared={self.request.priors.max_shared}")
        if len(self.pairs[0]) == 0:
            p = self.request.priors
            raise MoeplanError(
                f"no (layers, d_hidden) pair fits: d_hidden in [{p.min_d_hidden}, {p.max_d_hidden}] in steps of "
                f"{self.request.d_hidden_step}, layers in [{p.min_layers}, {p.max_layers}], "
                f"d_hidden/layers in [{p.min_aspect}, {p.max_aspect}], d_expert/d_hidden in "
                f"[{p.min_expert_ratio}, {p.max_expert_ratio}] at multiples of {self.request.expert_align}"
            )
        if self.expert_count_range[1] < 1:
            raise MoeplanError(f"max_experts={self.request.priors.max_experts} is below the expert-parallel "
                               f"degree {self.request.expert_parallel}")
