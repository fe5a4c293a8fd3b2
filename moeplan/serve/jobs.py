"""Fits and frontiers as jobs: stored in `moeplan_jobs`, run by whichever worker claims them first.

A worker runs one job at a time, in a child process (the fit's scipy loops never stall the worker's HTTP
threads), and renews the job's lease while it runs. A worker that dies (SIGKILL, power) stops renewing:
once the lease has expired another worker takes the job over and runs it again, up to `job_attempts`
runs in all; after that the job is marked failed with the reason. A job is never lost: its row is written
before the 202 answer, and only its result or its failure ends it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, field_validator

from moeplan.errors import MoeplanError, UsageError
from moeplan.laws.fit_report import FitReport
from moeplan.planner.curves import Frontier
from moeplan.serve import db
from moeplan.serve.settings import Settings

log = logging.getLogger("moeplan.serve")
_REQUEST = ConfigDict(frozen=True, extra="forbid")


class FitJob(BaseModel):
    """`moeplan fit RUNS --law ... --out`: the runs travel as CSV text."""

    model_config = _REQUEST

    runs: str = Field(description="the runs CSV (docs/fitting.md): a header line and one row per run")
    runs_name: str = Field("runs.csv", pattern=r"^[A-Za-z0-9._-]{1,100}$",
                           description="the file name the report quotes, as `moeplan fit NAME` would")
    law: str = "hy"
    bootstrap: int = Field(0, ge=0, le=1000)
    holdout_column: str | None = None
    holdout_fraction: float | None = Field(None, ge=0.0, le=0.9)
    objective: Literal["huber", "asymmetric"] = "huber"
    delta: float = Field(1e-3, ge=0)
    starts: int = Field(64, ge=1, le=512)
    columns: dict[str, str] | None = Field(None, description="rename columns, e.g. {\"N\": \"params\"}")
    where: dict[str, str] | None = Field(None, description="only runs with COL=VALUE")
    compare: bool = False
    seed: int = 0

    @field_validator("runs_name")
    @classmethod
    def _not_dots(cls, v: str) -> str:
        if v in (".", ".."):
            raise ValueError("runs_name must be a file name")
        return v


class FrontierJob(BaseModel):
    """`moeplan frontier --from --to --per-decade ...`."""

    model_config = _REQUEST

    start: PositiveFloat = Field(1e18, description="--from: smallest budget in FLOPs")
    stop: PositiveFloat = Field(1e26, description="--to: largest budget in FLOPs")
    per_decade: int = Field(2, ge=1, le=20)
    max_params: PositiveFloat | None = None
    max_tokens: PositiveFloat | None = None
    min_tokens_per_param: PositiveFloat = 20.0
    max_experts: int = Field(256, ge=1, le=4096)


Status = Literal["queued", "running", "done", "failed"]


class Job(BaseModel):
    """A job's state; `result` is the `moeplan fit --json` or `moeplan frontier --json` output when done."""

    model_config = ConfigDict(frozen=True)

    id: str
    kind: Literal["fit", "frontier"]
    status: Status
    created: float
    started: float | None = None
    finished: float | None = None
    attempts: int = Field(description="runs started (a worker lost mid-run makes another worker start again)")
    worker: str | None = Field(None, description="host:pid of the worker running or that ran it")
    error: str | None = None
    result: FitReport | Frontier | None = None
    law_params: dict | None = Field(None, description="fit: the `fit --out` file, for plan --law-params")


def check_frontier(job: FrontierJob, settings: Settings) -> None:
    from moeplan.planner.curves import budgets

    if not (settings.min_flops <= job.start and job.stop <= settings.max_flops):
        raise UsageError(f"budgets must lie in this service's range [{settings.min_flops:.3g}, "
                         f"{settings.max_flops:.3g}]")
    n = len(budgets(job.start, job.stop, job.per_decade))
    if n > settings.max_budgets:
        raise UsageError(f"{n} budgets exceed this service's limit of {settings.max_budgets} per frontier")


def submit(engine: sa.Engine, kind: str, request: BaseModel) -> Job:
    row = dict(id=uuid.uuid4().hex, kind=kind, status="queued", request=request.model_dump_json(), attempts=0,
               created=time.time())
    with engine.begin() as conn:
        conn.execute(db.jobs.insert().values(**row))
    return _job(row)


def get(engine: sa.Engine, job_id: str) -> Job | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(db.jobs).where(db.jobs.c.id == job_id)).mappings().first()
    return None if row is None else _job(dict(row))


def _job(row: dict) -> Job:
    result = law_params = None
    if row.get("result"):
        data = json.loads(row["result"])
        result, law_params = data["result"], data.get("law_params")
    return Job(id=row["id"], kind=row["kind"], status=row["status"], created=row["created"],
               started=row.get("started"), finished=row.get("finished"), attempts=row["attempts"],
               worker=row.get("worker"), error=row.get("error"), result=result, law_params=law_params)


# --- running ------------------------------------------------------------------------------------------------

def _die_with_parent() -> None:
    """In the job's child process: end when the worker that started it ends (Linux), so no orphan keeps
    computing a job another worker has taken over."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def execute(kind: str, request_json: str) -> str:
    """Run one job (in the child process); its result as JSON text: {"result": ..., "law_params": ...}."""
    import tempfile
    from pathlib import Path

    if kind == "frontier":
        from moeplan.planner import PlanRequest, Priors
        from moeplan.planner.curves import budgets, frontier

        job = FrontierJob.model_validate_json(request_json)
        request = PlanRequest(flops=job.start, max_params=job.max_params, max_tokens=job.max_tokens,
                              priors=Priors(min_tokens_per_param=job.min_tokens_per_param,
                                            max_experts=job.max_experts))
        result = frontier(request, budgets(job.start, job.stop, job.per_decade))
        return json.dumps({"result": result.model_dump(mode="json")})
    from moeplan.laws.fit_report import run_fit

    job = FitJob.model_validate_json(request_json)
    with tempfile.TemporaryDirectory(prefix="moeplan-fit-") as folder:
        os.chdir(folder)  # the report names the runs as `moeplan fit NAME` run beside the file would
        Path(job.runs_name).write_text(job.runs)
        report = run_fit(Path(job.runs_name), job.law, job.objective, job.delta, 10.0, job.starts, job.seed,
                         job.holdout_column, job.holdout_fraction, job.bootstrap, job.compare, job.columns,
                         Path("law_params.json"), job.where)
        law_params = json.loads(Path("law_params.json").read_text())
        os.chdir("/")
    return json.dumps({"result": report.model_dump(mode="json") | {"out": None}, "law_params": law_params})


class Runner:
    """This worker's job loop: claim a job (queued, or running under an expired lease), run it, record it."""

    def __init__(self, settings: Settings, engine: sa.Engine, poll_seconds: float = 0.5):
        self.settings, self.engine, self.poll = settings, engine, poll_seconds
        self.stopping, self.wake = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._loop, name="moeplan jobs", daemon=True)
        self.current: str | None = None

    def start(self) -> None:
        self.thread.start()

    def stop(self, grace: float = 10.0) -> None:
        """Graceful shutdown: claim nothing more; a job still running after `grace` goes back to the queue."""
        self.stopping.set()
        self.wake.set()
        self.thread.join(grace)
        job_id = self.current
        if job_id is not None:
            with self.engine.begin() as conn:
                conn.execute(db.jobs.update().where(db.jobs.c.id == job_id, db.jobs.c.worker == db.WORKER,
                                                    db.jobs.c.status == "running")
                             .values(status="queued", lease_until=None, attempts=db.jobs.c.attempts - 1,
                                     error=f"worker {db.WORKER} shut down; requeued"))
            log.info(json.dumps({"event": "job requeued at shutdown", "job": job_id}))

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                job = self.claim()
            except sa.exc.SQLAlchemyError as err:
                log.warning(json.dumps({"event": "job claim failed", "error": str(err).splitlines()[0]}))
                job = None
            if job is None:
                self.wake.wait(self.poll)
                self.wake.clear()
                continue
            self.run(job)

    def claim(self) -> dict | None:
        """The oldest claimable job, now ours; jobs whose last allowed run was lost become failed."""
        now, t = time.time(), db.jobs
        claimable = sa.or_(t.c.status == "queued", sa.and_(t.c.status == "running", t.c.lease_until < now))
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.id, t.c.status, t.c.attempts, t.c.worker).where(claimable)
                                .order_by(t.c.created).limit(8)).mappings().all()
        for row in rows:
            with self.engine.begin() as conn:
                if row["status"] == "running" and row["attempts"] >= self.settings.job_attempts:
                    conn.execute(t.update().where(t.c.id == row["id"], claimable).values(
                        status="failed", finished=now, error=(
                            f"abandoned: the worker running it ({row['worker']}) stopped without finishing, "
                            f"{row['attempts']} time(s) (killed or lost; no heartbeat for "
                            f"{self.settings.job_lease_seconds:g} s)")))
                    continue
                note = (f"attempt {row['attempts']} was lost with worker {row['worker']} (no heartbeat for "
                        f"{self.settings.job_lease_seconds:g} s); run again") if row["status"] == "running" else None
                taken = conn.execute(t.update().where(t.c.id == row["id"], claimable).values(
                    status="running", worker=db.WORKER, lease_until=now + self.settings.job_lease_seconds,
                    attempts=t.c.attempts + 1, started=now, error=note)).rowcount
            if taken:
                with self.engine.connect() as conn:
                    return dict(conn.execute(sa.select(t).where(t.c.id == row["id"])).mappings().one())
        return None

    def run(self, row: dict) -> None:
        t = db.jobs
        self.current = row["id"]
        started = time.monotonic()
        status, result, error = "failed", None, None
        try:
            with db.Heartbeat(self.engine, t, t.c.id, row["id"], self.settings.job_lease_seconds, t.c.worker):
                with ProcessPoolExecutor(1, mp_context=_spawn(), initializer=_die_with_parent) as pool:
                    result = pool.submit(execute, row["kind"], row["request"]).result()
            status = "done"
        except MoeplanError as err:
            error = str(err)
        except BrokenProcessPool:
            error = "the job's process died (out of memory, or killed)"
        except Exception as err:  # a job must end with a reason, whatever went wrong
            log.exception("job %s failed", row["id"])
            error = f"internal error: {type(err).__name__}: {err}"
        finally:
            self.current = None
        with self.engine.begin() as conn:  # only if it is still ours: a stalled worker never overwrites
            conn.execute(t.update().where(t.c.id == row["id"], t.c.worker == db.WORKER, t.c.status == "running")
                         .values(status=status, result=result, error=error, finished=time.time(),
                                 lease_until=None))
        log.info(json.dumps({"event": "job finished", "job": row["id"], "kind": row["kind"], "status": status,
                             "seconds": round(time.monotonic() - started, 3), "error": error}))


def _spawn():
    import multiprocessing

    return multiprocessing.get_context("spawn")
