"""`moeplan assess`: how far from a law's optimum is a model that already exists?

For each law: the model's predicted loss at its training tokens, its training compute, and the law-optimal
design at the same compute searched in a space that CONTAINS the model: the model's own fixed choices
(attention kind, heads per width, norms, biases, vocabulary, tying, dense layers, sliding windows) are the
space's template, its alignments the space's grid, and every cap widened to include it. The model is a
point of that space, so the regret (model loss - optimum loss) is never negative; a check refuses to
report if the space's count of the model differs from the exact layer-wise count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from moeplan.errors import MoeplanError
from moeplan.flops.architecture import Architecture
from moeplan.flops.conventions import Convention
from moeplan.flops.count import count
from moeplan.laws.model import Law
from moeplan.planner.designs import Design, band_axes, summarise
from moeplan.planner.request import PlanRequest, Priors
from moeplan.planner.solve import solve
from moeplan.planner.space import AXES, Space


@dataclass(frozen=True)
class ModelSpace(Space):
    """A `Space` whose template is an existing model: every architecture keeps the model's fixed choices."""

    model: Architecture | None = None

    @cached_property
    def template(self) -> Architecture:
        return self.model

    def architecture_arrays(self, values: dict) -> dict[str, np.ndarray]:
        arrays = super().architecture_arrays(values)
        if self.model.sliding_layers:  # the model's share of sliding-window layers, rounded
            s, n = len(self.model.sliding_layers), self.model.n_layers
            arrays["n_sliding"] = (np.asarray(arrays["n_layers"]) * s + n // 2) // n
        return arrays


class LawAssessment(BaseModel):
    """One law's view of the model."""

    model_config = ConfigDict(frozen=True)

    law: str
    loss: float = Field(description="the model's predicted loss at its training tokens")
    optimum: Design = Field(description="the law's optimal design at the same compute, in a space holding the model")
    regret: float = Field(description="model loss - optimum loss; >= 0 since the space contains the model")
    disagreements: list[str] = Field(description="the model's choices the law would change, in words")


class Assessment(BaseModel):
    """A model that exists, scored by each law against the best design of its own family at its compute."""

    model_config = ConfigDict(frozen=True)

    source: str
    architecture: Architecture
    model: Design = Field(description="the model as a point of the space (loss under the first law)")
    tokens: float
    compute: float = Field(description="training FLOPs: tokens x training FLOPs per token")
    convention: Convention
    space_size: int
    laws: list[LawAssessment]


def model_axes(a: Architecture) -> dict[str, int]:
    return {axis: int(getattr(a, axis)) for axis in AXES}


def containing_request(a: Architecture, tokens: float, convention: Convention) -> PlanRequest:
    """A request whose space holds `a`: its grid, alignments and fixed choices; caps widened to include it."""
    if a.d_shared_expert != a.d_expert:
        raise MoeplanError(f"cannot assess: shared experts of width {a.d_shared_expert} are not a multiple of "
                           f"d_expert {a.d_expert}, and the space counts shared experts in d_expert units")
    if a.d_hidden % a.n_heads:
        raise MoeplanError(f"cannot assess: n_heads={a.n_heads} does not divide d_hidden={a.d_hidden}, so heads "
                           "cannot scale with the width")
    if len(a.dense_layers) and tuple(a.dense_layers) != tuple(range(len(a.dense_layers))):
        raise MoeplanError("cannot assess: dense layers that are not the leading ones")
    width_per_head, group = a.d_hidden // a.n_heads, a.n_heads // a.n_kv_heads
    hidden_align = math.gcd(a.d_hidden, 128)
    expert_align = math.gcd(a.d_expert, a.d_dense_ffn or a.d_expert, 64)
    ep = math.gcd(a.n_experts, 8)
    total = count(a, convention).total.all
    aspect, ratio = a.d_hidden / a.n_layers, a.d_expert / a.d_hidden
    priors = Priors(
        min_layers=min(2, a.n_layers), max_layers=max(128, a.n_layers),
        min_d_hidden=min(512, a.d_hidden), max_d_hidden=max(16384, a.d_hidden),
        min_aspect=min(32.0, aspect), max_aspect=max(128.0, aspect),
        min_expert_ratio=min(0.25, ratio), max_expert_ratio=max(0.75, ratio),
        max_experts=max(256 // ep * ep, a.n_experts), max_top_k=max(16, a.top_k),
        max_shared=max(4, a.n_shared_experts), dense_layers=len(a.dense_layers),
        dense_ffn_ratio=(a.d_dense_ffn / a.d_hidden) if a.dense_layers else 3.0,
        min_tokens_per_param=min(20.0, tokens / total * (1 - 1e-9)),  # the model itself is feasible
    )
    flops = tokens * count(a, convention).train_flops_per_token
    return PlanRequest(flops=flops, family=_family(a), seq_len=a.seq_len, vocab_size=a.vocab_size, tie_embeddings=a.tie_embeddings,
                       d_head=width_per_head, gqa_group=group, convention=convention, expert_parallel=ep,
                       hidden_align=hidden_align, expert_align=expert_align, priors=priors)


def _family(a: Architecture) -> str:
    """The model's transformers family, which limits the shared experts the space may vary (Mixtral: none);
    for a family the planner cannot build (MLA) the default, since the template fixes attention anyway."""
    from moeplan.flops.hf import default_family
    from moeplan.planner.family import DEFAULT_FAMILY, plan_family

    try:
        plan_family(default_family(a))
    except MoeplanError:
        return DEFAULT_FAMILY
    return default_family(a)


def model_space(a: Architecture, law: Law, request: PlanRequest) -> ModelSpace:
    """The space of `request` with `a` as template, checked to count `a` exactly as the layer-wise counter does."""
    from moeplan.planner.plan import check_plannable

    check_plannable(law)
    space = ModelSpace(request, law, model=a)
    space.check()
    values = {k: np.array([v]) for k, v in model_axes(a).items()}
    ev = space.evaluate_values(values)
    exact = count(a, request.convention)
    if int(ev.total[0]) != exact.total.all or not math.isclose(float(ev.flops_per_token[0]),
                                                              exact.train_flops_per_token, rel_tol=1e-12):
        raise MoeplanError(f"cannot assess: the space counts this model as {int(ev.total[0])} parameters, the "
                           f"counter as {exact.total.all}")
    if not ev.feasible[0]:
        raise MoeplanError("cannot assess: the model breaks a constraint of its own space")
    return space


def _ratio_words(name: str, model: float, best: float, fmt: str = ".3g") -> str | None:
    if math.isclose(model, best, rel_tol=0.1, abs_tol=1e-9):
        return None
    return f"{name} = {model:{fmt}} against {best:{fmt}}"


def disagreements(a: Architecture, model: Design, best: Design, law: Law) -> list[str]:
    """The model's choices the law's optimum makes differently, each in a few words."""
    out = []
    g, g_best = model.top_k + model.n_shared_experts, best.top_k + best.n_shared_experts
    if (model.top_k, model.n_shared_experts) != (best.top_k, best.n_shared_experts):
        star = _derived(law, "optimal_experts")
        shared = f" + {model.n_shared_experts} shared" if model.n_shared_experts else ""
        best_shared = f" + {best.n_shared_experts} shared" if best.n_shared_experts else ""
        out.append(f"top-k {model.top_k}{shared}: G = {g} against G = {g_best} (top-k {best.top_k}{best_shared})"
                   + (f"; the law's unconstrained G* = {star:.3g}" if star is not None else ""))
    s, s_best = model.n_shared_experts / g, best.n_shared_experts / g_best
    if abs(s - s_best) > 0.05:
        star = _derived(law, "optimal_shared_ratio")
        out.append(f"shared share S = {s:.2f} against {s_best:.2f}"
                   + (f" (S* = {star:.3g})" if star is not None else ""))
    for words in (
        _ratio_words("total/active N/N_a", model.law_N / model.law_N_a, best.law_N / best.law_N_a, ".3g"),
        _ratio_words("active non-embedding N_a", model.law_N_a, best.law_N_a, ".3g"),
        _ratio_words("total non-embedding N", model.law_N, best.law_N, ".3g"),
        _ratio_words("tokens D", model.tokens, best.tokens, ".3g"),
    ):
        if words:
            out.append(words)
    if (model.n_layers, model.d_hidden) != (best.n_layers, best.d_hidden):
        out.append(f"shape {model.n_layers} layers x {model.d_hidden} against {best.n_layers} x {best.d_hidden} "
                   "(the law sees N and N_a only: the shape priors decide this)")
    return out


def _derived(law: Law, name: str) -> float | None:
    """A symbolic optimum of the law (e.g. [HY]'s G*), when the law has one."""
    from moeplan.laws import optima

    try:
        return float(getattr(optima, name)(law))
    except (MoeplanError, AttributeError, TypeError, ValueError):
        return None


def assess(a: Architecture, tokens: float, laws: list[tuple[str, Law]], source: str,
           convention: Convention = Convention.EXACT) -> Assessment:
    """Each law's loss for the model, its optimum at the same compute in a space containing the model, the regret."""
    if not tokens > 0:
        raise MoeplanError(f"--tokens must be positive, got {tokens:g}")
    request = containing_request(a, tokens, convention)
    values = {k: np.array([v]) for k, v in model_axes(a).items()}
    assessed, first, size = [], None, 0
    for label, law in laws:
        space = model_space(a, law, request)
        size = space.size
        band = solve(space, 0.0)[0]
        both = {k: np.concatenate([values[k], band_axes(space, band)[k][:1]]) for k in AXES}
        model, best = summarise(both, space.evaluate_values(both))  # one call: identical arithmetic for both
        first = first or model
        assessed.append(LawAssessment(law=label, loss=model.loss, optimum=best, regret=model.loss - best.loss,
                                      disagreements=disagreements(a, model, best, law)))
    return Assessment(source=source, architecture=a, model=first, tokens=tokens, compute=request.compute,
                      convention=convention, space_size=size, laws=assessed)
