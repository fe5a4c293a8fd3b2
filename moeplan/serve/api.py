"""What each endpoint does, over moeplan's Python API: request models, the service's limits, the calls.

The response bodies are the Python API's own models (`Plan`, `Count`, `Derivation`, ...); request models
exist only where the Python API takes plain arguments, and mirror the CLI's options one for one, so an
HTTP request and a `--json` command line give the same answer.
"""

from __future__ import annotations

import functools
import hashlib
import json
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator

from moeplan.errors import MoeplanError, UsageError
from moeplan.flops.architecture import Architecture
from moeplan.flops.conventions import Convention
from moeplan.flops.count import Count, count
from moeplan.laws import DEFAULT_LAW, get_law
from moeplan.laws.inputs import law_inputs
from moeplan.laws.reports import Derivation, Leverage, Prediction, derive, leverage, predict
from moeplan.serve import db
from moeplan.serve.settings import Settings

_REQUEST = ConfigDict(frozen=True, extra="forbid")
MAX_TOLERANCE = 0.03  # as wide as the iso-FLOP figure's band
MAX_LAYERS = 4096  # the layer-wise counter and HF import walk every layer: more would let one request stall a worker


class Busy(MoeplanError):
    """The service is busy for now (503); the same request later will do."""

    status = 503


class TooMany(Busy):
    """A per-worker limit on concurrent work (429)."""

    status = 429


class ArchitectureSource(BaseModel):
    """An architecture as moeplan's model or as a Hugging Face config.json object (exactly one)."""

    model_config = _REQUEST

    architecture: Architecture | None = None
    hf_config: dict[str, Any] | None = Field(None, description="a transformers config.json, as uploaded")
    seq_len: PositiveInt | None = Field(None, description="training sequence length (overrides the config's)")

    @model_validator(mode="before")
    @classmethod
    def _few_layers(cls, data):
        """Checked before the nested models are built: building them walks every layer."""
        if isinstance(data, dict):
            layer_counts = (("architecture", ("n_layers", "n_leading_dense")), ("hf_config", ("num_hidden_layers",)))
            for source, keys in layer_counts:
                fields = data.get(source)
                for key in keys:
                    value = fields.get(key) if isinstance(fields, dict) else None
                    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > MAX_LAYERS:
                        raise ValueError(f"{source}.{key} {value} exceeds this service's limit of {MAX_LAYERS} layers")
            arch = data.get("architecture")
            for key in ("dense_layers", "sliding_layers"):  # Architecture sorts them before checking their type
                value = arch.get(key) if isinstance(arch, dict) else None
                if value is not None and not (isinstance(value, list | tuple) and all(
                        isinstance(i, int) and not isinstance(i, bool) for i in value)):
                    raise ValueError(f"architecture.{key}: a list of layer indices")
        return data

    @model_validator(mode="after")
    def _one(self):
        if (self.architecture is None) == (self.hf_config is None):
            raise ValueError("give exactly one of architecture and hf_config")
        return self

    def resolve(self) -> Architecture:
        """The `Architecture`, read as `moeplan count CONFIG --seq-len` reads a file."""
        from moeplan.flops.hf import architecture, from_hf_config

        if self.hf_config is not None:
            if "model_type" not in self.hf_config:
                raise MoeplanError("hf_config: not a Hugging Face config (no 'model_type')")
            arch = from_hf_config(self.hf_config, self.seq_len)
        elif self.seq_len:
            arch = architecture(self.architecture.model_dump() | {"seq_len": self.seq_len})
        else:
            arch = self.architecture
        return arch


class CountRequest(ArchitectureSource):
    """`moeplan count CONFIG [--convention] [--seq-len] [--no-causal]`."""

    convention: Convention = Convention.EXACT
    causal: bool = Field(True, description="false: --no-causal")


def count_of(request: CountRequest) -> Count:
    return count(request.resolve(), request.convention, causal=request.causal)


class DeriveRequest(BaseModel):
    """`moeplan derive [--law] [--total-params] [--active-params] [--tolerance]`."""

    model_config = _REQUEST

    law: str = DEFAULT_LAW
    total_params: float | None = Field(None, ge=1)
    active_params: float | None = Field(None, ge=1)
    tolerance: float = Field(0.001, ge=0, le=1)


def derivation(request: DeriveRequest) -> Derivation:
    return derive(get_law(request.law), request.total_params, request.active_params, request.tolerance)


# predict's options and the law variables they set, in the CLI's order
PREDICT_INPUTS = {"total_params": "N", "active_params": "N_a", "tokens": "D", "activated_experts": "G",
                  "shared_ratio": "S", "granularity": "G_K", "experts": "E", "inactive_share": "S_inactive"}


class PredictRequest(BaseModel):
    """`moeplan predict [--law] [--arch] [--tokens] [--total-params] ...`; an architecture replaces --arch."""

    model_config = _REQUEST

    law: str = DEFAULT_LAW
    arch: ArchitectureSource | None = Field(None, description="read N, N_a, G, S from an architecture")
    total_params: float | None = Field(None, description="N")
    active_params: float | None = Field(None, description="N_a")
    tokens: float | None = Field(None, description="D")
    activated_experts: float | None = Field(None, description="G = n_k + n_s")
    shared_ratio: float | None = Field(None, description="S = n_s / G")
    granularity: float | None = Field(None, description="[KRAJ] G_K")
    experts: float | None = Field(None, description="E ([JOINT] expansion, [CLARK] experts)")
    inactive_share: float | None = Field(None, description="[ABNAR] 1 - n_k/n_e")


def prediction(request: PredictRequest) -> Prediction:
    """The same steps as `moeplan predict`: inputs from the architecture, then the explicit ones over them."""
    law = get_law(request.law)
    inputs = {}
    if request.arch is not None:
        inputs = law_inputs(law, count(request.arch.resolve()), request.tokens)
    given = {var: getattr(request, field) for field, var in PREDICT_INPUTS.items()}
    inputs |= {k: v for k, v in given.items() if v is not None and k in law.variable_names}
    names = {var: field for field, var in PREDICT_INPUTS.items()}
    missing = [names.get(v, v) for v in law.variable_names if v not in inputs]
    if missing:
        raise UsageError(f"law {law.name!r} needs {', '.join(missing)} (or arch with tokens)")
    return predict(law, inputs)


class LeverageRequest(BaseModel):
    """`moeplan leverage --flops [--activation-ratio] [--granularity] [--arch]`."""

    model_config = _REQUEST

    flops: PositiveFloat
    activation_ratio: float | None = Field(None, description="[LING] A")
    granularity: float | None = Field(None, description="[LING] G_L = 2 d_hidden / d_expert")
    arch: ArchitectureSource | None = None


def leverage_of(request: LeverageRequest) -> Leverage:
    ratio, granularity = request.activation_ratio, request.granularity
    if request.arch is not None:
        a = request.arch.resolve()
        ratio, granularity = ratio or a.activation_ratio, granularity or a.granularity
    if ratio is None or granularity is None:
        raise UsageError("give activation_ratio and granularity, or arch")
    return leverage(get_law("ling"), ratio, granularity, request.flops)


class ExportRequest(ArchitectureSource):
    """`moeplan export SOURCE --format hf|megatron [--family]`: the file's text."""

    format: Literal["hf", "megatron"] = "hf"
    family: str | None = Field(None, description="HF model_type (default: chosen by features)")


def export_text(request: ExportRequest) -> str:
    from moeplan.flops.export import render_export

    return render_export(request.resolve(), request.format, request.family)


# --- plans -------------------------------------------------------------------------------------------------

def check_plan_request(request, settings: Settings, verify: bool):
    """Refuse what a shared service must not do for a client, and budgets and spaces beyond its limits."""
    from moeplan.planner.plan import load_law
    from moeplan.planner.space import Space

    server_side = {"storage": "the server's --storage holds every study",
                   "study_name": "the service names studies by their request"}
    for field, why in server_side.items():
        if field in request.model_fields_set:  # given by the client (storage has a default: :memory:)
            raise UsageError(f"{field}: not accepted over HTTP ({why})")
    if request.law_params is not None and not Path(request.law_params).parent == fits_folder():
        raise UsageError("law_params: over HTTP, name a finished fit job as job:ID (a path on the server is not "
                         "accepted)")
    if request.workers != 1 or request.resume:
        raise UsageError("workers and resume: not accepted over HTTP (the service runs each plan in one worker; "
                         "a plan a lost worker left unfinished is computed again, on the same study)")
    if request.trials is not None and request.trials > settings.max_trials:
        raise UsageError(f"trials {request.trials} exceeds this service's limit of {settings.max_trials}")
    if not settings.min_flops <= request.compute <= settings.max_flops:
        raise UsageError(f"budget {request.compute:.3g} FLOPs is outside this service's range "
                         f"[{settings.min_flops:.3g}, {settings.max_flops:.3g}]")
    if request.tolerance > MAX_TOLERANCE:  # the band is kept in memory: a wide one is most of the space
        raise UsageError(f"tolerance {request.tolerance:g} exceeds this service's limit of {MAX_TOLERANCE:g}")
    p = request.priors
    for field, most in (("max_layers", MAX_LAYERS), ("max_d_hidden", 2 ** 18), ("max_experts", 2 ** 16),
                        ("max_top_k", 1024), ("max_shared", 1024)):  # bounds the space's own construction
        if getattr(p, field) > most:
            raise UsageError(f"priors.{field} {getattr(p, field)} exceeds this service's limit of {most}")
    space = Space(request, load_law(request))
    limit = settings.max_verify_space if verify else settings.max_space
    if space.size > limit:
        raise UsageError(f"the buildable space has {space.size:.3g} configurations, above this service's limit "
                         f"of {limit:.3g}{' for verify' if verify else ''}: narrow the priors or raise the alignments")


def fits_folder() -> Path:
    """Where fit jobs' constants are written for the planner to read (`law_params: "job:ID"`)."""
    return Path(tempfile.gettempdir()) / "moeplan-serve-fits"


def with_fit_constants(request, engine):
    """`law_params: "job:ID"` -> the request reading that fit job's constants from a file on this host."""
    from moeplan.files import write_text_atomic
    from moeplan.serve import jobs

    value = request.law_params
    if value is None or not value.startswith("job:"):
        return request
    job = jobs.get(engine, value.removeprefix("job:"))
    if job is None or job.kind != "fit":
        raise UsageError(f"law_params: no fit job {value.removeprefix('job:')!r}")
    if job.status != "done":
        raise UsageError(f"law_params: fit job {job.id} is {job.status}, not done")
    path = fits_folder() / f"fit-{job.id}.json"  # the same path on every host: the same study name
    if not path.is_file():
        write_text_atomic(path, json.dumps(job.law_params, indent=2) + "\n", parents=True)
    return request.model_copy(update={"law_params": str(path)})


def plan_key(request, verify: bool) -> tuple[str, str]:
    """(study name, cache key): the study is shared by every trials/verify variant of a request."""
    from moeplan.planner.plan import study_name_for

    name = study_name_for(request)
    # the Plan's shape is part of the key: a plan stored by a moeplan whose Plan differs is computed again
    detail = hashlib.sha256(f"{_plan_shape()}|{request.model_dump_json()}|{verify}".encode()).hexdigest()[:16]
    return name, f"{name}:{detail}"


@functools.cache
def _plan_shape() -> str:
    from moeplan.planner import Plan

    return hashlib.sha256(json.dumps(Plan.model_json_schema(), sort_keys=True).encode()).hexdigest()


class PlanService:
    """Plans on the shared study store: one computation per distinct request across all workers and hosts."""

    def __init__(self, settings: Settings, engine):
        self.settings, self.engine = settings, engine
        self.verify_slots = threading.BoundedSemaphore(settings.max_verify)
        # Plans hold the GIL for much of their time: run them one after another in a worker (scale with
        # --workers), so under load each finishes in turn instead of all finishing late together.
        self.compute_slots = threading.BoundedSemaphore(settings.plans_per_worker)
        self.inflight: dict[str, Future] = {}
        self.inflight_lock = threading.Lock()

    def plan(self, request, verify: bool = False):
        """The plan: stored, or joined while this worker computes it, or computed here under the study's lease."""
        asked = request.law_params
        request = with_fit_constants(request, self.engine)
        result = self._plan(request, verify)
        if asked != request.law_params:  # answer in the client's terms, not the server's file
            result = result.model_copy(update={"request": result.request.model_copy(update={"law_params": asked})})
        return result

    def _plan(self, request, verify: bool):
        check_plan_request(request, self.settings, verify)
        request = request.model_copy(update={"storage": self.settings.storage})
        name, key = plan_key(request, verify)
        with self.inflight_lock:  # identical requests in this worker share one computation (or one wait)
            future = self.inflight.get(key)
            leader = future is None
            if leader:
                future = self.inflight[key] = Future()
        if not leader:
            return future.result()
        try:
            result = self._shared_plan(request, verify, name, key)
            future.set_result(result)
            return result
        except BaseException as err:
            future.set_exception(err)
            raise
        finally:
            with self.inflight_lock:
                del self.inflight[key]

    def _shared_plan(self, request, verify: bool, name: str, key: str):
        from moeplan.planner import Plan, plan

        deadline = time.monotonic() + self.settings.wait_seconds
        lease, pause = self.settings.job_lease_seconds, 0.05
        while True:
            cached = db.cached_plan(self.engine, key)
            if cached is not None:
                return Plan.model_validate_json(cached)
            if db.claim_lease(self.engine, name, lease):
                break
            if time.monotonic() > deadline:
                raise Busy(f"study {name} is still being computed by another worker; retry later")
            time.sleep(pause)  # another worker computes this study: wait for its answer, polling less and less
            pause = min(0.5, pause * 1.5)
        try:
            cached = db.cached_plan(self.engine, key)  # finished between our look and our claim
            if cached is not None:
                return Plan.model_validate_json(cached)
            if verify and not self.verify_slots.acquire(blocking=False):
                raise TooMany(f"{self.settings.max_verify} verify plan(s) already running on this worker; retry later")
            try:
                with db.Heartbeat(self.engine, db.leases, db.leases.c.key, name, lease, db.leases.c.owner), \
                        self.compute_slots:
                    result = plan(request, verify=verify)
            finally:
                if verify:
                    self.verify_slots.release()
            search = result.search.model_copy(update={"storage": db.display_url(result.search.storage)})
            result = result.model_copy(update={"search": search, "request": result.request.model_copy(
                update={"storage": db.display_url(request.storage)})})
            db.store_plan(self.engine, key, result.model_dump_json())
            return result
        finally:
            db.release_lease(self.engine, name)


class StudyLink(BaseModel):
    study_name: str
    study_id: int
    trials: int
    dashboard_url: str | None = Field(None, description="the study in optuna-dashboard, if the service knows one")


def study_link(settings: Settings, name: str) -> StudyLink:
    import optuna

    from moeplan.planner.study import open_storage

    storage = open_storage(settings.storage)
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        raise MoeplanError(f"no study {name!r} in this service's storage") from None
    trials = len(storage.get_all_trials(study_id, deepcopy=False,
                                        states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)))
    url = f"{settings.dashboard_url.rstrip('/')}/dashboard/studies/{study_id}" if settings.dashboard_url else None
    return StudyLink(study_name=name, study_id=study_id, trials=trials, dashboard_url=url)


PlotKind = Literal["isoflop", "band", "pareto"]


def plan_svg(request, kind: PlotKind, settings: Settings, engine) -> str:
    """One of `moeplan plan --plot`'s figures, as SVG text."""
    import io

    from moeplan.planner.curves import band_points, iso_flop, pareto
    from moeplan.plots import band_figure, iso_flop_figure, pareto_figure

    request = with_fit_constants(request, engine)
    check_plan_request(request, settings, verify=False)
    c = request.compute
    if kind == "isoflop":
        fig = iso_flop_figure(iso_flop(request, [c / 10, c, c * 10]))
    elif kind == "band":
        fig = band_figure(band_points(request))
    else:
        fig = pareto_figure(pareto(request))
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    return buffer.getvalue()
