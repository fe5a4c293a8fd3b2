"""Lifetime cost: training plus serving FLOPs, after Sardana et al. 2024, "Beyond Chinchilla-Optimal"
(arXiv 2401.00448): pick the architecture AND the training tokens that reach a target loss for the fewest
FLOPs over the model's life, training FLOPs + serving FLOPs/token x tokens served.

Sardana et al. count 6N per training token and 2N per served token; here both come from the exact counter:
training FLOPs/token under the request's convention, and serving FLOPs/token the forward pass of one
decoded token: 2 x matmul weights it touches (active experts, attention projections, router, LM head)
plus QK^T and AV against `serve_context` cached keys (the window on sliding-window layers).

The search is exact over (architecture, D): for each architecture the law gives the fewest tokens D that
reach the target (1-D root finding: loss falls as D grows), raised to the request's tokens-per-parameter
floor; branch and bound over the space's boxes prunes with the law's box bound evaluated at common D
(the smallest D any point of a box can need) and the counts at the box's lower corner.
"""

from __future__ import annotations

from dataclasses import replace


import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from moeplan.errors import MoeplanError
from moeplan.flops import formulas as f
from moeplan.flops.conventions import Convention
from moeplan.flops.vectorised import count_arrays
from moeplan.planner.designs import Design, summarise
from moeplan.planner.solve import bound_is_valid, halve, initial_boxes, lower_bound, with_tokens
from moeplan.planner.space import AXES, Evaluation, Space

KV_BYTES = 2  # bf16 key/value cache
LOG_TOKENS = (np.log(1e3), np.log(1e20))  # bracket for the root finding on D
BISECTIONS = 60  # halvings of a 39.1-nat bracket: D to 3e-17 relative, below float64's own rounding


def serve_flops_per_token(space: Space, values: dict) -> np.ndarray:
    """Forward FLOPs of one served token at the request's context: 2·(matmul weights touched) + 2·n_h·(d_qk+d_v)
    per cached key and layer (exact convention, docs/science.md section 1)."""
    arrays = space.architecture_arrays(values)
    c = count_arrays(space.template, Convention.EXACT, True, **arrays)
    matmul = sum(v for k, v in c.train_flops_by_component().items() if k != "attention_scores") / 3
    t = space.template
    ctx = space.request.context
    sliding = len(t.sliding_layers)
    window = min(ctx, t.sliding_window) if t.sliding_window else ctx
    keys = (np.asarray(arrays["n_layers"]) - sliding) * ctx + sliding * window
    return matmul + 2 * np.asarray(arrays["n_heads"]) * (f.d_qk(t) + f.d_v(t)) * keys


def kv_cache_bytes_per_token(space: Space, values: dict) -> np.ndarray:
    """Cached bytes per token over all layers: keys and values of every kv head (GQA), or MLA's compressed
    latent plus its rope key (DeepSeek-V2), at KV_BYTES per number."""
    t = space.template
    layers = np.asarray(space.architecture_arrays(values)["n_layers"])
    if t.mla is not None:
        per_layer = t.mla.kv_lora_rank + t.mla.qk_rope_head_dim
    else:
        per_layer = 2 * np.asarray(space.architecture_arrays(values)["n_kv_heads"]) * t.d_head
    return layers * per_layer * KV_BYTES


def _bisect_tokens(loss_at, target: float, n: int) -> np.ndarray:
    """Fewest tokens D with loss_at(D) <= target, per element (loss_at falls as D grows); inf if none does."""
    lo, hi = np.full(n, LOG_TOKENS[0]), np.full(n, LOG_TOKENS[1])
    reachable = loss_at(np.exp(hi)) <= target
    done = loss_at(np.exp(lo)) <= target
    for _ in range(BISECTIONS):
        mid = (lo + hi) / 2
        ok = loss_at(np.exp(mid)) <= target
        hi, lo = np.where(ok, mid, hi), np.where(ok, lo, mid)
    return np.where(done, np.exp(LOG_TOKENS[0]), np.where(reachable, np.exp(hi), np.inf))


def at_tokens(space: Space, values: dict, tokens) -> Evaluation:
    """The architectures given by `values`, each trained on its own `tokens`: counts, tokens and loss."""
    ev = space.evaluate_values(values)
    trained = with_tokens(space, ev, np.broadcast_to(np.asarray(tokens, dtype=np.float64), np.shape(ev.tokens)))
    return replace(trained, loss=np.broadcast_to(space.law.loss(trained.inputs), np.shape(ev.tokens)))


def tokens_to_reach(space: Space, values: dict, target: float) -> np.ndarray:
    """Fewest tokens at which each architecture's predicted loss reaches `target` (root finding on the law)."""
    n = len(np.atleast_1d(values[AXES[0]]))
    return _bisect_tokens(lambda d: at_tokens(space, values, d).loss, target, n)


class LifetimeCost(BaseModel):
    """One design trained to the target and served: its FLOPs over its life."""

    model_config = ConfigDict(frozen=True)

    design: Design = Field(description="tokens and loss at the training length that reaches the target")
    train_flops: float
    serve_flops_per_token: float
    serve_flops: float
    lifetime_flops: float
    kv_cache_bytes_per_token: float


class Lifetime(BaseModel):
    """The cheapest design over its life, beside the loss-optimal plan trained to the same loss."""

    model_config = ConfigDict(frozen=True)

    serve_tokens: float
    serve_context: int
    target_loss: float
    target_source: str
    cheapest: LifetimeCost
    loss_plan: LifetimeCost
    saving: float = Field(description="1 - cheapest / loss plan lifetime FLOPs")
    boxes_evaluated: int


def lifetime_cost(space: Space, axes: dict[str, int], target: float) -> LifetimeCost:
    """Lifetime FLOPs of one architecture trained to `target` (tokens raised to the space's floor)."""
    r = space.request
    values = {a: np.array([axes[a]]) for a in AXES}
    tokens = float(tokens_to_reach(space, values, target)[0])
    total = float(space.evaluate_values(values).total[0])
    tokens = max(tokens, r.priors.min_tokens_per_param * total)
    if not np.isfinite(tokens):
        raise MoeplanError(f"the design {axes} never reaches loss {target:.4f} under law {space.law.name}")
    design = summarise(values, at_tokens(space, values, tokens))[0]
    per_token = float(serve_flops_per_token(space, values)[0])
    train = design.train_flops_per_token * tokens
    serve = per_token * (r.serve_tokens or 0.0)
    return LifetimeCost(design=design, train_flops=train, serve_flops_per_token=per_token, serve_flops=serve,
                        lifetime_flops=train + serve,
                        kv_cache_bytes_per_token=float(kv_cache_bytes_per_token(space, values)[0]))


def cheapest_design(space: Space, target: float, incumbent: float = np.inf) -> tuple[dict[str, int] | None, int]:
    """Branch and bound over (architecture, D): the architecture of least lifetime FLOPs reaching `target`."""
    if not bound_is_valid(space):
        raise MoeplanError(f"objective cost needs a box bound, and law {space.law.name!r} has none (moeplan laws "
                           "says which laws do)")
    r = space.request
    serve_tokens = r.serve_tokens or 0.0
    floor = r.priors.min_tokens_per_param
    pair, combo, jl, jh, il, ih = initial_boxes(space)
    best, evaluated = None, 0
    while len(pair):
        lo, hi = space.evaluate(pair, combo, jl, il), space.evaluate(pair, combo, jh, ih)
        evaluated += 2 * len(pair)

        def bound_at(d, lo=lo, hi=hi, combo=combo):
            return lower_bound(space, combo, with_tokens(space, lo, d), with_tokens(space, hi, d))

        tokens = np.maximum(_bisect_tokens(bound_at, target, len(pair)), floor * lo.total)
        serve = serve_flops_per_token(space, space.values(pair, combo, jl, il))
        cost = lo.flops_per_token * tokens + serve * serve_tokens
        ok = np.isfinite(cost)
        if r.params_cap is not None:
            ok &= lo.total <= r.params_cap
        if r.max_tokens is not None:
            ok &= tokens <= r.max_tokens
        leaf = (jl == jh) & (il == ih)
        at_leaf = ok & leaf  # at a single point the bound is the law's loss: `cost` is the point's own
        if at_leaf.any():
            k = int(np.flatnonzero(at_leaf)[np.argmin(cost[at_leaf])])
            if cost[k] < incumbent:
                incumbent = float(cost[k])
                best = {a: int(v) for a, v in space.values(pair[k], combo[k], jl[k], il[k]).items()}
        split = ok & ~leaf & (cost <= incumbent * (1 + 1e-12))
        pair, combo, jl, jh, il, ih = halve(*(x[split] for x in (pair, combo, jl, jh, il, ih)))
    return best, evaluated


def lifetime_plan(space: Space, loss_plan_axes: dict[str, int], loss_plan_loss: float) -> Lifetime:
    """Objective `cost`: the cheapest design over its life reaching `target_loss` (default: the loss plan's loss)."""
    r = space.request
    target = r.target_loss if r.target_loss is not None else loss_plan_loss
    source = "--target-loss" if r.target_loss is not None else "the loss-optimal plan's predicted loss"
    reference = lifetime_cost(space, loss_plan_axes, target)
    best, evaluated = cheapest_design(space, target, incumbent=reference.lifetime_flops)
    cheapest = reference if best is None else lifetime_cost(space, best, target)
    if cheapest.lifetime_flops > reference.lifetime_flops:  # rounding in the bound: never report worse
        cheapest = reference
    return Lifetime(serve_tokens=r.serve_tokens or 0.0, serve_context=r.context, target_loss=target,
                    target_source=source, cheapest=cheapest, loss_plan=reference,
                    saving=1 - cheapest.lifetime_flops / reference.lifetime_flops, boxes_evaluated=evaluated)
