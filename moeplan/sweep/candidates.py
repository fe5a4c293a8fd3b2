"""Candidate runs: buildable architectures from the planner's `Space`, each trained at IsoFLOP budgets.

An architecture does not depend on the budget; a run is an architecture and its tokens. The pool samples
the space on a coarse lattice (every (layers, d_hidden) pair and (top_k, shared) combo, three expert widths
and log-spaced expert counts), keeps what is trainable at some budget of the ladder (tokens per parameter
above the sweep's floor), and draws a stratified sample so every budget has candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moeplan.errors import MoeplanError
from moeplan.laws.model import Law
from moeplan.planner.request import PlanRequest, Priors
from moeplan.planner.space import AXES, Space
from moeplan.sweep.request import SweepRequest

# Law variables a sweep can vary: the [HY] family and the dense [CHIN] form (N non-embedding, as fit reads).
SUPPORTED_VARIABLES = {"N", "N_a", "D", "G", "S"}


@dataclass(frozen=True)
class Pool:
    """Architectures as arrays (one element each): the six axes, counts and training FLOPs per token."""

    axes: dict[str, np.ndarray]
    n: np.ndarray            # non-embedding total ([HY] N)
    n_a: np.ndarray          # non-embedding active ([HY] N_a)
    total: np.ndarray        # all parameters
    flops_per_token: np.ndarray

    def __len__(self) -> int:
        return len(self.n)

    @property
    def g(self) -> np.ndarray:
        return (self.axes["top_k"] + self.axes["n_shared_experts"]).astype(np.float64)

    @property
    def s(self) -> np.ndarray:
        return self.axes["n_shared_experts"] / self.g

    def take(self, index) -> Pool:
        index = np.asarray(index)
        return Pool({k: v[index] for k, v in self.axes.items()}, self.n[index], self.n_a[index], self.total[index],
                     self.flops_per_token[index])


@dataclass(frozen=True)
class Runs:
    """Training runs: an architecture of a pool and its compute; tokens follow from FLOPs per token."""

    pool: Pool
    arch: np.ndarray     # index into pool
    compute: np.ndarray  # FLOPs of each run

    def __len__(self) -> int:
        return len(self.arch)

    @property
    def tokens(self) -> np.ndarray:
        return self.compute / self.pool.flops_per_token[self.arch]

    def variables(self) -> dict[str, np.ndarray]:
        """The law's variables of every run: [HY] N, N_a (non-embedding), D, G, S."""
        p = self.pool
        return {"N": p.n[self.arch].astype(np.float64), "N_a": p.n_a[self.arch].astype(np.float64),
                "D": self.tokens, "G": p.g[self.arch], "S": p.s[self.arch]}

    def take(self, index) -> Runs:
        index = np.asarray(index)
        return Runs(self.pool, self.arch[index], self.compute[index])


def check_law(law: Law) -> None:
    extra = set(law.variable_names) - SUPPORTED_VARIABLES
    if law.kind != "loss" or extra:
        raise MoeplanError(f"law {law.name!r} cannot be designed for: a sweep varies N, N_a, D, G and S "
                           "(laws hy, hy-nd, hy-nda, hy-ndag, chinchilla, epoch)")


def sweep_space(request: SweepRequest, law: Law, compute: float) -> Space:
    """The planner's buildable space at `compute`, with the sweep's floor on tokens per parameter."""
    plan_request = PlanRequest(flops=compute, seq_len=request.seq_len, vocab_size=request.vocab_size,
                               expert_parallel=request.expert_parallel,
                               priors=Priors(min_tokens_per_param=request.min_tokens_per_param))
    space = Space(plan_request, law)
    space.check()
    return space


def budget_ladder(request: SweepRequest) -> np.ndarray:
    """IsoFLOP budgets log-spaced from the smallest to the largest run."""
    if request.budgets == 1:
        return np.array([request.max_run])
    return np.geomspace(request.min_run, request.max_run, request.budgets)


def _lattice(space: Space) -> dict[str, np.ndarray]:
    """Every pair and combo; d_expert at the low, middle and high end of its band; log-spaced expert counts."""
    j_lo, j_hi = space.expert_index_range
    # pairs whose smallest model (top-1, one expert group, narrowest experts) cannot train on the budget
    # cannot hold a trainable point at all: drop them before the lattice multiplies them
    smallest = space.evaluate(np.arange(len(j_lo)), 0, j_lo, 1)
    pairs = np.flatnonzero(smallest.feasible)
    i_max = space.expert_count_range[1]
    counts = np.unique(np.round(np.geomspace(1, i_max, 8)).astype(np.int64))
    combos = np.arange(len(space.combos[0]))
    p, c, jq, i = np.meshgrid(pairs, combos, np.arange(3), counts, indexing="ij")
    p, c, jq, i = p.ravel(), c.ravel(), jq.ravel(), i.ravel()
    j = np.where(jq == 0, j_lo[p], np.where(jq == 1, (j_lo[p] + j_hi[p]) // 2, j_hi[p]))
    keep = i >= space.min_expert_index(space.combos[0][c])
    return space.values(p[keep], c[keep], j[keep], i[keep])


def build_pool(request: SweepRequest, law: Law, budgets: np.ndarray, size: int, seed: int = 0) -> Pool:
    """A stratified sample of buildable architectures trainable at the budgets (about `size` of them)."""
    space = sweep_space(request, law, float(budgets.max()))
    values = _lattice(space)
    floor = request.min_tokens_per_param
    if len(values["n_layers"]) == 0:
        raise _none_trains(law, budgets, floor)
    ev = space.evaluate_values(values)
    in_domain = np.ones(len(ev.n), dtype=bool)
    for var in law.variables:  # runs stay at or above the sizes the law was fitted on (no downward extrapolation)
        if var.name in ("N", "N_a") and var.domain is not None:
            in_domain &= (ev.n if var.name == "N" else ev.n_a) >= var.domain[0]
    trainable = [in_domain & (ev.tokens * (b / budgets.max()) >= floor * ev.total) for b in budgets]
    rng = np.random.default_rng(seed)
    chosen: set[int] = set()
    per_budget = max(1, size // len(budgets))
    for mask in trainable:
        index = np.flatnonzero(mask)
        if len(index) == 0:
            continue
        chosen.update(rng.choice(index, min(per_budget, len(index)), replace=False).tolist())
    if not chosen:
        raise _none_trains(law, budgets, floor)
    index = np.array(sorted(chosen))
    return Pool({k: np.asarray(values[k])[index].astype(np.int64) for k in AXES}, ev.n[index], ev.n_a[index],
                ev.total[index], ev.flops_per_token[index])


def _none_trains(law: Law, budgets: np.ndarray, floor: float) -> MoeplanError:
    return MoeplanError(f"no buildable architecture within law {law.name!r}'s fitted sizes trains on "
                        f"{budgets.max():.3g} FLOPs with at least {floor:g} tokens per parameter: raise "
                        "--max-run-flops or lower --min-tokens-per-param")


def isoflop_candidates(pool: Pool, budgets: np.ndarray, floor: float) -> Runs:
    """Every (architecture, budget) pair whose tokens clear the floor on tokens per parameter."""
    a, b = np.meshgrid(np.arange(len(pool)), np.arange(len(budgets)), indexing="ij")
    a, b = a.ravel(), b.ravel()
    compute = budgets[b]
    keep = compute / pool.flops_per_token[a] >= floor * pool.total[a]
    return Runs(pool, a[keep], compute[keep])
