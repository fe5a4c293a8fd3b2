"""Exact discrete optimisation of the [HY] law over a `Space`: branch and bound, and brute-force enumeration.

Branch and bound: a box fixes (layers, d_hidden) and (top_k, shared) and spans ranges of d_expert and
n_experts. Every count grows with every size, so over a box N, N_a and FLOPs/token lie between their
values at the box's lower and upper corners; a feasible point also has total ≤ tokens / min_tokens_per_param
and tokens ≤ the data cap, which clips the box to its feasible part (`feasible_corners`). `lower_bound`
takes each term of the law at the corner that minimises it, which bounds the loss of every feasible point
in the box from below (docs/science.md, [HY]); at a single point the bound is the exact loss. Boxes whose
bound exceeds the best loss found + tolerance are dropped, the rest split in half, until all are points.

Memory is bounded at any budget and space: boxes are explored depth-first in batches from a stack (the
most promising on top), so the live boxes never exceed about (initial chunk + depth x 2 batches). Boxes are
halved along d_expert first (it moves N_a and tokens in opposite directions, the bound's loosest pair), and a
child shares one corner evaluation with its parent. When counting at a fixed threshold, a box wholly inside
the band (`upper_bound`, `wholly_feasible`) none of whose points can be among the best kept is counted by
its volume instead of split into points. The band
is streamed, keeping its best `keep` members, its exact size, its bounding box and its cheapest member.
While the band fits in a buffer it is collected in one pass; past that, members are only counted at the
threshold of the moment, and if a better optimum turns up later a second pass counts again at the final
threshold. Exact by construction; `enumerate_space` (the certificate, equally bounded) checks it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from moeplan.errors import MoeplanError
from moeplan.planner.space import AXES, Evaluation, Space

DEFAULT_KEEP = 1000
DEFAULT_MEMORY_GB = 2.0
BATCH = 1 << 15            # boxes evaluated per step of the search
_ROW_BYTES = 8 * 8         # one buffered band member: pair, combo, j, i, loss, flops and sort scratch
_MAX_BUFFER = 1 << 18     # band members collected before counting starts (counting whole boxes is faster)
_SLACK = 1e-12             # at a single point the bound equals the loss up to rounding of a different sum order


@dataclass(frozen=True)
class Band:
    """Feasible points within `tolerance` of the best loss: the best `keep` of them sorted by loss (ties by
    index, for determinism), and, over all of them, their exact number, bounding box and cheapest member."""

    pair: np.ndarray
    combo: np.ndarray
    j: np.ndarray
    i: np.ndarray
    loss: np.ndarray
    tolerance: float
    evaluated: int  # points (box corners included) whose loss was computed
    size: int = 0   # members in the whole band (the arrays keep the best of them)
    bounds: dict[str, tuple[int, int]] | None = None  # smallest and largest value of each axis over the band
    cheapest: tuple[int, int, int, int] | None = None  # least FLOPs/token in the band, ties by loss then index

    def __len__(self) -> int:
        return self.size

    def point(self, k: int = 0) -> tuple[int, int, int, int]:
        return int(self.pair[k]), int(self.combo[k]), int(self.j[k]), int(self.i[k])


class _BandStream:
    """Band members arriving in chunks: all of them while they fit in `capacity`, else counted at a fixed
    threshold with the best `keep` retained."""

    def __init__(self, space: Space, tolerance: float, keep: int, capacity: int, threshold: float | None = None):
        self.space, self.tolerance, self.keep, self.capacity = space, tolerance, keep, capacity
        self.threshold = threshold  # None: collecting everything below the moving incumbent + tolerance
        self.chunks: list[tuple[np.ndarray, ...]] = []
        self.held = 0
        self.size = 0
        self.low = self.high = None
        self.cheapest: tuple | None = None  # (flops, loss, pair, combo, j, i)
        self.kth = np.inf  # the keep-th least loss held when counting: boxes above it cannot enter the best

    def add_boxes(self, space: Space, pair, combo, jl, jh, il, ih, lo: Evaluation) -> None:
        """Boxes wholly inside the band when counting, none of whose points can be among the best kept:
        counted by volume; their cheapest point is the lower corner (FLOPs/token grow with every size)."""
        self.size += int(((jh - jl + 1) * (ih - il + 1)).sum())
        values = [space.values(pair, combo, jl, il), space.values(pair, combo, jh, ih)]
        self._extend(np.array([min(np.min(v[a]) for v in values) for a in AXES]),
                     np.array([max(np.max(v[a]) for v in values) for a in AXES]))
        self._cheapest(pair, combo, jl, il, lo.loss, lo.flops_per_token)

    def _extend(self, low, high) -> None:
        self.low = low if self.low is None else np.minimum(self.low, low)
        self.high = high if self.high is None else np.maximum(self.high, high)

    def _cheapest(self, pair, combo, j, i, loss, flops) -> None:
        least = np.flatnonzero(flops == flops.min())  # ties on FLOPs are rare: sort only those
        k = least[np.lexsort((i[least], j[least], combo[least], pair[least], loss[least]))[0]]
        row = (flops[k], loss[k], pair[k], combo[k], j[k], i[k])
        self.cheapest = row if self.cheapest is None else min(self.cheapest, row)

    def add(self, pair, combo, j, i, loss, flops, incumbent: float) -> None:
        limit = incumbent + self.tolerance if self.threshold is None else self.threshold
        keep = loss <= limit
        if not keep.any():
            return
        rows = tuple(x[keep] for x in (pair, combo, j, i, loss, flops))
        if self.threshold is not None:
            self._count(rows)
            contender = rows[4] <= self.kth  # the others cannot be among the best kept
            if not contender.all():
                rows = tuple(x[contender] for x in rows)
        self.chunks.append(rows)
        self.held += len(rows[0])
        if self.held > (self.capacity if self.threshold is None else max(2 * self.keep, BATCH)):
            self._compact(incumbent)

    def _compact(self, incumbent: float) -> None:
        rows = [np.concatenate(c) for c in zip(*self.chunks, strict=True)]
        if self.threshold is None:
            near = rows[4] <= incumbent + self.tolerance
            rows = [x[near] for x in rows]
            if len(rows[0]) > self.capacity:  # too many to hold: from now on count at this threshold
                self.threshold = incumbent + self.tolerance
                self._count(rows)
        if self.threshold is not None:
            rows = _best(rows, self.keep)
            if len(rows[4]) == self.keep:
                self.kth = float(rows[4][-1])
        self.chunks, self.held = [tuple(rows)], len(rows[0])

    def _count(self, rows) -> None:
        pair, combo, j, i, loss, flops = rows
        self.size += len(loss)
        values = self.space.values(pair, combo, j, i)
        self._extend(np.array([np.min(values[a]) for a in AXES]), np.array([np.max(values[a]) for a in AXES]))
        self._cheapest(pair, combo, j, i, loss, flops)

    def band(self, best: float, evaluated: int) -> Band:
        """The band at the final optimum `best` (the caller makes sure counting used its threshold)."""
        empty = (np.empty(0, dtype=np.int64),) * 4 + (np.empty(0), np.empty(0))
        rows = [np.concatenate(c) for c in zip(*self.chunks, strict=True)] if self.chunks else list(empty)
        if self.threshold is None:
            near = rows[4] <= best + self.tolerance
            rows = [x[near] for x in rows]
            if len(rows[0]):
                self._count(rows)
        if self.size == 0:
            return Band(*empty[:5], self.tolerance, evaluated)
        pair, combo, j, i, loss, _ = _best(rows, self.keep)
        bounds = {a: (int(lo), int(hi)) for a, lo, hi in zip(AXES, self.low, self.high, strict=True)}
        cheapest = tuple(int(x) for x in self.cheapest[2:])
        return Band(pair, combo, j, i, loss, self.tolerance, evaluated, self.size, bounds, cheapest)


def _best(rows, keep: int) -> list[np.ndarray]:
    """The `keep` rows of least loss, ties by index, sorted."""
    pair, combo, j, i, loss, _ = rows
    if len(loss) > 4 * keep:  # sort only the candidates: all rows with loss up to the keep-th smallest
        cut = np.partition(loss, keep - 1)[keep - 1]
        near = loss <= cut
        rows = [x[near] for x in rows]
        pair, combo, j, i, loss, _ = rows
    order = np.lexsort((i, j, combo, pair, loss))[:keep]
    return [x[order] for x in rows]


def bound_is_valid(space: Space) -> bool:
    """Whether the law offers a box bound (the law protocol's optional `lower_bound`); else enumerate."""
    return space.law.has_bound


def lower_bound(space: Space, combo, lo, hi) -> np.ndarray:
    """The law's loss bound over boxes, from the law inputs at their two corners.

    Every input is monotone in d_expert and n_experts, one direction for both (moeplan.laws.inputs.MONOTONE),
    so over a box it lies between its values at the lower corner `lo` and the upper corner `hi`.
    """
    return space.law.lower_bound(*_input_box(space, lo, hi))


def _input_box(space: Space, lo, hi) -> tuple[dict, dict]:
    """Each law input's smallest and largest value over boxes, from its values at the two corners."""
    from moeplan.laws.inputs import MONOTONE

    low, high = {}, {}
    for v in space.law.variables:
        falls = min(MONOTONE[v.quantity]) < 0
        low[v.name], high[v.name] = (hi, lo)[not falls].inputs[v.name], (lo, hi)[not falls].inputs[v.name]
    return low, high


def upper_bound(space: Space, combo, lo, hi) -> np.ndarray:
    """The law's loss bound from above over boxes: each term of `lower_bound` at its maximising corner. Used
    only to count boxes wholly inside the band at once."""
    return space.law.upper_bound(*_input_box(space, lo, hi))


def wholly_feasible(space: Space, lo: Evaluation, hi: Evaluation) -> np.ndarray:
    """Boxes all of whose points are feasible: the least favourable corner of each constraint holds."""
    return space.box_may_be_feasible(hi, lo)


def feasible_corners(space: Space, lo: Evaluation, hi: Evaluation, box: tuple):
    """The corners of each box's feasible part, and whether it has one: a feasible point has
    min_tokens_per_param x total ≤ tokens ≤ max_tokens and total ≤ the parameter cap (`Space.feasible`), so
    its total is at most lo.tokens / min_tokens_per_param and its tokens at least min_tokens_per_param x lo.total.
    Embeddings and LM head (total - N) are fixed by d_hidden, hence constant over a box. The law inputs of
    the clipped corners are mapped again from their counts and the box's corner axes (`box` is
    (pair, combo, jl, jh, il, ih)), so the law's bound sees the feasible part."""
    r = space.request
    ratio = r.priors.min_tokens_per_param
    total_max = np.minimum(hi.total, lo.tokens / ratio)
    if r.params_cap is not None:
        total_max = np.minimum(total_max, r.params_cap)
    tokens_max = lo.tokens if r.max_tokens is None else np.minimum(lo.tokens, r.max_tokens)
    tokens_min = np.maximum(hi.tokens, ratio * lo.total)
    n_max = total_max - (lo.total - lo.n)
    # plus the constraints table's own box tests (memory per device on a cluster, ...): the clipping above
    # covers only the tokens floor and the caps
    possible = (n_max >= lo.n) & (tokens_max >= tokens_min) & space.box_may_be_feasible(lo, hi)
    n_max = np.where(possible, n_max, hi.n)  # placeholders keep the bound finite where the box is dropped
    tokens_min = np.where(possible, tokens_min, hi.tokens)
    tokens_max = np.where(possible, tokens_max, lo.tokens)
    pair, combo, jl, jh, il, ih = box
    low_c = _mapped(space, replace(lo, tokens=tokens_max), space.values(pair, combo, jl, il))
    high_c = _mapped(space, replace(hi, n=n_max, n_a=np.minimum(hi.n_a, n_max), tokens=tokens_min),
                     space.values(pair, combo, jh, ih))
    return low_c, high_c, possible


def _remapped(space: Space, lo: Evaluation, hi: Evaluation, box: tuple) -> tuple:
    """(combo, lo, hi) with both corners' law inputs mapped from their counts (the stack does not keep them)."""
    pair, combo, jl, jh, il, ih = box
    return (combo, _mapped(space, lo, space.values(pair, combo, jl, il)),
            _mapped(space, hi, space.values(pair, combo, jh, ih)))


def _mapped(space: Space, ev: Evaluation, axes: dict) -> Evaluation:
    """`ev` with its law inputs mapped from its own N, N_a and tokens and the architecture `axes`."""
    return replace(ev, inputs=space.law_inputs(axes, ev.n, ev.n_a, ev.tokens))


def with_tokens(space: Space, ev: Evaluation, tokens) -> Evaluation:
    """`ev` trained on `tokens` instead: its tokens and the law inputs fed by the token count (quantity D)."""
    inputs = dict(ev.inputs)
    for v in space.law.variables:
        if v.quantity == "D":
            inputs[v.name] = np.asarray(tokens, dtype=np.float64)
    return replace(ev, tokens=tokens, inputs=inputs)


def _initial_chunks(space: Space, combos):
    """The boxes spanning each ((layers, d_hidden), combo): whole expert-width and expert-count ranges, in
    chunks of about 4 batches so that the search never holds all of them at once."""
    n_pairs = len(space.pairs[0])
    combos = np.arange(len(space.combos[0])) if combos is None else np.asarray(combos, dtype=np.int64)
    j_lo, j_hi = space.expert_index_range
    per_chunk = max(1, (4 * BATCH) // max(n_pairs, 1))
    for start in range(0, len(combos), per_chunk):
        pair, combo = np.meshgrid(np.arange(n_pairs), combos[start:start + per_chunk], indexing="ij")
        pair, combo = pair.ravel(), combo.ravel()
        il = space.min_expert_index(space.combos[0][combo])
        ih = np.full_like(il, space.expert_count_range[1])
        keep = il <= ih  # a combo needs more experts than it routes to
        if keep.any():
            yield pair[keep], combo[keep], j_lo[pair][keep], j_hi[pair][keep], il[keep], ih[keep]


def initial_boxes(space: Space, combos=None) -> tuple[np.ndarray, ...]:
    """Every initial box at once, as (pair, combo, jl, jh, il, ih): for searches that keep their whole frontier
    (moeplan.planner.lifetime, moeplan.planner.pareto)."""
    parts = list(_initial_chunks(space, combos))
    if not parts:
        return tuple(np.empty(0, dtype=np.int64) for _ in range(6))
    return tuple(np.concatenate(c) for c in zip(*parts, strict=True))


def halve(pair, combo, jl, jh, il, ih) -> tuple[np.ndarray, ...]:
    """Each box split in two along its longer index range (d_expert on ties): the children, lower halves first."""
    on_j = (jh - jl) >= (ih - il)
    mid_j, mid_i = (jl + jh) // 2, (il + ih) // 2
    return (np.concatenate([pair, pair]), np.concatenate([combo, combo]),
            np.concatenate([jl, np.where(on_j, mid_j + 1, jl)]), np.concatenate([np.where(on_j, mid_j, jh), jh]),
            np.concatenate([il, np.where(on_j, il, mid_i + 1)]), np.concatenate([np.where(on_j, ih, mid_i), ih]))


def _pop(stack: list, size: int):
    """About `size` boxes from the top of the stack (the most promising first). An entry is a tuple of
    arrays (or of `Evaluation`s of the box corners) of one length."""
    taken, n = [], 0
    while stack and n < size:
        top = stack.pop()
        m = len(top[0])
        if n + m > size:  # leave the rest of a large chunk on the stack
            cut = m - (size - n)
            stack.append(tuple(_at(x, slice(None, cut)) for x in top))
            top = tuple(_at(x, slice(cut, None)) for x in top)
        taken.append(top)
        n += len(top[0])
    return tuple(_cat(list(c)) for c in zip(*taken, strict=True))


def _search(space: Space, tolerance: float, combos, incumbent: float, stream: _BandStream | None):
    """Depth-first branch and bound; feasible points within `tolerance` of the incumbent go to `stream`.
    Every box on the stack carries the evaluations of its two corners: a child shares one corner with its
    parent, so each split evaluates two new points instead of four. Returns (best loss found, points evaluated)."""
    chunks = _initial_chunks(space, combos)
    stack: list[tuple] = []
    evaluated = 0

    def best_of(ev: Evaluation) -> float:
        return float(ev.loss[ev.feasible].min()) if ev.feasible.any() else np.inf

    def corner(*index) -> Evaluation:
        # the stack keeps what the bounds read: the law inputs are mapped again at clipped corners anyway and
        # the active count is never read, and copying them on every split was a third of a wide search
        return replace(space.evaluate(*index), active=None, inputs={})

    while True:
        if not stack:
            box = next(chunks, None)
            if box is None:
                return incumbent, evaluated
            lo = corner(box[0], box[1], box[2], box[4])
            evaluated += len(lo.loss)
            incumbent = min(incumbent, best_of(lo))
            # the lower corner alone bounds the box's feasible part (total <= tokens / min_tokens_per_param):
            # boxes that bound rules out, or with no feasible part, never have their upper corner evaluated
            far = np.full(len(lo.loss), np.inf)
            unbounded = replace(lo, total=far, n=far, n_a=far, tokens=np.zeros(len(lo.loss)))
            low_c, high_c, keep = feasible_corners(space, lo, unbounded, box)
            if np.isfinite(incumbent) and keep.any():
                keep[keep] = lower_bound(space, box[1][keep], _at(low_c, keep), _at(high_c, keep)) <= (
                    incumbent + tolerance + _SLACK)
            if not keep.any():
                continue
            pair, combo, jl, jh, il, ih = (x[keep] for x in box)
            lo = _at(lo, keep)
            hi = corner(pair, combo, jh, ih)
            evaluated += len(pair)
            incumbent = min(incumbent, best_of(hi))
            stack.append((pair, combo, jl, jh, il, ih, lo, hi))
        pair, combo, jl, jh, il, ih, lo, hi = _pop(stack, BATCH)
        leaf = (jl == jh) & (il == ih)
        low_c, high_c, possible = feasible_corners(space, lo, hi, (pair, combo, jl, jh, il, ih))
        bound = lower_bound(space, combo, low_c, high_c)
        alive = possible & (bound <= incumbent + tolerance + _SLACK)
        if stream is not None:
            done = alive & leaf & lo.feasible
            if done.any():
                stream.add(pair[done], combo[done], jl[done], il[done], lo.loss[done], lo.flops_per_token[done],
                           incumbent)
        split = alive & ~leaf
        if stream is not None and stream.threshold is not None and split.any():
            # counting at a fixed threshold: a box wholly inside the band, none of whose points can be among
            # the best kept, is counted whole instead of split into points
            whole = split & (bound > stream.kth + _SLACK) & wholly_feasible(space, lo, hi)
            if whole.any():
                w = (x[whole] for x in (pair, combo, jl, jh, il, ih))
                top = upper_bound(space, *_remapped(space, _at(lo, whole), _at(hi, whole), tuple(w)))
                whole[whole] = top <= stream.threshold - _SLACK
            if whole.any():
                stream.add_boxes(space, *(x[whole] for x in (pair, combo, jl, jh, il, ih)), _at(lo, whole))
                split &= ~whole
        if not split.any():
            continue
        order = np.flatnonzero(split)
        if stream is None or stream.threshold is None:  # while the incumbent may still fall: most promising last
            order = order[np.argsort(-bound[split], kind="stable")]
        pair, combo, jl, jh, il, ih = (x[order] for x in (pair, combo, jl, jh, il, ih))
        lo, hi = _at(lo, order), _at(hi, order)
        # split d_expert first: it moves N_a and tokens in opposite directions, the bound's loosest pair
        on_j = jh > jl
        mid_j, mid_i = (jl + jh) // 2, (il + ih) // 2
        # first child: [jl, a_jh] x [il, a_ih], sharing the lower corner; second: [b_jl, jh] x [b_il, ih]
        a_jh, a_ih = np.where(on_j, mid_j, jh), np.where(on_j, ih, mid_i)
        b_jl, b_il = np.where(on_j, mid_j + 1, jl), np.where(on_j, il, mid_i + 1)
        a_point = (jl == a_jh) & (il == a_ih)
        b_point = (b_jl == jh) & (b_il == ih)
        # the children, all first children then all second ones: [jl, a_jh] x [il, a_ih] shares the parent's
        # lower corner, [b_jl, jh] x [b_il, ih] its upper one; a child that is one point shares both
        m = len(pair)
        lows, highs = _cat([lo, hi]), _cat([lo, hi])  # shared corners in place, the new ones put below
        a_new, b_new = np.flatnonzero(~a_point), np.flatnonzero(~b_point)
        if len(a_new) + len(b_new):
            ev = corner(np.concatenate([pair[a_new], pair[b_new]]),
                                np.concatenate([combo[a_new], combo[b_new]]),
                                np.concatenate([a_jh[a_new], b_jl[b_new]]), np.concatenate([a_ih[a_new], b_il[b_new]]))
            evaluated += len(ev.loss)
            incumbent = min(incumbent, best_of(ev))
            highs = _put(highs, a_new, _at(ev, slice(None, len(a_new))))
            lows = _put(lows, b_new + m, _at(ev, slice(len(a_new), None)))
        stack.append((np.concatenate([pair, pair]), np.concatenate([combo, combo]), np.concatenate([jl, b_jl]),
                      np.concatenate([a_jh, jh]), np.concatenate([il, b_il]), np.concatenate([a_ih, ih]),
                      lows, highs))


_FIELDS = tuple(Evaluation.__dataclass_fields__)


def _fields(ev: Evaluation, fn) -> Evaluation:
    """`fn` applied to every array of `ev`: its array fields, and the arrays inside its dict fields (the law
    inputs; the cluster's masks)."""
    def one(value):
        if value is None:
            return None
        if isinstance(value, dict):
            return {k: fn(np.asarray(v)) for k, v in value.items()}
        return fn(np.asarray(value))

    return Evaluation(*(one(getattr(ev, f)) for f in _FIELDS))


def _at(x, index):
    """Rows `index` of an array or of every field of an `Evaluation`."""
    if isinstance(x, Evaluation):
        return _fields(x, lambda a: a[index])
    return x[index]


def _cat(parts: list):
    """Arrays, or `Evaluation`s field by field, end to end (as fresh, writable arrays)."""
    if isinstance(parts[0], Evaluation):
        def join(name, key=None):
            arrays = [np.asarray(getattr(p, name) if key is None else getattr(p, name)[key]) for p in parts]
            return np.concatenate(arrays)

        out = {}
        for f in _FIELDS:
            first = getattr(parts[0], f)
            if first is None:
                out[f] = None
            elif isinstance(first, dict):
                out[f] = {k: join(f, k) for k in first}
            else:
                out[f] = join(f)
        return Evaluation(**out)
    return np.concatenate(parts)


def _put(ev: Evaluation, index, values: Evaluation) -> Evaluation:
    """`ev` with rows `index` replaced by `values` (in place: `ev` is a fresh copy from `_cat`)."""
    for f in _FIELDS:
        target, source = getattr(ev, f), getattr(values, f)
        if target is None:
            continue
        if isinstance(target, dict):
            for k in target:
                target[k][index] = source[k]
        else:
            target[index] = source
    return ev


def _capacity(keep: int, max_memory_gb: float) -> int:
    """Band members the stream may buffer before it starts counting: at most a quarter of the allowance."""
    rows = int(max_memory_gb * 1e9 / 4 / _ROW_BYTES)
    if keep < 1:
        raise MoeplanError(f"band_keep={keep} must be at least 1")
    if 3 * keep > rows or rows < 4 * BATCH:
        raise MoeplanError(f"--max-memory-gb {max_memory_gb:g} is too little to keep {keep:,} band members and "
                           f"search in batches of {BATCH:,} boxes: raise it or lower --band-keep")
    return min(rows, _MAX_BUFFER)


def branch_and_bound(space: Space, tolerance: float, combos=None, incumbent: float = np.inf,
                     keep: int = DEFAULT_KEEP, max_memory_gb: float = DEFAULT_MEMORY_GB) -> Band:
    """Every feasible point within `tolerance` of the optimum of `space` (restricted to `combos` if given),
    streamed: the best `keep`, the exact count, bounding box and cheapest member."""
    capacity = _capacity(keep, max_memory_gb)
    try:
        stream = _BandStream(space, tolerance, keep, capacity)
        best, evaluated = _search(space, tolerance, combos, incumbent, stream)
        if stream.threshold is not None and best + tolerance < stream.threshold:
            # counted at a threshold the final optimum lowered: count again at the final one
            stream = _BandStream(space, tolerance, keep, capacity, threshold=best + tolerance)
            evaluated += _search(space, tolerance, combos, best, stream)[1]
        return stream.band(best, evaluated)
    except MemoryError:
        raise _out_of_memory(space, max_memory_gb) from None


def _out_of_memory(space: Space, max_memory_gb: float) -> MoeplanError:
    return MoeplanError(f"the search over {space.size:,} configurations ran out of memory (allowed "
                        f"{max_memory_gb:g} GB): narrow the priors or give the process more memory")


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


def solve(space: Space, tolerance: float, keep: int = DEFAULT_KEEP, max_memory_gb: float = DEFAULT_MEMORY_GB,
          incumbent: float = np.inf) -> tuple[Band, list[Band], int]:
    """The band of `space` and the seeds' optima: sympy's G*, S* are solved first and their best loss is the
    first incumbent (or `incumbent`, a known feasible loss, if lower), which prunes most of the space;
    enumeration when the bound does not apply. Returns (band, seed bands, points evaluated)."""
    if not bound_is_valid(space):
        band = enumerate_space(space, tolerance, keep=keep, max_memory_gb=max_memory_gb)
        return band, [], band.evaluated
    seeds, evaluated = [], 0
    for combo in seed_combos(space):
        seed = branch_and_bound(space, 0.0, combos=[combo], keep=1, max_memory_gb=max_memory_gb)
        evaluated += seed.evaluated
        if len(seed):
            seeds.append(seed)
            incumbent = min(incumbent, float(seed.loss[0]))
    band = branch_and_bound(space, tolerance, incumbent=incumbent, keep=keep, max_memory_gb=max_memory_gb)
    return band, seeds, evaluated + band.evaluated


def enumerate_space(space: Space, tolerance: float, keep: int = DEFAULT_KEEP,
                    max_memory_gb: float = DEFAULT_MEMORY_GB, chunk: int | None = None) -> Band:
    """The certificate: every point of the space evaluated, in chunks of about `chunk` points (by default
    2 million, fewer if the memory allowance is small: counting one point takes about 500 bytes of
    temporaries), the band streamed as in `branch_and_bound` (a second pass only if the band outgrew its
    buffer before the optimum was found)."""
    capacity = _capacity(keep, max_memory_gb)
    chunk = chunk or max(BATCH, min(1 << 21, int(max_memory_gb * 1e9 / 4 / 500)))
    try:
        stream = _BandStream(space, tolerance, keep, capacity)
        best, evaluated = _enumerate(space, stream, chunk)
        if stream.threshold is not None and best + tolerance < stream.threshold:
            stream = _BandStream(space, tolerance, keep, capacity, threshold=best + tolerance)
            _enumerate(space, stream, chunk)
        return stream.band(best, evaluated)
    except MemoryError:
        raise _out_of_memory(space, max_memory_gb) from None


def _enumerate(space: Space, stream: _BandStream, chunk: int) -> tuple[float, int]:
    """Evaluate every point: per combo, blocks of (pair, d_expert) rows against all expert counts."""
    j_lo, j_hi = space.expert_index_range
    widths = j_hi - j_lo + 1
    pair_of_j = np.repeat(np.arange(len(widths)), widths)
    j_all = np.repeat(j_lo, widths) + (np.arange(widths.sum()) - np.repeat(np.cumsum(widths) - widths, widths))
    i_max = space.expert_count_range[1]
    best, evaluated = np.inf, 0
    for combo in range(len(space.combos[0])):
        i_min = int(space.min_expert_index(space.combos[0][combo]))
        if i_min > i_max:
            continue
        i_values = np.arange(i_min, i_max + 1)
        step = max(1, chunk // len(i_values))
        for start in range(0, len(j_all), step):
            p, j = pair_of_j[start:start + step, None], j_all[start:start + step, None]
            ev = space.evaluate(p, combo, j, i_values[None, :])  # broadcast: row terms computed once per row
            evaluated += ev.feasible.size
            rows, cols = np.nonzero(ev.feasible)
            if len(rows) == 0:
                continue
            loss = ev.loss[rows, cols]
            best = min(best, float(loss.min()))
            flops = np.broadcast_to(ev.flops_per_token, ev.feasible.shape)[rows, cols]
            stream.add(p[rows, 0], np.full(len(rows), combo), j[rows, 0], i_values[cols], loss, flops, best)
    return best, evaluated
