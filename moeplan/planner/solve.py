"""Exact discrete optimisation of the [HY] law over a `Space`: branch and bound, and brute-force enumeration.

Branch and bound: a box fixes (layers, d_hidden) and (top_k, shared) and spans ranges of d_expert and
n_experts. Every count grows with every size, so over a box N, N_a and FLOPs/token lie between their
values at the box's lower and upper corners. The [HY] law is a sum of terms, each monotone in one of N,
N_a, D or N_a/N with a coefficient fixed by the box: (A + a)·N^-α, (A·k + c)·N_a^-α, A·h·N_a/N, b·D^-β
and ε, with A = eG + f/G + mS² + nS. Taking each term at the corner that minimises it (which corner
depends on its coefficient's sign) bounds the loss of every point in the box from below, for any fitted
constants with α, β > 0; at a single point the bound is the exact loss. Boxes whose bound
exceeds the best loss found + tolerance are dropped, the rest split in half, until all are points: the
result is every feasible point within the tolerance of the optimum, the optimum first. Exact by
construction; the enumeration below checks it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moeplan.planner.space import Space


@dataclass(frozen=True)
class Band:
    """Feasible points within `tolerance` of the best loss, sorted by loss (ties by index, for determinism)."""

    pair: np.ndarray
    combo: np.ndarray
    j: np.ndarray
    i: np.ndarray
    loss: np.ndarray
    tolerance: float
    evaluated: int  # points (box corners included) whose loss was computed

    def __len__(self) -> int:
        return len(self.loss)

    def point(self, k: int = 0) -> tuple[int, int, int, int]:
        return int(self.pair[k]), int(self.combo[k]), int(self.j[k]), int(self.i[k])


def _sorted_band(pair, combo, j, i, loss, tolerance, evaluated) -> Band:
    if len(loss) == 0:
        return Band(*(np.empty(0, dtype=np.int64),) * 4, np.empty(0), tolerance, evaluated)
    keep = loss <= loss.min() + tolerance
    pair, combo, j, i, loss = pair[keep], combo[keep], j[keep], i[keep], loss[keep]
    order = np.lexsort((i, j, combo, pair, loss))
    return Band(pair[order], combo[order], j[order], i[order], loss[order], tolerance, evaluated)


def bound_is_valid(space: Space) -> bool:
    """Whether the law offers a box bound (the law protocol's optional `lower_bound`); else enumerate."""
    return space.law.has_bound


def lower_bound(space: Space, combo, lo, hi) -> np.ndarray:
    """The law's loss bound over boxes, from the law inputs at their two corners.

    Every input is monotone in d_expert and n_experts, one direction for both (moeplan.laws.inputs.MONOTONE),
    so over a box it lies between its values at the lower corner `lo` and the upper corner `hi`.
    """
    from moeplan.laws.inputs import MONOTONE

    low, high = {}, {}
    for v in space.law.variables:
        falls = min(MONOTONE[v.quantity]) < 0
        low[v.name], high[v.name] = (hi, lo)[not falls].inputs[v.name], (lo, hi)[not falls].inputs[v.name]
    return space.law.lower_bound(low, high)


def initial_boxes(space: Space, combos=None):
    n_pairs = len(space.pairs[0])
    combos = np.arange(len(space.combos[0])) if combos is None else np.asarray(combos)
    pair, combo = np.meshgrid(np.arange(n_pairs), combos, indexing="ij")
    pair, combo = pair.ravel(), combo.ravel()
    j_lo, j_hi = space.expert_index_range
    il = space.min_expert_index(space.combos[0][combo])
    ih = np.full_like(il, space.expert_count_range[1])
    keep = il <= ih
    return pair[keep], combo[keep], j_lo[pair][keep], j_hi[pair][keep], il[keep], ih[keep]


def branch_and_bound(space: Space, tolerance: float, combos=None, incumbent: float = np.inf) -> Band:
    """Every feasible point within `tolerance` of the optimum of `space` (restricted to `combos` if given)."""
    pair, combo, jl, jh, il, ih = initial_boxes(space, combos)
    found: list[tuple[np.ndarray, ...]] = []
    evaluated = 0
    while len(pair):
        lo = space.evaluate(pair, combo, jl, il)
        hi = space.evaluate(pair, combo, jh, ih)
        evaluated += 2 * len(pair)
        for ev in (lo, hi):
            if ev.feasible.any():
                incumbent = min(incumbent, float(ev.loss[ev.feasible].min()))
        bound = lower_bound(space, combo, lo, hi)
        # at a single point the bound must equal the loss, up to rounding of a different sum order
        alive = (bound <= incumbent + tolerance + 1e-12) & space.box_may_be_feasible(lo, hi)
        leaf = (jl == jh) & (il == ih)
        done = alive & leaf & lo.feasible
        found.append((pair[done], combo[done], jl[done], il[done], lo.loss[done]))
        split = alive & ~leaf
        pair, combo, jl, jh, il, ih = (x[split] for x in (pair, combo, jl, jh, il, ih))
        on_j = (jh - jl) >= (ih - il)
        mid_j, mid_i = (jl + jh) // 2, (il + ih) // 2
        pair, combo = np.concatenate([pair, pair]), np.concatenate([combo, combo])
        jl, jh = np.concatenate([jl, np.where(on_j, mid_j + 1, jl)]), np.concatenate([np.where(on_j, mid_j, jh), jh])
        il, ih = np.concatenate([il, np.where(on_j, il, mid_i + 1)]), np.concatenate([np.where(on_j, ih, mid_i), ih])
    cols = [np.concatenate(c) for c in zip(*found, strict=True)] if found else [np.empty(0)] * 5
    return _sorted_band(*cols, tolerance, evaluated)


def seed_combos(space: Space) -> list[int]:
    """(top_k, shared) combos nearest the sympy-derived G* and S*: floor and ceil of G*, n_s = round(S*·G)."""
    from moeplan.laws import optima

    if space.law.form != "hy":
        return []
    g_star, s_star = optima.optimal_experts(space.law), optima.optimal_shared_ratio(space.law)
    ks, ss = space.combos
    wanted: list[int] = []
    for g in sorted({int(np.floor(g_star)), int(np.ceil(g_star))}):
        wanted += np.flatnonzero((ks + ss == g) & (ss == int(round(s_star * g)))).tolist()
    return wanted


def solve(space: Space, tolerance: float) -> tuple[Band, list[Band], int]:
    """The band of `space` and the seeds' optima: sympy's G*, S* are solved first and their best loss is the
    first incumbent, which prunes most of the space; enumeration when the bound does not apply.
    Returns (band, seed bands, points evaluated)."""
    if not bound_is_valid(space):
        band = enumerate_space(space, tolerance)
        return band, [], band.evaluated
    seeds, incumbent, evaluated = [], np.inf, 0
    for combo in seed_combos(space):
        seed = branch_and_bound(space, 0.0, combos=[combo])
        evaluated += seed.evaluated
        if len(seed):
            seeds.append(seed)
            incumbent = min(incumbent, float(seed.loss[0]))
    band = branch_and_bound(space, tolerance, incumbent=incumbent)
    return band, seeds, evaluated + band.evaluated


def enumerate_space(space: Space, tolerance: float, max_chunk: int = 4_000_000) -> Band:
    """The certificate: every point of the space evaluated (chunked by combo to bound memory)."""
    j_lo, j_hi = space.expert_index_range
    widths = j_hi - j_lo + 1
    pair_of_j = np.repeat(np.arange(len(widths)), widths)
    j_all = np.repeat(j_lo, widths) + (np.arange(widths.sum()) - np.repeat(np.cumsum(widths) - widths, widths))
    i_max = space.expert_count_range[1]
    found = []
    evaluated = 0
    for combo in range(len(space.combos[0])):
        i_min = int(space.min_expert_index(space.combos[0][combo]))
        if i_min > i_max:
            continue
        i_values = np.arange(i_min, i_max + 1)
        step = max(1, max_chunk // len(i_values))
        for start in range(0, len(j_all), step):
            pj, jj = pair_of_j[start:start + step], j_all[start:start + step]
            p = np.repeat(pj, len(i_values))
            j = np.repeat(jj, len(i_values))
            i = np.tile(i_values, len(pj))
            c = np.full_like(p, combo)
            ev = space.evaluate(p, c, j, i)
            evaluated += len(p)
            keep = ev.feasible
            found.append((p[keep], c[keep], j[keep], i[keep], ev.loss[keep]))
    cols = [np.concatenate(c) for c in zip(*found, strict=True)] if found else [np.empty(0)] * 5
    # keep only what can be in the band before sorting everything
    if len(cols[4]):
        near = cols[4] <= cols[4].min() + tolerance
        cols = [c[near] for c in cols]
    return _sorted_band(*cols, tolerance, evaluated)
