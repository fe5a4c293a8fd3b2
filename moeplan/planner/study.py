"""The plan as an Optuna study that optuna-dashboard reads with no custom code.

Architecture in trial params; derived numbers as numeric user_attrs (sortable columns); metric names set;
named constraint values recorded with `trial.set_constraint`, so infeasible trials show as such.
Trials: the sympy-seeded configurations and the certified optimum and band, enqueued (`enqueue_trial`),
then, if more trials are asked for, the sampler's own search (TPE, or NSGA-II for `pareto`).
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path

import optuna

from moeplan.errors import MoeplanError
from moeplan.flops.count import count
from moeplan.laws.inputs import of_count
from moeplan.planner.space import AXES, Space

DEFAULT_STORAGE = "sqlite:///moeplan.db"
TRAINING_BYTES_PER_PARAM = 16  # bf16 weights and grads, fp32 master weights and two Adam moments


def in_memory(url: str) -> bool:
    return url in (":memory:", "memory")


def store_file(url: str) -> Path | None:
    """The file behind an SQLite or journal store URL (None for server and in-memory stores)."""
    for prefix in ("sqlite:///", "journal:"):
        if url.startswith(prefix):
            return Path(url.removeprefix(prefix))
    return None


def open_storage(url: str | None):
    """An Optuna storage from a URL: SQLite (default), any SQLAlchemy URL, `journal:PATH`, or `:memory:`."""
    url = url or DEFAULT_STORAGE
    try:
        if in_memory(url):
            return optuna.storages.InMemoryStorage()
        if url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(str(store_file(url))))
        storage = _rdb_storage(url)
    except Exception as err:  # SQLAlchemy and Optuna raise many kinds; the user needs one line
        raise MoeplanError(f"cannot open storage {url!r}: {type(err).__name__}: {str(err).splitlines()[0]}") from None
    if url.startswith("sqlite"):
        import sqlalchemy

        # WAL and synchronous=NORMAL: a trial commit costs milliseconds instead of an fsync each.
        @sqlalchemy.event.listens_for(storage.engine, "connect")
        def _pragmas(connection, _record):
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        storage.engine.dispose()
    return storage


def _rdb_storage(url: str, attempts: int = 5):
    """An RDBStorage; workers that meet a fresh database race to create Optuna's tables, so the losers retry
    (by then the tables exist)."""
    import sqlalchemy.exc

    kwargs = _skip_schema_check(url)
    if url.startswith("sqlite"):  # concurrent workers wait for the lock instead of failing at once
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, **kwargs)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError, sqlalchemy.exc.ProgrammingError):
            if attempt == attempts - 1 or url.startswith("sqlite"):
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _skip_schema_check(url: str) -> dict:
    """For an SQLite file Optuna already set up, skip its table creation and version check (~0.3 s)."""
    path = store_file(url)
    if not url.startswith("sqlite:///") or not path.is_file():
        return {}
    import sqlite3

    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.Error:
        return {}
    if {"studies", "trials", "alembic_version"} <= tables:
        return {"skip_compatibility_check": True, "skip_table_creation": True}
    return {}


def distributions(space: Space) -> dict[str, tuple[int, int, int]]:
    """(low, high, step) of each architecture axis over the whole space, for `trial.suggest_int`."""
    r, p = space.request, space.request.priors
    pp, dstep, align, ep = r.pipeline_parallel, r.d_hidden_step, r.expert_align, r.expert_parallel
    d_low, d_high = math.ceil(p.min_d_hidden / dstep) * dstep, p.max_d_hidden // dstep * dstep
    return {
        "n_layers": (math.ceil(p.min_layers / pp) * pp, p.max_layers // pp * pp, pp),
        "d_hidden": (d_low, d_high, dstep),
        "d_expert": (align * max(1, math.ceil(p.min_expert_ratio * d_low / align)),
                     align * math.floor(p.max_expert_ratio * d_high / align), align),
        "n_experts": (ep, p.max_experts // ep * ep, ep),
        "top_k": (1, p.max_top_k, 1),
        "n_shared_experts": (0, p.max_shared, 1),
    }


def describe(space: Space, values: dict[str, int]) -> dict[str, float]:
    """Numeric user_attrs of one architecture, counted by the layer-wise counter (not the vectorised one)."""
    r = space.request
    c = count(space.architecture_of(values), r.convention)
    tokens = r.compute / c.train_flops_per_token
    q = of_count(c, tokens=tokens)
    return {
        "loss": float(space.law.loss(space.law.inputs(q))),
        "total_params": c.total.all,
        "active_params": c.active.all,
        "law_N": c.total.without_embeddings,
        "law_N_a": c.active.without_embeddings,
        "tokens": tokens,
        "train_flops_per_token": c.train_flops_per_token,
        "activated_experts_G": q["G"],
        "shared_ratio_S": q["S"],
        "total_over_active": c.total.without_embeddings / c.active.without_embeddings,
        "tokens_per_param": tokens / c.total.all,
        "weight_memory_gb": r.bytes_per_param * c.total.all / 1e9,
        "training_memory_gb": TRAINING_BYTES_PER_PARAM * c.total.all / 1e9,
    }


def objective_for(space: Space, multi: bool):
    dists = distributions(space)
    # The constraints table says which ones the suggest bounds already enforce; record only the others (each
    # named constraint is one storage write per trial).
    breakable = [c.label for c in space.constraints if c.optuna == "constraint"]

    def objective(trial: optuna.Trial):
        values = {axis: trial.suggest_int(axis, *dists[axis][:2], step=dists[axis][2]) for axis in AXES}
        if values["top_k"] >= values["n_experts"]:
            trial.set_constraint("top_k < n_experts", 1.0)
            raise optuna.TrialPruned("top_k must be below n_experts")
        attrs = describe(space, values)
        violations = space.prior_violations({k: [v] for k, v in values.items()})
        for key, value in attrs.items():
            if key != "loss":
                trial.set_user_attr(key, value)
        trial.set_user_attr("violated", [name for name, mask in violations.items() if mask[0]])
        for name in breakable:  # <= 0 feasible (Optuna's convention); 1 marks a broken prior
            trial.set_constraint(name, 1.0 if violations[name][0] else 0.0)
        if multi:
            return attrs["loss"], attrs["total_params"], attrs["active_params"]
        return attrs["loss"]

    return objective


FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def finished_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def _sampler(multi: bool, seed: int):
    return (optuna.samplers.NSGAIISampler if multi else optuna.samplers.TPESampler)(seed=seed)


def _work(storage_url: str, name: str, space: Space, n_trials: int, seed: int, multi: bool) -> None:
    """One worker process: join the study and run `n_trials` (waiting enqueued trials first)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name=name, storage=open_storage(storage_url), sampler=_sampler(multi, seed))
    study.optimize(objective_for(space, multi), n_trials=n_trials, catch=())


def _run_workers(storage_url: str, name: str, space: Space, n_trials: int, seed: int, multi: bool,
                 workers: int) -> None:
    """Split `n_trials` over `workers` processes on the same study (Optuna's own scale-out)."""
    import multiprocessing

    shares = [n_trials // workers + (k < n_trials % workers) for k in range(workers)]
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_work, args=(storage_url, name, space, share, seed + k, multi))
             for k, share in enumerate(shares) if share]
    for proc in procs:
        proc.start()
    try:
        for proc in procs:
            proc.join()
    except KeyboardInterrupt:
        for proc in procs:
            proc.terminate()
        raise
    failed = [p.exitcode for p in procs if p.exitcode]
    if failed:
        raise MoeplanError(f"{len(failed)} of {len(procs)} workers failed (exit codes {failed})")


def _fail_stale(study: optuna.Study) -> list[tuple[str, dict[str, int]]]:
    """--resume: trials left RUNNING by a killed worker become FAIL; returns the proposals to enqueue again."""
    again = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
        if "role" in t.user_attrs:
            again.append((t.user_attrs["role"], dict(t.params)))
    return again


def _require_study(url: str, storage, name: str) -> None:
    """--resume: the study must exist (the store's file is checked before the store is opened: no file made)."""
    if name not in optuna.get_all_study_names(storage=storage):
        raise MoeplanError(f"nothing to resume: no study {name!r} in {url}")


def run_study(space: Space, proposals: list[tuple[str, dict[str, int]]], storage_url: str | None, name: str,
              trials: int | None, seed: int, multi: bool, workers: int = 1,
              resume: bool = False) -> tuple[optuna.Study, bool]:
    """Create, join or resume the study; run the enqueued proposals and the requested trials.

    `trials` trials are added by this call (default: one per proposal not yet in the study); the study's
    `trials_target` records the total so `--resume` after a crash runs exactly what is missing. Returns the
    study and whether Ctrl-C interrupted it (the study is then kept, to be resumed).
    """
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    url = storage_url or DEFAULT_STORAGE
    if workers > 1 and in_memory(url):
        raise MoeplanError("--workers needs a shared storage: an SQLite file, a PostgreSQL URL or journal:PATH")
    if resume and in_memory(url):
        raise MoeplanError("nothing to resume in an in-memory store")
    if resume and store_file(url) is not None and not store_file(url).is_file():
        raise MoeplanError(f"nothing to resume: no study store at {store_file(url)}")
    storage = open_storage(url)
    if resume:
        _require_study(url, storage, name)
    directions = ["minimize"] * (3 if multi else 1)
    try:
        study = optuna.create_study(storage=storage, study_name=name, sampler=_sampler(multi, seed),
                                    directions=directions, load_if_exists=True)
    except Exception as err:
        raise MoeplanError(f"cannot create study {name!r}: {type(err).__name__}: {err}") from None
    if len(study.directions) != len(directions):
        raise MoeplanError(f"study {name!r} exists with {len(study.directions)} objective(s); use another --study")
    fresh = not study.trials
    interrupted = False
    try:
        if fresh:
            with warnings.catch_warnings():  # set_metric_names is marked experimental; the dashboard uses it
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(["predicted_loss", "total_params", "active_params"] if multi
                                       else ["predicted_loss"])
            study.set_user_attr("request", space.request.model_dump(mode="json"))
            study.set_user_attr("law", space.law.name)
        if resume:
            todo = _fail_stale(study)
            n_trials = max(0, study.user_attrs.get("trials_target", 0) - finished_trials(study))
        else:
            done = {tuple(sorted(t.params.items())) for t in study.get_trials(deepcopy=False, states=FINISHED)}
            todo = [(role, values) for role, values in proposals if tuple(sorted(values.items())) not in done]
            n_trials = len(todo) if trials is None else trials
            study.set_user_attr("trials_target", study.user_attrs.get("trials_target", 0) + n_trials)
        for role, values in todo:
            study.enqueue_trial(values, user_attrs={"role": role}, skip_if_exists=not resume)
        if workers > 1:
            # The enqueued trials run here first: popping a WAITING trial races on SQLite (no row locks),
            # creating new ones does not.
            first = min(len(todo), n_trials)
            study.optimize(objective_for(space, multi), n_trials=first, catch=())
            _run_workers(url, name, space, n_trials - first, seed, multi, workers)
        else:
            study.optimize(objective_for(space, multi), n_trials=n_trials, catch=())
    except KeyboardInterrupt:
        interrupted = True  # keep what finished: `--resume` continues from it
    except BaseException:
        if fresh:  # never leave a half-written study behind
            optuna.delete_study(study_name=name, storage=storage)
        raise
    return study, interrupted
