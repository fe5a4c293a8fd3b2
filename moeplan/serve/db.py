"""The service's own tables, in the same database as the studies (SQLite file or PostgreSQL), via SQLAlchemy.

All are named `moeplan_*`: `moeplan_jobs` (fits and frontiers), `moeplan_plans` (answers already computed,
so a repeated request never runs a second study) and `moeplan_leases` (who is computing which study now).
Every claim is one conditional UPDATE or INSERT whose row count says who won, so SQLite and PostgreSQL
behave alike without row locks; a lease is a deadline its holder keeps pushing back (`Heartbeat`).
Deadlines are wall-clock seconds: hosts sharing a database need synchronised clocks (NTP).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid

import sqlalchemy as sa
from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text

from moeplan.errors import MoeplanError

metadata = MetaData()

jobs = Table(
    "moeplan_jobs", metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("status", String(16), nullable=False, index=True),  # queued, running, done, failed
    Column("request", Text, nullable=False),
    Column("result", Text),
    Column("error", Text),
    Column("attempts", Integer, nullable=False),
    Column("worker", String(128)),
    Column("lease_until", Float),
    Column("created", Float, nullable=False),
    Column("started", Float),
    Column("finished", Float),
)

plans = Table(
    "moeplan_plans", metadata,
    Column("key", String(128), primary_key=True),  # study name, trials and verify
    Column("plan", Text, nullable=False),
    Column("created", Float, nullable=False),
)

leases = Table(
    "moeplan_leases", metadata,
    Column("key", String(128), primary_key=True),
    Column("owner", String(128), nullable=False),
    Column("lease_until", Float, nullable=False),
)

WORKER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def worker_id() -> str:
    """This process's name in leases and jobs (host, pid, and a nonce in case a pid is reused)."""
    return WORKER


def display_url(url: str) -> str:
    """The URL with its password hidden, for responses and logs."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url


def connect(url: str) -> sa.Engine:
    """An engine on the study database with the service's tables created (racing workers retry)."""
    if url in (":memory:", "memory") or url.startswith("journal:"):
        raise MoeplanError("moeplan serve keeps its jobs in the study database: give --storage an SQLite "
                           "(sqlite:///FILE) or PostgreSQL (postgresql+psycopg://...) URL")
    try:
        if url.startswith("sqlite"):
            engine = sa.create_engine(url, connect_args={"timeout": 60})

            @sa.event.listens_for(engine, "connect")
            def _pragmas(connection, _record):  # the same settings the planner's store uses
                cursor = connection.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.close()
        else:
            engine = sa.create_engine(url, pool_pre_ping=True)
        for attempt in range(5):
            try:
                metadata.create_all(engine, checkfirst=True)
                break
            except (sa.exc.IntegrityError, sa.exc.ProgrammingError, sa.exc.OperationalError):
                if attempt == 4:
                    raise
                time.sleep(0.3 * (attempt + 1))
    except sa.exc.SQLAlchemyError as err:
        raise MoeplanError(f"cannot open storage {display_url(url)!r}: {type(err).__name__}: "
                           f"{str(err).splitlines()[0]}") from None
    return engine


def claim_lease(engine: sa.Engine, key: str, seconds: float) -> bool:
    """Take the lease `key` if nobody holds it or its holder stopped renewing it."""
    now = time.time()
    with engine.begin() as db:
        taken = db.execute(leases.update().where(leases.c.key == key, leases.c.lease_until < now)
                           .values(owner=WORKER, lease_until=now + seconds)).rowcount
    if taken:
        return True
    try:
        with engine.begin() as db:
            db.execute(leases.insert().values(key=key, owner=WORKER, lease_until=now + seconds))
        return True
    except sa.exc.IntegrityError:
        return False


def release_lease(engine: sa.Engine, key: str) -> None:
    with engine.begin() as db:
        db.execute(leases.delete().where(leases.c.key == key, leases.c.owner == WORKER))


class Heartbeat:
    """Push a lease's deadline back every third of its length until stopped (a context manager).

    `lost` is set if the row no longer names this worker: someone took over after a stall.
    """

    def __init__(self, engine: sa.Engine, table: Table, key_column, key: str, seconds: float, owner_column):
        self.engine, self.table, self.key_column, self.key = engine, table, key_column, key
        self.seconds, self.owner_column = seconds, owner_column
        self.stop, self.lost = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"heartbeat {key}", daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.seconds / 3):
            try:
                with self.engine.begin() as db:
                    renewed = db.execute(self.table.update()
                                         .where(self.key_column == self.key, self.owner_column == WORKER)
                                         .values(lease_until=time.time() + self.seconds)).rowcount
            except sa.exc.SQLAlchemyError:
                continue  # the database is away for a moment: try again next beat
            if not renewed:
                self.lost.set()
                return

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def cached_plan(engine: sa.Engine, key: str) -> str | None:
    with engine.connect() as db:
        return db.execute(sa.select(plans.c.plan).where(plans.c.key == key)).scalar()


def store_plan(engine: sa.Engine, key: str, plan_json: str) -> None:
    try:
        with engine.begin() as db:
            db.execute(plans.insert().values(key=key, plan=plan_json, created=time.time()))
    except sa.exc.IntegrityError:
        pass  # an identical answer is already there
