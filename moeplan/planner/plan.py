"""`plan(request)`: budget -> buildable space -> exact optimum and band -> Optuna study -> `Plan`."""

from __future__ import annotations

import hashlib
import math

import numpy as np

from moeplan._version import __version__
from moeplan.errors import MoeplanError, UsageError
from moeplan.flops.count import count
from moeplan.jsonio import read_json
from moeplan.laws import get_law
from moeplan.laws.inputs import of_count
from moeplan.laws.model import Law, Variable
from moeplan.planner.binding import binding_constraints
from moeplan.planner.designs import Design
from moeplan.planner.request import PlanRequest
from moeplan.planner.result import Allocation, Counts, LawPrediction, Plan, Search, Training
from moeplan.planner.solve import enumerate_space, solve
from moeplan.planner.space import Space
from moeplan.planner.study import FINISHED, close_storage, describe, run_study
from moeplan.store import DEFAULT_STORAGE

ALTERNATIVES = 7  # band members shown and recorded as trials besides the chosen plan


def load_law(request: PlanRequest) -> Law:
    """The request's law, with fitted constants from `law_params` if given."""
    return law_and_samples(request)[0]


def law_and_samples(request: PlanRequest) -> tuple[Law, list[dict[str, float]]]:
    """The request's law and the fit's bootstrap samples of its constants (empty without --law-params).

    Fitted constants replace all of the law's constants or none: a partial set, a value that is not a finite
    number, or an exponent outside the range `moeplan fit` allows (a negative one makes the loss grow with the
    model) is refused in one line rather than planned with.

    With --law-params the law's fitted domain becomes the ranges the fit saw (`fit` stores them), so
    extrapolation is measured from the fit's own runs; a file without ranges leaves no domain to check.
    """
    law = get_law(request.law)
    if request.law_params is None:
        return law, []
    where = request.law_params
    data = read_json(where)
    if get_law(data.get("law", law.name)).name != law.name:
        raise MoeplanError(f"{where} holds constants of law {data.get('law')!r}, not {law.name!r}")
    constants = data.get("constants")
    if not isinstance(constants, dict) or not constants:
        raise MoeplanError(f"{where}: no 'constants' object")
    missing = [n for n in law.constant_names if n not in constants]
    unknown = sorted(set(constants) - set(law.constant_names))
    if missing or unknown:
        what = (f"lacks {', '.join(missing)}" if missing
                else f"has constants law {law.name!r} does not: {', '.join(unknown)}")
        raise MoeplanError(f"{where}: fitted constants must replace all of law {law.name!r}'s constants; it {what}")
    problem = _unphysical(law, constants)
    if problem:
        raise MoeplanError(f"{where}: {problem}")
    source = data.get("source", f"fitted, {where}")
    fitted = law.with_values({k: float(v) for k, v in constants.items()}, source=str(source))
    fitted = fitted.model_copy(update={"variables": _fitted_domain(fitted, data.get("ranges"), where)})
    samples = data.get("bootstrap") or []
    return fitted, [s for s in samples if isinstance(s, dict) and set(s) == set(fitted.constant_names)
                    and _unphysical(law, s) is None]


def _unphysical(law: Law, constants: dict) -> str | None:
    """Why these constants cannot be planned with, or None."""
    from moeplan.laws.fit import SIGN_BOUNDS

    for c in law.constants:
        value = constants[c.name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"constant {c.name} must be a finite number, not {value!r}"
        low, high = SIGN_BOUNDS["positive"]
        if c.sign == "positive" and not low <= value <= high:  # an exponent: negative, the loss grows with size
            return f"exponent {c.name}={value:g} is outside [{low:g}, {high:g}], the range moeplan fit allows"
    return None


def _fitted_domain(law: Law, ranges, path: str) -> tuple[Variable, ...]:
    """The law's variables with the fit's observed [min, max] as their domain (None where not recorded)."""
    ranges = ranges if isinstance(ranges, dict) else {}
    out = []
    for v in law.variables:
        r = ranges.get(v.name)
        try:
            domain = (float(r[0]), float(r[1])) if r is not None else None
        except (TypeError, ValueError, IndexError, KeyError):
            raise MoeplanError(f"{path}: ranges.{v.name} must be [low, high]") from None
        out.append(v.model_copy(update={"domain": domain}))
    return tuple(out)


def domain_source(request: PlanRequest, law: Law) -> str:
    """What the plan's extrapolation is measured against, in words."""
    if not any(v.domain for v in law.variables):
        return ("none: " + ("the fit file records no ranges (refit with this moeplan)" if request.law_params
                            else f"law {law.name!r} publishes no fitted ranges"))
    return f"the ranges of the fit in {request.law_params}" if request.law_params else \
        f"law {law.name!r}'s published fitted ranges"


def study_name_for(request: PlanRequest) -> str:
    # how the search runs (memory, band members kept) does not change the plan, so not the study either
    key = request.model_dump_json(exclude={"storage", "study_name", "trials", "workers", "resume", "band_keep",
                                           "max_memory_gb"})
    return f"moeplan-{request.compute:.3g}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def _design(space: Space, point: tuple[int, int, int, int]) -> Design:
    """The `Design` of one point, counted by the layer-wise counter (as the study's trials are)."""
    values = {a: int(v) for a, v in space.values(*point).items()}
    d = describe(space, values)
    return Design(**values, **{k: d[k] for k in Design.model_fields if k in d})


def _infeasible(space: Space) -> MoeplanError:
    """Name the constraints that no buildable configuration satisfies on its own, or say they conflict."""
    r, p = space.request, space.request.priors
    pairs = np.arange(len(space.pairs[0]))
    j_lo, j_hi = space.expert_index_range
    smallest = space.evaluate(pairs, 0, j_lo, 1)
    i_max = space.expert_count_range[1]
    largest = space.evaluate(pairs, len(space.combos[0]) - 1, j_hi, i_max)
    reasons = []
    best_ratio = float(np.max(smallest.tokens / smallest.total))
    if best_ratio < p.min_tokens_per_param:
        reasons.append(f"the budget {r.compute:.3g} FLOPs gives at most {best_ratio:.3g} tokens per parameter even "
                       f"to the smallest buildable model, below the floor of {p.min_tokens_per_param:g}")
    if r.params_cap is not None and smallest.total.min() > r.params_cap:
        reasons.append(f"the smallest buildable model has {smallest.total.min():.4g} parameters, above the cap "
                       f"of {r.params_cap:.4g}")
    if r.max_tokens is not None and largest.tokens.min() > r.max_tokens:
        reasons.append(f"even the largest buildable model needs {largest.tokens.min():.4g} tokens to spend the "
                       f"budget, above the {r.max_tokens:.4g} available")
    if not reasons:
        caps = [c.label for c in space.count_constraints]
        reasons.append("no buildable configuration satisfies all of: " + ", ".join(caps))
    return MoeplanError("no buildable model fits: " + "; ".join(reasons))


def assumptions(space: Space) -> list[str]:
    r, p = space.request, space.request.priors
    return [
        f"law {space.law.name} ({', '.join(sorted({c.source for c in space.law.constants}))}); "
        f"FLOPs convention {r.convention.value}, causal; seq {r.seq_len}, vocab {r.vocab_size}, "
        f"tied embeddings {r.tie_embeddings}",
        f"attention: d_head {r.d_head}, {r.gqa_group} query heads per kv head; d_hidden multiple of {r.d_hidden_step}, "
        f"d_expert multiple of {r.expert_align}",
        f"parallelism: tensor {r.tensor_parallel}, expert {r.expert_parallel} (n_experts multiple), "
        f"pipeline {r.pipeline_parallel} (layers multiple)",
        f"shared experts of width d_expert; leading dense layers {p.dense_layers} "
        f"(FFN {p.dense_ffn_ratio:g} x d_hidden)",
        "constraints (moeplan.planner.constraints): " + "; ".join(c.label for c in space.constraints),
    ]


def plan(request: PlanRequest, verify: bool = False) -> Plan:
    """The buildable MoE with the lowest predicted loss for `request`, certified exact by construction."""
    if not isinstance(request, PlanRequest):
        raise UsageError(f"plan() takes a PlanRequest, not {type(request).__name__}")
    law, samples = law_and_samples(request)
    check_plannable(law)
    space = Space(request, law)
    try:  # the axes themselves can be too large for memory when priors are set absurdly wide
        space.check()
        if request.cluster is not None:
            from moeplan.cluster.planning import layout_problem

            problem = layout_problem(request)
            if problem:
                raise MoeplanError(problem)
        band, seeds, evaluated = solve(space, request.tolerance, keep=request.band_keep,
                                       max_memory_gb=request.max_memory_gb)
    except MemoryError:
        raise MoeplanError("the buildable space's axes do not fit in memory: narrow the priors") from None
    if len(band) == 0:
        if request.cluster is not None:
            from moeplan.cluster.planning import infeasible_on_cluster

            raise infeasible_on_cluster(space) or _infeasible(space)
        raise _infeasible(space)

    # efficient: the cheapest FLOPs/token within the tolerance, ties by loss (tracked over the whole band)
    chosen = band.cheapest if request.objective == "efficient" else band.point(0)
    best = _design(space, chosen)
    kept = [band.point(k) for k in range(min(len(band.loss), ALTERNATIVES + 1))]
    alternatives = [_design(space, p) for p in kept if p != chosen][:ALTERNATIVES]
    seed_designs = [_design(space, s.point(0)) for s in seeds]

    name = request.study_name or study_name_for(request)
    front = None
    if request.objective == "pareto":  # the exact fronts are the study's trials (docs/decisions.md)
        front, study, interrupted = _record_pareto(space, name)
    else:
        proposals = [("seed", c.axes) for c in seed_designs] + [("plan", best.axes)]
        proposals += [("band", c.axes) for c in alternatives]
        study, interrupted = run_study(space, proposals, request.storage, name, request.trials, request.seed, False,
                                       request.workers, request.resume)

    try:
        trials = len(study.get_trials(deepcopy=False, states=FINISHED))
    finally:
        close_storage(study._storage)  # the store's connection ends with the call, not when it is collected

    certificate = None
    if verify:
        certificate = enumerate_space(space, request.tolerance, keep=request.band_keep,
                                      max_memory_gb=request.max_memory_gb)
    arch = space.architecture_of(best.axes)
    c = count(arch, request.convention)
    derived = describe(space, best.axes)
    q = of_count(c, tokens=best.tokens)
    compute, cluster = request.compute, {}
    if request.cluster is not None:
        from moeplan.cluster.planning import cluster_report, days_budget

        cluster = {"cluster": cluster_report(space, arch, best.tokens),
                   "without_prior": _without_prior(request, law, best.loss)}
        if days_budget(request):  # the budget is the calendar: the plan reports the compute it spends
            compute = best.tokens * best.train_flops_per_token
    search = Search(
        space_size=space.size,
        points_evaluated=evaluated,
        assumptions=assumptions(space),
        binding=binding_constraints(space, best.axes, best.loss),
        band_size=len(band),
        band_bounds=band.bounds,
        alternatives=alternatives,
        seeds=seed_designs,
        verified=certificate is not None,
        regret=None if certificate is None else best.loss - float(certificate.loss[0]),
        certificate_points=None if certificate is None else certificate.evaluated,
        certificate_band_size=None if certificate is None else len(certificate),
        study_name=name,
        storage=request.storage or DEFAULT_STORAGE,
        trials=trials,
        interrupted=interrupted,
    )
    return Plan(
        moeplan_version=__version__,
        request=request,
        architecture=arch,
        counts=Counts(
            total=c.total,
            active=c.active,
            train_flops_per_token=c.train_flops_per_token,
            activated_experts=q["G"],
            shared_ratio=q["S"],
            granularity=q["G_L"],
            activation_ratio=q["A"],
            total_over_active=derived["total_over_active"],
            weight_memory_gb=request.bytes_per_param * c.total.all / 1e9,
            training_memory_gb=derived["training_memory_gb"],
        ),
        training=_training(request, compute, best, derived),
        law=_law_prediction(request, law, samples, q, best.loss),
        search=search,
        **cluster,
        **_decisions(space, best, front),
    )


def _training(request: PlanRequest, compute: float, best: Design, derived: dict) -> Training:
    ling = get_law("ling")
    return Training(
        compute=compute,
        tokens=best.tokens,
        tokens_per_param=derived["tokens_per_param"],
        tokens_per_active_param=best.tokens / best.active_params,
        ling_learning_rate=float(ling.evaluate("learning_rate", C=request.compute)),
        ling_batch_tokens=float(ling.evaluate("batch_tokens", C=request.compute)),
        allocations=allocations(compute),
    )


def allocations(compute: float) -> list[Allocation]:
    """[HOL] Eq. 2 and [LING]'s MoE allocation at `compute`: D_opt and M_opt (docs/science.md sections 4, 5)."""
    hol, ling = get_law("hol"), get_law("ling")
    return [Allocation(law="hol", source="[HOL] Eq. 2", tokens=float(hol.evaluate(C=compute)),
                       flops_per_token=float(hol.evaluate("flops_per_token", C=compute)),
                       fitted_range=hol.variables[0].domain),
            Allocation(law="ling", source="[LING] MoE", tokens=float(ling.evaluate("moe_tokens", C=compute)),
                       flops_per_token=float(ling.evaluate("moe_flops_per_token", C=compute)), fitted_range=None)]


def _law_prediction(request: PlanRequest, law: Law, samples: list[dict[str, float]], q: dict,
                    loss: float) -> LawPrediction:
    inputs = {k: float(v) for k, v in law.inputs(q).items()}
    interval = None
    if samples:
        losses = [float(law.with_values(s, source="bootstrap").loss(inputs)) for s in samples]
        interval = tuple(np.percentile(losses, [2.5, 97.5]).tolist())
    el = float(get_law("ling").evaluate(A=q["A"], G_L=q["G_L"], C=request.compute))
    return LawPrediction(
        name=law.name,
        constants=law.values,
        constants_source=sorted({k.source for k in law.constants}),
        inputs=inputs,
        domain=domain_source(request, law),
        loss=loss,
        loss_interval=interval,
        extrapolation=law.extrapolation(**inputs),
        warnings=[f"{v.name}: the fit saw only {v.name} = {v.domain[0]:.4g}; the plan's {v.name} = "
                  f"{inputs[v.name]:.4g} rests on constants those runs did not determine"
                  for v in law.variables if v.domain and v.domain[0] == v.domain[1] == inputs[v.name]],
        efficiency_leverage=el,
        dense_equivalent_compute=el * request.compute,
    )


def check_plannable(law: Law) -> None:
    """Refuse, in one line, a law the planner cannot score architectures with (the law protocol's `can_score`)."""
    why = law.can_score()
    if why is not None:
        raise MoeplanError(why)


def _record_pareto(space: Space, name: str):
    from moeplan.planner.pareto import pareto_fronts, record_front

    front = pareto_fronts(space)
    study = record_front(space, front, space.request.storage, name)
    return front.model_copy(update={"study_name": name}), study, False


def _decisions(space: Space, best: Design, front) -> dict:
    """The sub-models of --laws/--robust (robust), objective cost (lifetime) and pareto."""
    from moeplan.planner.lifetime import lifetime_plan
    from moeplan.planner.robust import load_laws, robust_plan

    r = space.request
    out: dict = {"pareto": front}
    if r.laws or r.robust:
        out["robust"] = robust_plan(r, load_laws(r))
    if r.objective == "cost":
        out["lifetime"] = lifetime_plan(space, best.axes, best.loss)
    return out


def _without_prior(request: PlanRequest, law: Law, prior_loss: float) -> Design | None:
    """The best point of the same space with (almost) no tokens-per-parameter floor: what the law and the
    cluster alone would pick. The prior's plan is feasible here too, so its loss starts as the incumbent."""
    from moeplan.planner.solve import branch_and_bound, bound_is_valid

    free = request.model_copy(update={"priors": request.priors.model_copy(update={"min_tokens_per_param": 1e-9})})
    space = Space(free, law)
    band = branch_and_bound(space, 0.0, incumbent=prior_loss) if bound_is_valid(space) else solve(space, 0.0)[0]
    return _design(space, band.point(0)) if len(band) else None
