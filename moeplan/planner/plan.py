"""`plan(request)`: budget -> buildable space -> exact optimum and band -> Optuna study -> `Plan`."""

from __future__ import annotations

import hashlib
import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from moeplan import __version__
from moeplan.errors import MoeplanError, UsageError
from moeplan.flops.architecture import Architecture
from moeplan.flops.conventions import Convention
from moeplan.flops.count import ParamCounts, count
from moeplan.jsonio import read_json
from moeplan.laws import get_law
from moeplan.laws.model import Extrapolation, Law
from moeplan.planner.binding import Binding, binding_constraints
from moeplan.planner.request import PlanRequest
from moeplan.planner.solve import Band, enumerate_space, solve
from moeplan.planner.space import AXES, Space
from moeplan.planner.study import FINISHED, TRAINING_BYTES_PER_PARAM, describe, run_study
from moeplan.store import DEFAULT_STORAGE

ALTERNATIVES = 7  # band members shown and recorded as trials besides the chosen plan


class Candidate(BaseModel):
    """One architecture of the space, summarised: its six axes and what the planner derives from them."""

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

    moeplan_version: str
    request: PlanRequest
    law: str
    law_constants: dict[str, float]
    law_constants_source: list[str]
    convention: Convention
    compute: float
    objective: str

    architecture: Architecture
    total: ParamCounts
    active: ParamCounts
    train_flops_per_token: float
    tokens: float
    tokens_per_param: float
    tokens_per_active_param: float
    loss: float
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

    band_tolerance: float
    band_size: int = Field(description="configurations within band_tolerance of the best predicted loss")
    alternatives: list[Candidate]
    seeds: list[Candidate] = Field(description="best configurations at the sympy-derived G*, S* (enqueued trials)")
    pareto_front: list[Candidate] | None = None
    binding: list[Binding]
    assumptions: list[str]
    extrapolation: list[Extrapolation]

    space_size: int
    points_evaluated: int
    verified: bool
    regret: float | None = None
    certificate_points: int | None = None
    certificate_band_size: int | None = None

    study_name: str
    storage: str
    trials: int
    interrupted: bool = Field(False, description="Ctrl-C stopped the study: the plan stands, the study is resumable")


def load_law(request: PlanRequest) -> Law:
    """The request's law, with fitted constants from `law_params` if given."""
    return law_and_samples(request)[0]


def law_and_samples(request: PlanRequest) -> tuple[Law, list[dict[str, float]]]:
    """The request's law and the fit's bootstrap samples of its constants (empty without --law-params).

    Fitted constants replace all of the law's constants or none: a partial set, a value that is not a finite
    number, or an exponent outside the range `moeplan fit` allows (a negative one makes the loss grow with the
    model) is refused in one line rather than planned with.
    """
    law = get_law(request.law)
    if request.law_params is None:
        return law, []
    where = request.law_params
    data = read_json(where)
    if data.get("law", law.name) != law.name:
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
    samples = data.get("bootstrap") or []
    return fitted, [s for s in samples if isinstance(s, dict) and set(s) == set(fitted.constant_names)
                    and _unphysical(law, s) is None]


def _unphysical(law: Law, constants: dict) -> str | None:
    """Why these constants cannot be planned with, or None."""
    from moeplan.laws.fit import EXPONENT_BOUNDS, EXPONENTS, POSITIVE_EXPONENT_LAWS

    for name in law.constant_names:
        value = constants[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"constant {name} must be a finite number, not {value!r}"
        low, high = EXPONENT_BOUNDS
        if law.form in POSITIVE_EXPONENT_LAWS and name in EXPONENTS and not low <= value <= high:
            return f"exponent {name}={value:g} is outside [{low:g}, {high:g}], the range moeplan fit allows"
    return None


def study_name_for(request: PlanRequest) -> str:
    key = request.model_dump_json(exclude={"storage", "study_name", "trials", "workers", "resume"})
    return f"moeplan-{request.compute:.3g}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def _candidate(space: Space, band: Band, k: int) -> Candidate:
    values = {a: int(v) for a, v in space.values(*band.point(k)).items()}
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
        caps = [f"tokens >= {p.min_tokens_per_param:g} x parameters"]
        caps += [f"total parameters <= {r.params_cap:.4g}"] if r.params_cap is not None else []
        caps += [f"tokens <= {r.max_tokens:.4g}"] if r.max_tokens is not None else []
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
        f"layers in [{p.min_layers}, {p.max_layers}], d_hidden in [{p.min_d_hidden}, {p.max_d_hidden}], "
        f"d_hidden/layers in [{p.min_aspect:g}, {p.max_aspect:g}], d_expert/d_hidden in "
        f"[{p.min_expert_ratio:g}, {p.max_expert_ratio:g}]",
        f"n_experts <= {p.max_experts}, top_k <= {p.max_top_k}, shared experts <= {p.max_shared} (width d_expert), "
        f"leading dense layers {p.dense_layers}",
        f"tokens >= {p.min_tokens_per_param:g} x total parameters"
        + (f"; total parameters <= {r.params_cap:.4g}" if r.params_cap else "")
        + (f"; tokens <= {r.max_tokens:.4g} (never more than one epoch)" if r.max_tokens else ""),
    ]


def plan(request: PlanRequest, verify: bool = False) -> Plan:
    """The buildable MoE with the lowest predicted loss for `request`, certified exact by construction."""
    if not isinstance(request, PlanRequest):
        raise UsageError(f"plan() takes a PlanRequest, not {type(request).__name__}")
    law, samples = law_and_samples(request)
    if law.form != "hy":
        raise MoeplanError(f"planning needs the [HY] form (hy, or constants fitted to it); law {law.name!r} is for "
                           "moeplan predict and fit")
    space = Space(request, law)
    space.check()

    band, seeds, evaluated = solve(space, request.tolerance)
    if len(band) == 0:
        raise _infeasible(space)

    chosen = 0
    if request.objective == "efficient":  # cheapest FLOPs/token within the tolerance, ties by loss
        flops = space.evaluate(band.pair, band.combo, band.j, band.i).flops_per_token
        chosen = int(np.lexsort((band.loss, flops))[0])
    best = _candidate(space, band, chosen)
    alternatives = [_candidate(space, band, k) for k in range(min(len(band), ALTERNATIVES + 1)) if k != chosen]
    alternatives = alternatives[:ALTERNATIVES]
    seed_candidates = [_candidate(space, s, 0) for s in seeds]

    name = request.study_name or study_name_for(request)
    proposals = [("seed", _axes(c)) for c in seed_candidates] + [("plan", _axes(best))]
    proposals += [("band", _axes(c)) for c in alternatives]
    multi = request.objective == "pareto"
    study, interrupted = run_study(space, proposals, request.storage, name, request.trials, request.seed, multi,
                                   request.workers, request.resume)

    certificate = enumerate_space(space, request.tolerance) if verify else None
    arch = space.architecture_of(_axes(best))
    plan_ = _assemble(space, law, arch, best, band, alternatives, seed_candidates, study, evaluated, certificate, name)
    if interrupted:
        plan_ = plan_.model_copy(update={"interrupted": True})
    if samples:
        x = {"N": plan_.total.without_embeddings, "D": plan_.tokens, "N_a": plan_.active.without_embeddings,
             "G": plan_.activated_experts, "S": plan_.shared_ratio}
        losses = [float(law.with_values(s, source="bootstrap").evaluate(**x)) for s in samples]
        plan_ = plan_.model_copy(update={"loss_interval": tuple(np.percentile(losses, [2.5, 97.5]).tolist())})
    return plan_


def _axes(c: Candidate) -> dict[str, int]:
    return {a: getattr(c, a) for a in AXES}


def _assemble(space, law, arch, best, band, alternatives, seeds, study, evaluated, certificate, name) -> Plan:
    r = space.request
    c = count(arch, r.convention)
    derived = describe(space, _axes(best))
    ling = get_law("ling")
    el = float(ling.evaluate(A=arch.activation_ratio, G_L=arch.granularity, C=r.compute))
    g, s = arch.activated_experts, arch.shared_ratio
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
        granularity=arch.granularity,
        activation_ratio=arch.activation_ratio,
        total_over_active=derived["total_over_active"],
        weight_memory_gb=derived["weight_memory_gb"],
        training_memory_gb=derived["training_memory_gb"],
        efficiency_leverage=el,
        dense_equivalent_compute=el * r.compute,
        ling_learning_rate=float(ling.evaluate("learning_rate", C=r.compute)),
        ling_batch_tokens=float(ling.evaluate("batch_tokens", C=r.compute)),
        band_tolerance=r.tolerance,
        band_size=len(band),
        alternatives=alternatives,
        seeds=seeds,
        pareto_front=front,
        binding=binding_constraints(space, _axes(best), best.loss),
        assumptions=assumptions(space),
        extrapolation=law.extrapolation(N=c.total.without_embeddings, D=best.tokens,
                                        N_a=c.active.without_embeddings, G=g, S=s),
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
