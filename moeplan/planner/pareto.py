"""Exact Pareto fronts of predicted loss against total parameters (memory) and against serving FLOPs per
token over a whole `Space`, and their record as a multi-objective Optuna study (optuna-dashboard plots it).

Branch and bound on dominance: over a box every objective is at least its value at the box's lower corner
(counts and serving FLOPs grow with every size; the law's box bound bounds the loss), so a box whose
lower-corner vector is weakly dominated by a point already on the front holds nothing new and is dropped.
Box corners are real architectures: feasible ones join the front as they are met, which prunes early.
What survives down to single points is exactly the set of non-dominated feasible architectures (of points
equal in every objective, one). Tests check it against brute-force enumeration.

Why two fronts and not one of all three objectives: the three-way front is a surface holding ~4 % of a
small space (1,180 of 27,264 points) and millions of the default one. A point on either two-way front
is also on the three-way front (whatever beats it on all three beats it on two), so the study's trials,
the union of both, all lie on the three-way front: its two edges, which are what a planner reads.
"""

from __future__ import annotations

import warnings

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from moeplan.errors import MoeplanError
from moeplan.planner.designs import Design, summarise
from moeplan.planner.lifetime import serve_flops_per_token
from moeplan.planner.solve import bound_is_valid, enumerate_space, halve, initial_boxes, lower_bound
from moeplan.planner.space import AXES, Space

OBJECTIVES = ("predicted_loss", "total_params", "serve_flops_per_token")
FRONTS = {"memory": (0, 1), "serving": (0, 2)}  # each front: loss against one cost (columns of OBJECTIVES)


class FrontPoint(BaseModel):
    model_config = ConfigDict(frozen=True)

    design: Design
    serve_flops_per_token: float
    fronts: list[str] = Field(description="'memory': on the loss-total front; 'serving': on the loss-serving one")


class ParetoFront(BaseModel):
    """Every feasible architecture no other beats on both loss and total parameters, or on both loss and
    serving FLOPs per token."""

    model_config = ConfigDict(frozen=True)

    objectives: tuple[str, ...] = OBJECTIVES
    serve_context: int
    points: list[FrontPoint] = Field(description="sorted by total parameters, then loss")
    boxes_evaluated: int
    study_name: str | None = None


def dominated(vectors: np.ndarray, front: np.ndarray) -> np.ndarray:
    """Mask of rows (a, b) of `vectors` weakly dominated by a row of `front`: some front point has a' <= a and
    b' <= b, i.e. the least b' among front points with a' <= a is <= b (a sorted staircase: O(n log m))."""
    if len(front) == 0:
        return np.zeros(len(vectors), dtype=bool)
    order = np.argsort(front[:, 0], kind="stable")
    least_b = np.minimum.accumulate(front[order, 1])
    upto = np.searchsorted(front[order, 0], vectors[:, 0], side="right")
    return (upto > 0) & (least_b[np.maximum(upto - 1, 0)] <= vectors[:, 1])


def non_dominated(vectors: np.ndarray) -> np.ndarray:
    """Indices of the rows (a, b) no other row weakly dominates (of equal rows, the first): sorted by a then b,
    a row survives if its b is below every earlier row's."""
    order = np.lexsort((vectors[:, 1], vectors[:, 0]))
    b = vectors[order, 1]
    earlier = np.concatenate([[np.inf], np.minimum.accumulate(b)[:-1]])
    return np.sort(order[b < earlier])


def _objectives(space: Space, values: dict, ev, loss=None) -> np.ndarray:
    return np.stack([ev.loss if loss is None else loss, ev.total.astype(np.float64),
                     serve_flops_per_token(space, values)], axis=1)


def pareto_fronts(space: Space) -> ParetoFront:
    """Both exact fronts of `space` (loss-memory and loss-serving), as one list of points."""
    fronts = {name: exact_front(space, cols) for name, cols in FRONTS.items()}
    return _front(space, fronts)


def exact_front(space: Space, columns=(0, 1)) -> tuple[dict[str, np.ndarray], int]:
    """Axes of the exact front of `space` in two objectives `columns` (of OBJECTIVES), and boxes evaluated."""
    if not bound_is_valid(space):
        return enumerated_front(space, columns)
    columns = list(columns)
    front_vec = np.empty((0, len(columns)))
    front_axes = {a: np.empty(0, dtype=np.int64) for a in AXES}
    pair, combo, jl, jh, il, ih = initial_boxes(space)
    evaluated = 0
    while len(pair):
        lo_values, hi_values = space.values(pair, combo, jl, il), space.values(pair, combo, jh, ih)
        lo, hi = space.evaluate_values(lo_values), space.evaluate_values(hi_values)
        evaluated += 2 * len(pair)
        lo_vec = _objectives(space, lo_values, lo)[:, columns]
        hi_vec = _objectives(space, hi_values, hi)[:, columns]
        # corners are architectures: the feasible ones are front candidates now
        cand_vec = np.concatenate([front_vec, lo_vec[lo.feasible], hi_vec[hi.feasible]])
        cand_axes = {a: np.concatenate([front_axes[a], np.broadcast_to(lo_values[a], lo.loss.shape)[lo.feasible],
                                        np.broadcast_to(hi_values[a], hi.loss.shape)[hi.feasible]])
                     for a in AXES}
        keep = non_dominated(cand_vec)
        front_vec, front_axes = cand_vec[keep], {a: v[keep] for a, v in cand_axes.items()}

        bound = lo_vec.copy()
        if columns[0] == 0:
            bound[:, 0] = lower_bound(space, combo, lo, hi)
        leaf = (jl == jh) & (il == ih)
        # a box whose bound equals a front vector may only hold that point or points it weakly dominates
        split = ~leaf & space.box_may_be_feasible(lo, hi) & ~dominated(bound, front_vec)
        pair, combo, jl, jh, il, ih = halve(*(x[split] for x in (pair, combo, jl, jh, il, ih)))
    return front_axes, evaluated


def enumerated_front(space: Space, columns=(0, 1)) -> tuple[dict[str, np.ndarray], int]:
    """The front by brute force: every point of the space evaluated (the certificate, and laws without a bound)."""
    band = enumerate_space(space, np.inf, keep=space.size, max_memory_gb=space.request.max_memory_gb)
    values = space.values(band.pair, band.combo, band.j, band.i)
    values = {a: np.broadcast_to(np.asarray(v), band.loss.shape) for a, v in values.items()}
    keep = non_dominated(_objectives(space, values, space.evaluate_values(values))[:, list(columns)])
    return {a: v[keep] for a, v in values.items()}, band.evaluated


def _front(space: Space, fronts: dict[str, tuple[dict[str, np.ndarray], int]]) -> ParetoFront:
    on: dict[tuple, list[str]] = {}
    for name, (axes, _) in fronts.items():
        for row in zip(*(axes[a] for a in AXES), strict=True):
            on.setdefault(tuple(int(x) for x in row), []).append(name)
    if not on:
        raise MoeplanError("no buildable configuration for this request")
    axes = {a: np.array([key[k] for key in on]) for k, a in enumerate(AXES)}
    ev = space.evaluate_values(axes)
    serve = serve_flops_per_token(space, axes)
    designs = summarise(axes, ev)
    points = sorted((FrontPoint(design=d, serve_flops_per_token=float(s), fronts=on[tuple(d.axes.values())])
                     for d, s in zip(designs, serve, strict=True)),
                    key=lambda p: (p.design.total_params, p.design.loss, p.serve_flops_per_token))
    return ParetoFront(serve_context=space.request.context, points=points,
                       boxes_evaluated=sum(n for _, n in fronts.values()))


def record_front(space: Space, front: ParetoFront, storage_url: str | None, name: str):
    """A three-objective study whose trials are the front (optuna-dashboard draws its Pareto-front plot)."""
    import optuna

    from moeplan.planner.study import add_trials, distributions, open_storage

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = open_storage(storage_url)
    dists = {a: optuna.distributions.IntDistribution(lo, hi, step=step)
             for a, (lo, hi, step) in distributions(space).items()}
    try:
        study = optuna.create_study(storage=storage, study_name=name, directions=["minimize"] * 3)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage)
        if study.user_attrs.get("front") and study.user_attrs.get("request") == space.request.model_dump(mode="json"):
            return study  # the same request made it: the front is already there
        raise MoeplanError(f"study {name!r} already exists and holds something else; give another --study") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(OBJECTIVES))
        study.set_user_attr("request", space.request.model_dump(mode="json"))
        study.set_user_attr("law", space.law.name)
        study.set_user_attr("front", "exact: every trial is a non-dominated architecture of the whole space")
        trials = []
        for p in front.points:  # attributes from the vectorised counts (equal to the layer-wise counter's)
            d = p.design
            g = d.top_k + d.n_shared_experts
            attrs = {"role": "front", "fronts": p.fronts, "violated": [], "total_params": d.total_params,
                     "active_params": d.active_params, "law_N": d.law_N, "law_N_a": d.law_N_a, "tokens": d.tokens,
                     "train_flops_per_token": d.train_flops_per_token, "activated_experts_G": g,
                     "shared_ratio_S": d.n_shared_experts / g, "tokens_per_param": d.tokens / d.total_params}
            trials.append(optuna.trial.create_trial(
                params=d.axes, distributions=dists, user_attrs=attrs,
                values=[d.loss, float(d.total_params), p.serve_flops_per_token]))
        add_trials(study, trials)  # one transaction on an SQL store, not one per point
    except BaseException:
        optuna.delete_study(study_name=name, storage=storage)  # never leave a half-written study
        raise
    return study
