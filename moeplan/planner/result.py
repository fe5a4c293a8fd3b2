"""`Plan`, what `plan(request)` returns, as groups a reader of `--json` finds each number in by its kind:
the request, the architecture, its counts, the training run, the law's prediction, the search behind it,
and, when asked for, the cluster and the decisions. Each number has one home; what the request already
says (objective, tolerance, convention) is read from `request`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from moeplan.cluster.report import ClusterPlan
from moeplan.flops.architecture import Architecture
from moeplan.flops.count import ParamCounts
from moeplan.laws.model import Extrapolation
from moeplan.planner.binding import Binding
from moeplan.planner.designs import Design
from moeplan.planner.lifetime import Lifetime
from moeplan.planner.pareto import ParetoFront
from moeplan.planner.request import PlanRequest
from moeplan.planner.robust import Robustness
from moeplan.planner.study import TRAINING_BYTES_PER_PARAM

_FROZEN = ConfigDict(frozen=True)


class Counts(BaseModel):
    """The planned architecture counted: parameters, FLOPs per token, the laws' expert ratios, memory."""

    model_config = _FROZEN

    total: ParamCounts = Field(
        description="all stored parameters under the three conventions (all, without input embedding, without both)")
    active: ParamCounts = Field(description="parameters one token uses, same three conventions")
    train_flops_per_token: float = Field(
        description="training FLOPs per token under request.convention (forward + backward)")
    activated_experts: float = Field(description="[HY] G = n_k + n_s")
    shared_ratio: float = Field(description="[HY] S = n_s / G")
    granularity: float = Field(description="[LING] G_L = 2 d_hidden / d_expert")
    activation_ratio: float = Field(description="[LING] A = (E_a + E_s)/(E + E_s)")
    total_over_active: float = Field(description="N / N_a, non-embedding")
    weight_memory_gb: float = Field(description="weights at request.bytes_per_param bytes per parameter (bf16: 2)")
    training_memory_gb: float = Field(
        description=f"{TRAINING_BYTES_PER_PARAM} bytes per parameter (mixed-precision Adam)")


class Allocation(BaseModel):
    """A published compute-allocation law at the plan's compute (C = M·D): the tokens it would train on and the
    FLOPs per token that leaves, beside the plan's, whose size the loss law and the tokens floor decide."""

    model_config = _FROZEN

    law: str = Field(description="hol: [HOL] Eq. 2; ling: [LING]'s MoE allocation (A = 7.8 %, G_L = 2)")
    source: str = Field(description="where the allocation is printed, in the short names of docs/science.md")
    tokens: float = Field(description="compute-optimal training tokens D_opt(C)")
    flops_per_token: float = Field(description="compute-optimal training FLOPs per token M_opt(C), in the "
                                               "paper's own convention (docs/science.md)")
    fitted_range: tuple[float, float] | None = Field(
        description="the compute range the law was fitted on (None: not stated in docs/science.md)")


class Training(BaseModel):
    """The training run: its compute, its tokens, and [LING]'s suggested hyperparameters for that compute."""

    model_config = _FROZEN

    compute: float = Field(description="training compute C in FLOPs (given, converted from GPU-hours, or spent "
                                       "by a --days budget)")
    tokens: float = Field(description="training tokens D = compute / counts.train_flops_per_token")
    tokens_per_param: float = Field(description="tokens / all total parameters")
    tokens_per_active_param: float = Field(description="tokens / all active parameters")
    ling_learning_rate: float = Field(description="[LING] suggested peak learning rate 1.1576 C^-0.1529")
    ling_batch_tokens: float = Field(description="[LING] suggested batch in tokens 0.0694 C^0.3644 (reconstructed)")
    allocations: list[Allocation] = Field(
        description="what [HOL]'s and [LING]'s compute-allocation laws give at this compute, for orientation")


class LawPrediction(BaseModel):
    """The loss law, its constants and inputs at the plan, what it predicts and how far to trust it."""

    model_config = _FROZEN

    name: str = Field(description="name of the loss law (moeplan laws)")
    constants: dict[str, float] = Field(description="the law's constants as used, published or fitted")
    constants_source: list[str] = Field(
        description="where the constants come from (paper tables, or the fit's file)")
    inputs: dict[str, float] = Field(description="the law's variables at the plan (moeplan.laws.inputs)")
    domain: str = Field(description="what extrapolation is checked against: the law's published fitted "
                                    "ranges, the ranges of the fit in --law-params, or none")
    loss: float = Field(description="predicted final training loss (nats/token) of the law at N, N_a, D, G, S")
    loss_interval: tuple[float, float] | None = Field(
        None, description="95% interval of the predicted loss over the fit's bootstrap samples (--law-params)")
    extrapolation: list[Extrapolation] = Field(
        description="law variables outside the range the law was fitted on, with the factor")
    warnings: list[str] = Field(default_factory=list, description="inputs the law's fit never saw vary")
    efficiency_leverage: float = Field(description="[LING] EL(A, G_L, C)")
    dense_equivalent_compute: float = Field(description="[LING] EL x C")


class Search(BaseModel):
    """How the plan was found: the space, the near-optimal band, what binds, the certificate and the study."""

    model_config = _FROZEN

    space_size: int = Field(description="configurations in the buildable space")
    points_evaluated: int = Field(description="configurations the branch and bound evaluated exactly")
    assumptions: list[str] = Field(description="every fixed choice behind the plan, in words")
    binding: list[Binding] = Field(
        description="constraints and priors that stop the loss from going lower, with the neighbour that would")
    band_size: int = Field(description="configurations within request.tolerance of the best predicted loss")
    band_bounds: dict[str, tuple[int, int]] | None = Field(
        None, description="smallest and largest value of each architecture axis over the whole band")
    alternatives: list[Design] = Field(description="the best other configurations of the band, by predicted loss")
    seeds: list[Design] = Field(description="best configurations at the sympy-derived G*, S* (enqueued trials)")
    verified: bool = Field(description="whether --verify enumerated the whole space")
    regret: float | None = Field(
        None, description="plan loss minus the enumerated best loss (--verify); 0 certifies the optimum")
    certificate_points: int | None = Field(None, description="configurations enumerated by --verify")
    certificate_band_size: int | None = Field(None, description="band size found by enumeration (--verify)")
    study_name: str = Field(description="the Optuna study holding the plan's trials")
    storage: str = Field(description="the study's storage URL (:memory: keeps nothing)")
    trials: int = Field(description="finished trials in the study")
    interrupted: bool = Field(False, description="Ctrl-C stopped the study: the plan stands, the study is resumable")


class Plan(BaseModel):
    """A planned run: the architecture, its counts, its tokens, the predicted loss and how sure we are."""

    model_config = _FROZEN

    moeplan_version: str = Field(description="moeplan version that made the plan")
    request: PlanRequest = Field(description="the request planned, every default filled in")
    architecture: Architecture = Field(
        description="the planned model; moeplan export writes it as a config.json of request.family")
    counts: Counts = Field(description="the architecture's parameters, FLOPs per token, expert ratios and memory")
    training: Training = Field(description="compute, tokens and [LING]'s suggested learning rate and batch")
    law: LawPrediction = Field(description="the law, its inputs, the predicted loss and its extrapolation")
    search: Search = Field(description="the space, the near-optimal band, binding constraints, certificate, study")
    cluster: ClusterPlan | None = Field(None, description="layout, memory per device, speed and calendar (--gpus)")
    without_prior: Design | None = Field(
        None, description="what the law and the cluster pick with no tokens-per-parameter floor (--gpus)")

    # decisions (docs/decisions.md): set by --laws/--robust, --objective cost and --objective pareto
    robust: Robustness | None = Field(None, description="--laws/--robust: each law's optimum, the disagreement "
                                                        "table and the minimax-regret design")
    lifetime: Lifetime | None = Field(None, description="objective cost: the cheapest design over its life, "
                                                        "beside this (loss-optimal) plan trained to the same loss")
    pareto: ParetoFront | None = Field(None, description="objective pareto: the exact fronts over the whole space, "
                                                         "recorded as the study's trials")

