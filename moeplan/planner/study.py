"""The plan as an Optuna study that optuna-dashboard reads with no custom code.

Architecture in trial params; derived numbers as numeric user_attrs (sortable columns); metric names set;
named constraint values recorded with `trial.set_constraint` (Optuna) and as the `constraints` list
optuna-dashboard reads, so infeasible trials show as such in both.
Trials: the sympy-seeded configurations and the certified optimum and band, enqueued (`enqueue_trial`),
then, if more trials are asked for, the sampler's own search (TPE, or NSGA-II for `pareto`).

Trials run in an in-memory study and reach the store finished, in one transaction per batch
(`_Writer`): a store never holds a half-written trial, Ctrl-C (or SIGTERM) lets the running trial finish
and stores every finished one, and a fresh plan costs one write transaction instead of hundreds.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
import uuid
import warnings

import numpy as np
import optuna

from moeplan.errors import MoeplanError
from moeplan.flops.count import count
from moeplan.laws.inputs import of_count
from moeplan.planner.space import AXES, Space
from moeplan.processes import die_with_parent
from moeplan.sqlite_store import SQLiteStorage
from moeplan.store import DEFAULT_STORAGE, in_memory, open_storage, store_file

TRAINING_BYTES_PER_PARAM = 16  # bf16 weights and grads, fp32 master weights and two Adam moments


def distributions(space: Space) -> dict[str, tuple[int, int, int]]:
    """(low, high, step) of each architecture axis over the whole space, for `trial.suggest_int`."""
    r, p = space.request, space.request.priors
    pp, dstep, align, ep = r.pipeline_parallel, r.d_hidden_step, r.expert_align, r.expert_parallel
    d_low, d_high = math.ceil(p.min_d_hidden / dstep) * dstep, p.max_d_hidden // dstep * dstep
    return {
        "n_layers": (math.ceil(max(p.min_layers, p.dense_layers + 1) / pp) * pp, p.max_layers // pp * pp, pp),
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
    if r.cluster is not None:  # tokens from days x throughput (docs/cluster.md)
        tokens = float(space.evaluate_values({k: np.array([v]) for k, v in values.items()}).tokens[0])
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
RUN_KEY = "moeplan:run:"  # study system attr per plan call: the trials it adds (their sum is the target)
FLUSH_EVERY_S = 0.25  # a long search stores its finished trials at least this often
# Request fields that may differ between calls joining one study (where and how it runs, not what).
NOT_THE_REQUEST = {"storage", "study_name", "trials", "workers", "resume", "seed"}


def finished_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def trials_target(study: optuna.Study) -> int:
    """Trials the study's plan calls asked for, in total (`trials_target`: the one attribute earlier versions
    kept, which two concurrent plans could each overwrite)."""
    runs = study._storage.get_study_system_attrs(study._study_id)
    return study.user_attrs.get("trials_target", 0) + sum(v for k, v in runs.items() if k.startswith(RUN_KEY))


def _sampler(multi: bool, seed: int):
    return (optuna.samplers.NSGAIISampler if multi else optuna.samplers.TPESampler)(seed=seed)


class _Stop:
    """SIGINT or SIGTERM while trials run: the running trial finishes, the finished ones are stored, then the
    study stops. Never a KeyboardInterrupt inside Optuna's or the store's code (which loses state there)."""

    def __init__(self) -> None:
        self.requested = False
        self._saved: dict[int, object] = {}

    def __enter__(self) -> _Stop:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, _signum, _frame) -> None:
        self.requested = True

    def __exit__(self, *_exc) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)

    def callback(self, study: optuna.Study, _trial) -> None:
        if self.requested:
            study.stop()


def _dashboard_constraints(trial: optuna.trial.FrozenTrial) -> optuna.trial.FrozenTrial:
    """Also record the named constraints as the `constraints` list optuna-dashboard reads (it does not read
    Optuna 5's `constraints:<name>` keys), in name order."""
    named = sorted((k, v) for k, v in trial.system_attrs.items() if k.startswith("constraints:"))
    if named:
        trial.system_attrs["constraints"] = [v for _, v in named]
    return trial


def add_trials(study: optuna.Study, trials: list[optuna.trial.FrozenTrial]) -> None:
    """Store finished trials: in one transaction on an SQL store (one log record each on a journal)."""
    trials = [_dashboard_constraints(t) for t in trials]
    storage = getattr(study._storage, "_backend", study._storage)  # Optuna wraps RDBStorage in a read cache
    if isinstance(storage, SQLiteStorage):  # one BEGIN IMMEDIATE transaction
        _retried(lambda: storage.add_finished_trials(study._study_id, trials))
        return
    if not isinstance(storage, optuna.storages.RDBStorage):
        study.add_trials(trials)
        return
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    def write() -> None:
        with _create_scoped_session(storage.scoped_session) as session:
            if storage.engine.dialect.name == "sqlite":  # take the write lock first: no upgrade deadlock
                session.connection().exec_driver_sql("BEGIN IMMEDIATE")
            models.StudyModel.find_or_raise_by_id(study._study_id, session, for_update=True)
            for trial in trials:
                storage._get_prepared_new_trial(study._study_id, trial, session)

    _retried(write)


def _retried(write, attempts: int = 5) -> None:
    """Retried as Optuna retries its own writes: a rolled-back transaction left nothing behind."""
    for attempt in range(attempts):
        try:
            return write()
        except optuna.exceptions.StorageInternalError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


class _Writer:
    """Runs trials in an in-memory study that mirrors the stored one and stores finished trials in batches."""

    def __init__(self, stored: optuna.Study, space: Space, multi: bool, seed: int, stop: _Stop) -> None:
        self.stored, self.stop, self.pending = stored, stop, []
        self.memory = optuna.create_study(directions=stored.directions, sampler=_sampler(multi, seed))
        self.memory.add_trials(stored.get_trials(deepcopy=False, states=FINISHED))  # the sampler learns from them
        self.objective = objective_for(space, multi)
        self.last_flush = time.monotonic()

    def _collect(self, _study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state in FINISHED:
            self.pending.append(trial)
        if time.monotonic() - self.last_flush > FLUSH_EVERY_S:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            add_trials(self.stored, self.pending)
            self.pending = []
        self.last_flush = time.monotonic()

    def run(self, todo: list[tuple[str, dict[str, int]]], n_trials: int) -> None:
        for role, values in todo[:n_trials]:
            self.memory.enqueue_trial(values, user_attrs={"role": role})
        try:
            if n_trials > 0:
                self.memory.optimize(self.objective, n_trials=n_trials, catch=(),
                                     callbacks=[self._collect, self.stop.callback])
        finally:
            self.flush()  # what finished is stored, also when the objective failed


def _work(storage_url: str, name: str, space: Space, n_trials: int, seed: int, multi: bool, parent: int) -> None:
    """One worker process: join the study and run `n_trials`."""
    with _Stop() as stop:
        die_with_parent(parent)
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        stored = optuna.load_study(study_name=name, storage=open_storage(storage_url))
        _Writer(stored, space, multi, seed, stop).run([], n_trials)


def _run_workers(storage_url: str, name: str, space: Space, n_trials: int, seed: int, multi: bool,
                 workers: int, stop: _Stop) -> None:
    """Split `n_trials` over `workers` processes on the same study (Optuna's own scale-out)."""
    import multiprocessing

    shares = [n_trials // workers + (k < n_trials % workers) for k in range(workers)]
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_work, args=(storage_url, name, space, share, seed + k, multi, os.getpid()))
             for k, share in enumerate(shares) if share]
    for proc in procs:
        proc.start()
    forwarded = False
    while any(p.is_alive() for p in procs):
        if stop.requested and not forwarded:  # a signal to this process alone reaches the workers too
            for proc in procs:
                if proc.is_alive():
                    os.kill(proc.pid, signal.SIGTERM)
            forwarded = True
        for proc in procs:
            proc.join(timeout=0.1)
    failed = [p.exitcode for p in procs if p.exitcode]
    if failed and not stop.requested:
        raise MoeplanError(f"{len(failed)} of {len(procs)} workers failed (exit codes {failed})")


def _fail_stale(study: optuna.Study) -> None:
    """--resume: trials a pre-0.2 moeplan left RUNNING (it stored trials while they ran) become FAIL."""
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)


def _request_key(request) -> dict:
    return request.model_dump(mode="json", exclude=NOT_THE_REQUEST)


def _check_same_request(study: optuna.Study, name: str, space: Space) -> None:
    """A study holds the trials of one request: joining it with another would mix budgets in one ranking."""
    stored = study.user_attrs.get("request")
    if not isinstance(stored, dict):
        raise MoeplanError(f"study {name!r} was not made by moeplan plan; use another --study")
    stored = {k: v for k, v in stored.items() if k not in NOT_THE_REQUEST}
    mine = _request_key(space.request)
    differ = [k for k in mine if stored.get(k) != mine[k]]
    if differ:
        k = differ[0]
        raise MoeplanError(f"study {name!r} was made for another request ({k} {stored.get(k)!r}, not "
                           f"{mine[k]!r}); use another --study, or the same request to join or --resume it")


def run_study(space: Space, proposals: list[tuple[str, dict[str, int]]], storage_url: str | None, name: str,
              trials: int | None, seed: int, multi: bool, workers: int = 1,
              resume: bool = False) -> tuple[optuna.Study, bool]:
    """Create, join or resume the study; run the proposals and the requested trials.

    `trials` trials are added by this call (default: one per proposal not yet in the study); each call records
    its count in the study, so `--resume` after a crash runs exactly what is missing. Returns the study and
    whether Ctrl-C (or SIGTERM) stopped it (the finished trials are then stored, to be resumed).
    """
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    url = storage_url or DEFAULT_STORAGE
    if workers > 1 and in_memory(url):
        raise MoeplanError("--workers needs a shared storage: an SQLite file, a PostgreSQL URL or journal:PATH")
    if resume and in_memory(url):
        raise MoeplanError("nothing to resume in an in-memory store")
    if resume and store_file(url) is not None and not store_file(url).is_file():
        raise MoeplanError(f"nothing to resume: no study store at {store_file(url)}")
    with _Stop() as stop:
        storage = open_storage(url)
        try:
            study = _open_study(storage, url, name, space, multi, resume)
        except BaseException:
            close_storage(storage)  # a refused store is left as it was: no WAL files of an open connection either
            raise
        fresh = not study.get_trials(deepcopy=False)
        try:
            done = {tuple(sorted(t.params.items())) for t in study.get_trials(deepcopy=False, states=FINISHED)}
            todo = [(role, values) for role, values in proposals if tuple(sorted(values.items())) not in done]
            if resume:
                _fail_stale(study)
                n_trials = max(0, trials_target(study) - finished_trials(study))
            else:
                n_trials = len(todo) if trials is None else trials
                if n_trials:
                    study._storage.set_study_system_attr(study._study_id, f"{RUN_KEY}{uuid.uuid4().hex}", n_trials)
            first = min(len(todo), n_trials) if workers > 1 else n_trials
            if not stop.requested:
                _Writer(study, space, multi, seed, stop).run(todo, first)
            if workers > 1 and not stop.requested:
                _run_workers(url, name, space, n_trials - first, seed, multi, workers, stop)
        except BaseException:
            if fresh and not study.get_trials(deepcopy=False):  # an empty study made by this call only
                optuna.delete_study(study_name=name, storage=storage)
            raise
    return study, stop.requested


def close_storage(storage) -> None:
    """Close the connections a storage holds: an SQLite store's WAL files go with the last one."""
    storage = getattr(storage, "_backend", storage)
    if isinstance(storage, SQLiteStorage):
        storage.close()
    elif getattr(storage, "engine", None) is not None:
        storage.engine.dispose()


def _open_study(storage, url: str, name: str, space: Space, multi: bool, resume: bool) -> optuna.Study:
    directions = ["minimize"] * (3 if multi else 1)
    exists = name in optuna.get_all_study_names(storage=storage)
    if resume and not exists:
        raise MoeplanError(f"nothing to resume: no study {name!r} in {url}")
    if exists:
        study = optuna.load_study(study_name=name, storage=storage)
        if len(study.directions) != len(directions):
            raise MoeplanError(f"study {name!r} exists with {len(study.directions)} objective(s); use another --study")
        _check_same_request(study, name, space)
        return study
    try:
        study = optuna.create_study(storage=storage, study_name=name, directions=directions, load_if_exists=True)
    except Exception as err:
        raise MoeplanError(f"cannot create study {name!r}: {type(err).__name__}: {err}") from None
    if not study.user_attrs.get("request"):  # another call may have made it a moment ago
        with warnings.catch_warnings():  # set_metric_names is marked experimental; the dashboard uses it
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(["predicted_loss", "total_params", "active_params"] if multi
                                   else ["predicted_loss"])
        study.set_user_attr("request", space.request.model_dump(mode="json"))
        study.set_user_attr("law", space.law.name)
    else:
        _check_same_request(study, name, space)
    return study
