"""`plan(request)`: budget -> buildable space -> exact optimum and band -> Optuna study -> `Plan`."""

from __future__ import annotations

import hashlib
import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from moeplan._version import __version__
from moeplan.errors import MoeplanError, UsageError
from moeplan.flops.architecture import Architecture
from moeplan.flops.conventions import Convention
from moeplan.flops.count import ParamCounts, count
from moeplan.jsonio import read_json
from moeplan.laws import get_law
from moeplan.cluster.report import ClusterPlan
from moeplan.laws.inputs import of_count
from moeplan.laws.model import Extrapolation, Law, Variable
from moeplan.planner.binding import Binding, binding_constraints
from moeplan.planner.lifetime import Lifetime
from moeplan.planner.pareto import ParetoFront
from moeplan.planner.request import PlanRequest
from moeplan.planner.robust import Robustness
from moeplan.planner.solve import enumerate_space, solve
from moeplan.planner.space import AXES, Space
from moeplan.planner.study import FINISHED, TRAINING_BYTES_PER_PARAM, close_storage, describe, run_study
from moeplan.store import DEFAULT_STORAGE

ALTERNATIVES = 7  # band members shown and recorded as trials besides the chosen plan


class Candidate(BaseModel):
    """One architecture of the space, summarised: its six axes (moeplan.planner.space.AXES) and, as in `Plan`,
    its loss, total and active parameters (all), tokens and training FLOPs per token."""

    model_config = ConfigDict(frozen=True)

    n_layers: int
    d_hidden: int
    d_expert: int
    n_experts: int
    top_k: int
    n_shared_experts: int
    loss: float
    total_params: int
    active_params: int
    tokens: float
    train_flops_per_token: float


class Plan(BaseModel):
    """A planned run: the architecture, its counts, its tokens, the predicted loss and how sure we are."""

    model_config = ConfigDict(frozen=True)

    moeplan_version: str = Field(description="moeplan version that made the plan")
    request: PlanRequest = Field(description="the request planned, every default filled in")
    law: str = Field(description="name of the loss law (moeplan laws)")
    law_constants: dict[str, float] = Field(description="the law's constants as used, published or fitted")
    law_constants_source: list[str] = Field(
        description="where the constants come from (paper tables, or the fit's file)")
    law_inputs: dict[str, float] = Field(description="the law's variables at the plan (moeplan.laws.inputs)")
    law_domain: str = Field(description="what extrapolation is checked against: the law's published fitted "
                                        "ranges, the ranges of the fit in --law-params, or none")
    convention: Convention = Field(
        description="FLOPs-per-token convention of train_flops_per_token and tokens (docs/counting.md)")
    compute: float = Field(description="training compute C in FLOPs (given, or converted from GPU-hours)")
    objective: str = Field(description="loss, efficient or pareto (PlanRequest.objective)")

    architecture: Architecture = Field(
        description="the planned model; moeplan export writes it as a config.json of request.family")
    total: ParamCounts = Field(
        description="all stored parameters under the three conventions (all, without input embedding, without both)")
    active: ParamCounts = Field(description="parameters one token uses, same three conventions")
    train_flops_per_token: float = Field(
        description="training FLOPs per token under `convention` (forward + backward)")
    tokens: float = Field(description="training tokens D = compute / train_flops_per_token")
    tokens_per_param: float = Field(description="tokens / all total parameters")
    tokens_per_active_param: float = Field(description="tokens / all active parameters")
    loss: float = Field(description="predicted final training loss (nats/token) of the law at N, N_a, D, G, S")
    loss_interval: tuple[float, float] | None = Field(
        None, description="95% interval of the predicted loss over the fit's bootstrap samples (--law-params)")
    activated_experts: float = Field(description="[HY] G = n_k + n_s")
    shared_ratio: float = Field(description="[HY] S = n_s / G")
    granularity: float = Field(description="[LING] G_L = 2 d_hidden / d_expert")
    activation_ratio: float = Field(description="[LING] A = (E_a + E_s)/(E + E_s)")
    total_over_active: float = Field(description="N / N_a, non-embedding")
    weight_memory_gb: float = Field(description="weights at request.bytes_per_param bytes per parameter (bf16: 2)")
    training_memory_gb: float = Field(description=f"{TRAINING_BYTES_PER_PARAM} bytes per parameter (mixed-precision Adam)")
    efficiency_leverage: float = Field(description="[LING] EL(A, G_L, C)")
    dense_equivalent_compute: float = Field(description="[LING] EL x C")
    ling_learning_rate: float = Field(description="[LING] suggested peak learning rate 1.1576 C^-0.1529")
    ling_batch_tokens: float = Field(description="[LING] suggested batch in tokens 0.0694 C^0.3644 (reconstructed)")

    band_tolerance: float = Field(description="loss tolerance of the near-optimal band")
    band_size: int = Field(description="configurations within band_tolerance of the best predicted loss")
    band_bounds: dict[str, tuple[int, int]] | None = Field(
        None, description="smallest and largest value of each architecture axis over the whole band")
    alternatives: list[Candidate] = Field(description="the best other configurations of the band, by predicted loss")
    seeds: list[Candidate] = Field(description="best configurations at the sympy-derived G*, S* (enqueued trials)")
    pareto_front: list[Candidate] | None = Field(
        None, description="objective pareto: the designs of the exact fronts (loss against total parameters and "
        "against serving FLOPs/token), as the study's best trials, by total parameters")
    binding: list[Binding] = Field(
        description="constraints and priors that stop the loss from going lower, with the neighbour that would")
    assumptions: list[str] = Field(description="every fixed choice behind the plan, in words")
    extrapolation: list[Extrapolation] = Field(
        description="law variables outside the range the law was fitted on, with the factor")
    law_warnings: list[str] = Field(default_factory=list, description="inputs the law's fit never saw vary")

    space_size: int = Field(description="configurations in the buildable space")
    points_evaluated: int = Field(description="configurations the branch and bound evaluated exactly")
    verified: bool = Field(description="whether --verify enumerated the whole space")
    regret: float | None = Field(
        None, description="plan loss minus the enumerated best loss (--verify); 0 certifies the optimum")
    certificate_points: int | None = Field(None, description="configurations enumerated by --verify")
    certificate_band_size: int | None = Field(None, description="band size found by enumeration (--verify)")

    study_name: str = Field(description="the Optuna study holding the plan's trials")
    storage: str = Field(description="the study's storage URL (:memory: keeps nothing)")
    trials: int = Field(description="finished trials in the study")
    interrupted: bool = Field(False, description="Ctrl-C stopped the study: the plan stands, the study is resumable")
    cluster: ClusterPlan | None = Field(None, description="layout, memory per device, speed and calendar (--gpus)")
    without_prior: Candidate | None = Field(
        None, description="what the law and the cluster pick with no tokens-per-parameter floor (--gpus)")

    # decisions (docs/decisions.md): set by --laws/--robust, --objective cost and --objective pareto
    robust: Robustness | None = Field(None, description="--laws/--robust: each law's optimum, the disagreement "
                                                        "table and the minimax-regret design")
    lifetime: Lifetime | None = Field(None, description="objective cost: the cheapest design over its life, "
                                                        "beside this (loss-optimal) plan trained to the same loss")
    pareto: ParetoFront | None = Field(None, description="objective pareto: the exact fronts over the whole space")


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


def _candidate(space: Space, point: tuple[int, int, int, int]) -> Candidate:
    values = {a: int(v) for a, v in space.values(*point).items()}
    d = describe(space, values)
    return Candidate(**values, loss=d["loss"], total_params=d["total_params"], active_params=d["active_params"],
                     tokens=d["tokens"], train_flops_per_token=d["train_flops_per_token"])


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
    best = _candidate(space, chosen)
    kept = [band.point(k) for k in range(min(len(band.loss), ALTERNATIVES + 1))]
    alternatives = [_candidate(space, p) for p in kept if p != chosen][:ALTERNATIVES]
    seed_candidates = [_candidate(space, s.point(0)) for s in seeds]

    name = request.study_name or study_name_for(request)
    proposals = [("seed", _axes(c)) for c in seed_candidates] + [("plan", _axes(best))]
    proposals += [("band", _axes(c)) for c in alternatives]
    multi = request.objective == "pareto"
    front = None
    if multi:  # the exact fronts are the study's trials (docs/decisions.md)
        front, study, interrupted = _record_pareto(space, name)
    else:
        study, interrupted = run_study(space, proposals, request.storage, name, request.trials, request.seed, multi,
                                       request.workers, request.resume)

    certificate = None
    if verify:
        certificate = enumerate_space(space, request.tolerance, keep=request.band_keep,
                                      max_memory_gb=request.max_memory_gb)
    arch = space.architecture_of(_axes(best))
    try:
        plan_ = _assemble(space, law, arch, best, band, alternatives, seed_candidates, study, evaluated, certificate,
                          name)
    finally:
        close_storage(study._storage)  # the store's connection ends with the call, not when it is collected
    if interrupted:
        plan_ = plan_.model_copy(update={"interrupted": True})
    if request.cluster is not None:
        from moeplan.cluster.planning import cluster_report

        plan_ = plan_.model_copy(update=cluster_report(space, arch, plan_.tokens, plan_.train_flops_per_token,
                                                       _without_prior(request, law, plan_.loss)))
    if samples:
        losses = [float(law.with_values(s, source="bootstrap").loss(plan_.law_inputs)) for s in samples]
        plan_ = plan_.model_copy(update={"loss_interval": tuple(np.percentile(losses, [2.5, 97.5]).tolist())})
    return plan_.model_copy(update=_decisions(space, best, front))


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


def _decisions(space: Space, best: Candidate, front) -> dict:
    """The sub-models of --laws/--robust (robust), objective cost (lifetime) and pareto."""
    from moeplan.planner.lifetime import lifetime_plan
    from moeplan.planner.robust import load_laws, robust_plan

    r = space.request
    out: dict = {"pareto": front}
    if r.laws or r.robust:
        out["robust"] = robust_plan(r, load_laws(r))
    if r.objective == "cost":
        out["lifetime"] = lifetime_plan(space, _axes(best), best.loss)
    return out


def _without_prior(request: PlanRequest, law: Law, prior_loss: float) -> Candidate | None:
    """The best point of the same space with (almost) no tokens-per-parameter floor: what the law and the
    cluster alone would pick. The prior's plan is feasible here too, so its loss starts as the incumbent."""
    from moeplan.planner.solve import branch_and_bound, bound_is_valid

    free = request.model_copy(update={"priors": request.priors.model_copy(update={"min_tokens_per_param": 1e-9})})
    space = Space(free, law)
    band = branch_and_bound(space, 0.0, incumbent=prior_loss) if bound_is_valid(space) else solve(space, 0.0)[0]
    return _candidate(space, band.point(0)) if len(band) else None


def _axes(c: Candidate) -> dict[str, int]:
    return {a: getattr(c, a) for a in AXES}


def _assemble(space, law, arch, best, band, alternatives, seeds, study, evaluated, certificate, name) -> Plan:
    r = space.request
    c = count(arch, r.convention)
    derived = describe(space, _axes(best))
    q = of_count(c, tokens=best.tokens)
    inputs = {k: float(v) for k, v in law.inputs(q).items()}
    ling = get_law("ling")
    el = float(ling.evaluate(A=q["A"], G_L=q["G_L"], C=r.compute))
    g, s = q["G"], q["S"]
    front = None
    if r.objective == "pareto":
        front = sorted((_trial_candidate(t) for t in study.best_trials if not t.user_attrs.get("violated")),
                       key=lambda x: (x.total_params, x.loss))
    trials = len(study.get_trials(deepcopy=False, states=FINISHED))
    return Plan(
        moeplan_version=__version__,
        request=r,
        law=law.name,
        law_constants=law.values,
        law_constants_source=sorted({k.source for k in law.constants}),
        law_inputs=inputs,
        law_domain=domain_source(r, law),
        convention=r.convention,
        compute=r.compute,
        objective=r.objective,
        architecture=arch,
        total=c.total,
        active=c.active,
        train_flops_per_token=c.train_flops_per_token,
        tokens=best.tokens,
        tokens_per_param=derived["tokens_per_param"],
        tokens_per_active_param=best.tokens / c.active.all,
        loss=best.loss,
        activated_experts=g,
        shared_ratio=s,
        granularity=q["G_L"],
        activation_ratio=q["A"],
        total_over_active=derived["total_over_active"],
        weight_memory_gb=r.bytes_per_param * c.total.all / 1e9,
        training_memory_gb=derived["training_memory_gb"],
        efficiency_leverage=el,
        dense_equivalent_compute=el * r.compute,
        ling_learning_rate=float(ling.evaluate("learning_rate", C=r.compute)),
        ling_batch_tokens=float(ling.evaluate("batch_tokens", C=r.compute)),
        band_tolerance=r.tolerance,
        band_size=len(band),
        band_bounds=band.bounds,
        alternatives=alternatives,
        seeds=seeds,
        pareto_front=front,
        binding=binding_constraints(space, _axes(best), best.loss),
        assumptions=assumptions(space),
        extrapolation=law.extrapolation(**inputs),
        law_warnings=[f"{v.name}: the fit saw only {v.name} = {v.domain[0]:.4g}; the plan's {v.name} = "
                      f"{inputs[v.name]:.4g} rests on constants those runs did not determine"
                      for v in law.variables if v.domain and v.domain[0] == v.domain[1] == inputs[v.name]],
        space_size=space.size,
        points_evaluated=evaluated,
        verified=certificate is not None,
        regret=None if certificate is None else best.loss - float(certificate.loss[0]),
        certificate_points=None if certificate is None else certificate.evaluated,
        certificate_band_size=None if certificate is None else len(certificate),
        study_name=name,
        storage=r.storage or DEFAULT_STORAGE,
        trials=trials,
    )


def _trial_candidate(t) -> Candidate:
    a = t.user_attrs
    return Candidate(**t.params, loss=t.values[0], total_params=int(a["total_params"]),
                     active_params=int(a["active_params"]), tokens=a["tokens"],
                     train_flops_per_token=a["train_flops_per_token"])
