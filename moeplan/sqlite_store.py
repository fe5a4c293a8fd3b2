"""An Optuna storage over the standard library's sqlite3, on Optuna's own RDB schema.

Why: importing SQLAlchemy and Optuna's ORM models costs a plan ~0.2 s, more than the plan itself. The file
stays an ordinary Optuna store: the rows, encodings and errors are RDBStorage's (tests/test_sqlite_store.py
compares both on the same operations), so optuna-dashboard, RDBStorage and Optuna's CLI read and write it.
Each call is one transaction; writes take SQLite's write lock first (BEGIN IMMEDIATE), so concurrent
writers queue instead of deadlocking on a lock upgrade.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import sqlite3
import threading
import uuid
from collections import defaultdict
from collections.abc import Container, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
from optuna import distributions as dists
from optuna.storages import BaseStorage
from optuna.storages._base import DEFAULT_STUDY_NAME_PREFIX
from optuna.study import StudyDirection
from optuna.study._frozen import FrozenStudy
from optuna.trial import FrozenTrial, TrialState

from moeplan import _optuna_schema

WRITTEN_FOR = "v3.2.0.a"  # the Optuna schema revision this module writes; any other goes through RDBStorage
NOT_FOUND = "Record does not exist."  # RDBStorage's KeyError text
_logger = optuna.logging.get_logger(__name__)


# -- encodings: RDBStorage's, as SQLAlchemy stores them on SQLite ------------------------------------------
def stored_time(value: datetime | None) -> str | None:
    """Naive local time -> naive UTC text with microseconds (SQLAlchemy's DateTime format on SQLite)."""
    if value is None:
        return None
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def read_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).astimezone().replace(tzinfo=None)


def stored_value(value: float) -> tuple[float | None, str]:
    """A trial value and its value_type (RDBStorage keeps infinities as NULL plus a type)."""
    if value == math.inf:
        return None, "INF_POS"
    if value == -math.inf:
        return None, "INF_NEG"
    return value, "FINITE"


def stored_intermediate(value: float) -> tuple[float | None, str]:
    return (None, "NAN") if math.isnan(value) else stored_value(value)


def read_value(value: float | None, value_type: str) -> float:
    return {"INF_POS": math.inf, "INF_NEG": -math.inf, "NAN": math.nan}.get(value_type, value)


def create_schema(db: sqlite3.Connection) -> None:
    """What RDBStorage and alembic write into an empty database, in one transaction (`db` in autocommit)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        for statement in _optuna_schema.DDL:
            db.execute(statement)
        db.execute("INSERT INTO alembic_version (version_num) VALUES (?)", (_optuna_schema.REVISION,))
        db.execute("INSERT INTO version_info (version_info_id, schema_version, library_version) VALUES (1, ?, ?)",
                   (_optuna_schema.SCHEMA_VERSION, optuna.__version__))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


# Every connection moeplan opens on an SQLite store, through sqlite3 or SQLAlchemy (moeplan/store.py):
# WAL and synchronous=NORMAL, so a commit costs milliseconds instead of an fsync each.
PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL")


def connect(path: Path, timeout: float) -> sqlite3.Connection:
    """Autocommit (transactions are explicit), with `PRAGMAS`."""
    db = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    for pragma in PRAGMAS:
        db.execute(pragma)
    return db


_STUDY_CHILDREN = ("study_directions", "study_user_attributes", "study_system_attributes")
_TRIAL_CHILDREN = ("trial_params", "trial_values", "trial_user_attributes", "trial_system_attributes",
                   "trial_intermediate_values", "trial_heartbeats")


class SQLiteStorage(BaseStorage):
    """Optuna's BaseStorage on one SQLite file at schema `WRITTEN_FOR`; thread-safe (one connection, a lock)."""

    def __init__(self, path: Path | str, timeout: float = 60.0) -> None:
        self.path, self.timeout = Path(path), timeout
        self._lock = threading.RLock()
        self._db = connect(self.path, timeout)

    @classmethod
    def create(cls, path: Path | str, timeout: float = 60.0) -> SQLiteStorage:
        """A storage on a new store: Optuna's schema written into an empty file."""
        storage = cls(path, timeout)
        try:
            create_schema(storage._db)
        except BaseException:
            storage.close()  # no connection, so no WAL files, left behind a failure
            raise
        return storage

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __getstate__(self) -> dict:  # a pickled storage (a spawned worker) opens its own connection
        return {"path": self.path, "timeout": self.timeout}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state["timeout"])

    # -- transactions --------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute(begin)
            except sqlite3.OperationalError as err:  # the lock timeout: RDBStorage's error for it
                raise optuna.exceptions.StorageInternalError(str(err)) from err
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as err:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(err, sqlite3.Error) and not isinstance(err, sqlite3.IntegrityError):
                    raise optuna.exceptions.StorageInternalError(str(err)) from err  # as RDBStorage wraps them
                raise

    def _read(self):
        return self._transaction("BEGIN")  # one snapshot for the several SELECTs of a call

    def _write(self):
        return self._transaction("BEGIN IMMEDIATE")  # the write lock first: no deadlock on a lock upgrade

    # -- studies -------------------------------------------------------------------------------------------
    def create_new_study(self, directions: Sequence[StudyDirection], study_name: str | None = None) -> int:
        try:
            with self._write() as db:
                while study_name is None:
                    name = DEFAULT_STUDY_NAME_PREFIX + str(uuid.uuid4())
                    if not db.execute("SELECT 1 FROM studies WHERE study_name = ?", (name,)).fetchone():
                        study_name = name
                study_id = db.execute("INSERT INTO studies (study_name) VALUES (?)", (study_name,)).lastrowid
                db.executemany("INSERT INTO study_directions (direction, study_id, objective) VALUES (?, ?, ?)",
                               [(d.name, study_id, k) for k, d in enumerate(directions)])
        except sqlite3.IntegrityError:
            raise optuna.exceptions.DuplicatedStudyError from None
        _logger.info(f"A new study created in RDB with name: {study_name}")
        return study_id

    def delete_study(self, study_id: int) -> None:
        with self._write() as db:
            _study_exists(db, study_id)
            trials = "SELECT trial_id FROM trials WHERE study_id = ?"
            for table in _TRIAL_CHILDREN:
                db.execute(f"DELETE FROM {table} WHERE trial_id IN ({trials})", (study_id,))
            for table in (*_STUDY_CHILDREN, "trials", "studies"):
                db.execute(f"DELETE FROM {table} WHERE study_id = ?", (study_id,))

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self._set_study_attr("study_user_attributes", study_id, key, value)

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self._set_study_attr("study_system_attributes", study_id, key, value)

    def _set_study_attr(self, table: str, study_id: int, key: str, value: Any) -> None:
        with self._write() as db:
            _study_exists(db, study_id)
            db.execute(f"INSERT INTO {table} (study_id, key, value_json) VALUES (?, ?, ?) ON CONFLICT (study_id, "
                       "key) DO UPDATE SET value_json = excluded.value_json", (study_id, key, json.dumps(value)))

    def get_study_id_from_name(self, study_name: str) -> int:
        with self._read() as db:
            row = db.execute("SELECT study_id FROM studies WHERE study_name = ?", (study_name,)).fetchone()
        if row is None:
            raise KeyError(NOT_FOUND)
        return row[0]

    def get_study_name_from_id(self, study_id: int) -> str:
        with self._read() as db:
            return _study_exists(db, study_id)

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        with self._read() as db:
            _study_exists(db, study_id)
            rows = db.execute("SELECT direction FROM study_directions WHERE study_id = ? ORDER BY "
                              "study_direction_id", (study_id,))
            return [StudyDirection[d] for (d,) in rows]

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self._study_attrs("study_user_attributes", study_id)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self._study_attrs("study_system_attributes", study_id)

    def _study_attrs(self, table: str, study_id: int) -> dict[str, Any]:
        with self._read() as db:
            _study_exists(db, study_id)
            rows = db.execute(f"SELECT key, value_json FROM {table} WHERE study_id = ? ORDER BY key",
                              (study_id,)).fetchall()
        return {key: json.loads(value) for key, value in rows}

    def get_all_studies(self) -> list[FrozenStudy]:
        with self._read() as db:
            studies = db.execute("SELECT study_id, study_name FROM studies ORDER BY study_id").fetchall()
            directions, user, system = defaultdict(list), defaultdict(dict), defaultdict(dict)
            for study_id, d in db.execute("SELECT study_id, direction FROM study_directions ORDER BY rowid"):
                directions[study_id].append(StudyDirection[d])
            for attrs, table in ((user, "study_user_attributes"), (system, "study_system_attributes")):
                for study_id, key, value in db.execute(f"SELECT study_id, key, value_json FROM {table} ORDER BY rowid"):
                    attrs[study_id][key] = json.loads(value)
        return [FrozenStudy(study_name=name, direction=None, directions=directions[study_id],
                            user_attrs=user[study_id], system_attrs=system[study_id], study_id=study_id)
                for study_id, name in studies]

    # -- trials: writing -----------------------------------------------------------------------------------
    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        with self._write() as db:
            _study_exists(db, study_id)
            return _insert_trial(db, study_id, template_trial, {})

    def add_finished_trials(self, study_id: int, trials: Sequence[FrozenTrial]) -> list[int]:
        """Store trials (from another study) in one write transaction: what `create_new_trial` does for each."""
        with self._write() as db:
            _study_exists(db, study_id)
            known: dict[str, dists.BaseDistribution] = {}  # each parameter's distribution is looked up once
            return [_insert_trial(db, study_id, trial, known) for trial in trials]

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                        distribution: dists.BaseDistribution) -> None:
        try:
            with self._write() as db:
                study_id, _ = self._updatable(db, trial_id)
                _insert_param(db, study_id, trial_id, param_name, param_value_internal, distribution, {})
        except sqlite3.IntegrityError:  # the parameter is already set: RDBStorage ignores it too
            pass

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Sequence[float] | None = None) -> bool:
        with self._write() as db:
            _, current = self._updatable(db, trial_id)
            for objective, value in enumerate(values or ()):
                _upsert_value(db, trial_id, objective, value)
            if state == TrialState.RUNNING and current != TrialState.WAITING:
                return False  # another worker took this waiting trial (the values stay, as in RDBStorage)
            now = stored_time(datetime.now())
            db.execute("UPDATE trials SET state = ?, datetime_start = CASE WHEN ? THEN ? ELSE datetime_start END,"
                       " datetime_complete = CASE WHEN ? THEN ? ELSE datetime_complete END WHERE trial_id = ?",
                       (state.name, state == TrialState.RUNNING, now, state.is_finished(), now, trial_id))
        return True

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        with self._write() as db:
            self._updatable(db, trial_id)
            db.execute("INSERT INTO trial_intermediate_values (trial_id, step, intermediate_value, "
                       "intermediate_value_type) VALUES (?, ?, ?, ?) ON CONFLICT (trial_id, step) DO UPDATE SET "
                       "intermediate_value = excluded.intermediate_value, intermediate_value_type = "
                       "excluded.intermediate_value_type", (trial_id, step, *stored_intermediate(intermediate_value)))

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._set_trial_attr("trial_user_attributes", trial_id, key, value)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._set_trial_attr("trial_system_attributes", trial_id, key, value)

    def _set_trial_attr(self, table: str, trial_id: int, key: str, value: Any) -> None:
        with self._write() as db:
            self._updatable(db, trial_id)
            _upsert_attr(db, table, trial_id, key, value)

    def _updatable(self, db: sqlite3.Connection, trial_id: int) -> tuple[int, TrialState]:
        """The trial's study and state; KeyError if there is no such trial, UpdateFinishedTrialError if done."""
        row = db.execute("SELECT study_id, state FROM trials WHERE trial_id = ?", (trial_id,)).fetchone()
        if row is None:
            raise KeyError(NOT_FOUND)
        state = TrialState[row[1]]
        if state.is_finished():
            raise optuna.exceptions.UpdateFinishedTrialError(
                f"Trial#{_trial_number(db, trial_id)} has already finished and can not be updated.")
        return row[0], state

    # -- trials: reading -----------------------------------------------------------------------------------
    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        with self._read() as db:
            row = db.execute("SELECT trial_id FROM trials WHERE number = ? AND study_id = ?",
                             (trial_number, study_id)).fetchone()
        if row is None:
            raise KeyError(f"No trial with trial number {trial_number} exists in study with study_id {study_id}.")
        return row[0]

    def get_trial_number_from_id(self, trial_id: int) -> int:
        with self._read() as db:
            return _trial_number(db, trial_id)

    def get_trial_param(self, trial_id: int, param_name: str) -> float:
        with self._read() as db:
            _trial_number(db, trial_id)
            row = db.execute("SELECT param_value FROM trial_params WHERE trial_id = ? AND param_name = ?",
                             (trial_id, param_name)).fetchone()
        if row is None:
            raise KeyError(NOT_FOUND)
        return row[0]

    def get_trial(self, trial_id: int) -> FrozenTrial:
        with self._read() as db:
            trials = _read_trials(db, "trial_id = ?", (trial_id,))
        if not trials:
            raise KeyError(NOT_FOUND)
        return trials[0]

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        where, args = "study_id = ?", [study_id]
        if states is not None:
            names = [s.name for s in TrialState if s in states]
            where += f" AND state IN ({', '.join('?' * len(names))})"
            args += names
        with self._read() as db:
            _study_exists(db, study_id)
            trials = _read_trials(db, where, args)
        return copy.deepcopy(trials) if deepcopy else trials


def _study_exists(db: sqlite3.Connection, study_id: int) -> str:
    """The study's name; KeyError (RDBStorage's) if there is no such study."""
    row = db.execute("SELECT study_name FROM studies WHERE study_id = ?", (study_id,)).fetchone()
    if row is None:
        raise KeyError(NOT_FOUND)
    return row[0]


def _trial_number(db: sqlite3.Connection, trial_id: int) -> int:
    row = db.execute("SELECT number FROM trials WHERE trial_id = ?", (trial_id,)).fetchone()
    if row is None:
        raise KeyError(NOT_FOUND)
    return row[0]


def _insert_trial(db: sqlite3.Connection, study_id: int, template: FrozenTrial | None,
                  known: dict[str, dists.BaseDistribution]) -> int:
    """One trial row and its children, numbered as RDBStorage numbers it (the study's trials before it)."""
    start = datetime.now() if template is None else template.datetime_start
    complete = None if template is None else template.datetime_complete
    state = TrialState.RUNNING if template is None else template.state
    trial_id = db.execute("INSERT INTO trials (number, study_id, state, datetime_start, datetime_complete) "
                          "VALUES ((SELECT count(*) FROM trials WHERE study_id = ?), ?, ?, ?, ?)",
                          (study_id, study_id, state.name, stored_time(start), stored_time(complete))).lastrowid
    if template is None:
        return trial_id
    for objective, value in enumerate(template.values or ()):
        db.execute("INSERT INTO trial_values (trial_id, objective, value, value_type) VALUES (?, ?, ?, ?)",
                   (trial_id, objective, *stored_value(value)))
    for name, value in template.params.items():
        distribution = template.distributions[name]
        _insert_param(db, study_id, trial_id, name, distribution.to_internal_repr(value), distribution, known)
    for table, attrs in (("trial_user_attributes", template.user_attrs),
                         ("trial_system_attributes", template.system_attrs)):
        db.executemany(f"INSERT INTO {table} (trial_id, key, value_json) VALUES (?, ?, ?)",
                       [(trial_id, key, json.dumps(value)) for key, value in attrs.items()])
    db.executemany("INSERT INTO trial_intermediate_values (trial_id, step, intermediate_value, "
                   "intermediate_value_type) VALUES (?, ?, ?, ?)",
                   [(trial_id, step, *stored_intermediate(v)) for step, v in template.intermediate_values.items()])
    return trial_id


def _insert_param(db: sqlite3.Connection, study_id: int, trial_id: int, name: str, internal: float,
                  distribution: dists.BaseDistribution, known: dict[str, dists.BaseDistribution]) -> None:
    """A parameter row, after RDBStorage's check: its distribution must fit the study's earlier ones."""
    if name not in known:
        row = db.execute("SELECT p.distribution_json FROM trial_params p JOIN trials t ON p.trial_id = t.trial_id "
                         "WHERE t.study_id = ? AND p.param_name = ? LIMIT 1", (study_id, name)).fetchone()
        if row is not None:
            known[name] = dists.json_to_distribution(row[0])
    if name in known:
        dists.check_distribution_compatibility(known[name], distribution)
    else:
        known[name] = distribution
    db.execute("INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json) VALUES (?, ?, ?, ?)",
               (trial_id, name, internal, dists.distribution_to_json(distribution)))


def _upsert_value(db: sqlite3.Connection, trial_id: int, objective: int, value: float) -> None:
    db.execute("INSERT INTO trial_values (trial_id, objective, value, value_type) VALUES (?, ?, ?, ?) "
               "ON CONFLICT (trial_id, objective) DO UPDATE SET value = excluded.value, value_type = "
               "excluded.value_type", (trial_id, objective, *stored_value(value)))


def _upsert_attr(db: sqlite3.Connection, table: str, trial_id: int, key: str, value: Any) -> None:
    db.execute(f"INSERT INTO {table} (trial_id, key, value_json) VALUES (?, ?, ?) ON CONFLICT (trial_id, key) "
               "DO UPDATE SET value_json = excluded.value_json", (trial_id, key, json.dumps(value)))


def _read_trials(db: sqlite3.Connection, where: str, args: Sequence) -> list[FrozenTrial]:
    """The trials matching `where` (on table trials), in trial_id order: six queries however many trials."""
    rows = db.execute(f"SELECT trial_id, number, state, datetime_start, datetime_complete FROM trials WHERE {where} "
                      "ORDER BY trial_id", args).fetchall()
    if not rows:
        return []
    chosen = f"trial_id IN (SELECT trial_id FROM trials WHERE {where})"

    def children(columns: str, table: str, order: str) -> dict[int, list[tuple]]:
        found = defaultdict(list)
        for row in db.execute(f"SELECT trial_id, {columns} FROM {table} WHERE {chosen} ORDER BY {order}", args):
            found[row[0]].append(row[1:])
        return found

    # In the order RDBStorage's dicts come in: params by id, the rest as SQLite reads their unique indexes.
    params = children("param_name, param_value, distribution_json", "trial_params", "param_id")
    values = children("objective, value, value_type", "trial_values", "objective")
    user = children("key, value_json", "trial_user_attributes", "key")
    system = children("key, value_json", "trial_system_attributes", "key")
    steps = children("step, intermediate_value, intermediate_value_type", "trial_intermediate_values", "step")
    parsed: dict[str, dists.BaseDistribution] = {}  # a study's trials share a few distributions

    def distribution(text: str) -> dists.BaseDistribution:
        if text not in parsed:
            parsed[text] = dists.json_to_distribution(text)
        return parsed[text]

    trials = []
    for trial_id, number, state, start, complete in rows:
        trial_values = sorted(values.get(trial_id, ()))
        trial_params = {name: (distribution(d), v) for name, v, d in params.get(trial_id, ())}
        trials.append(FrozenTrial(
            number=number, state=TrialState[state], value=None,
            values=[read_value(v, t) for _, v, t in trial_values] if trial_values else None,
            datetime_start=read_time(start), datetime_complete=read_time(complete),
            params={name: d.to_external_repr(v) for name, (d, v) in trial_params.items()},
            distributions={name: d for name, (d, _) in trial_params.items()},
            user_attrs={k: json.loads(v) for k, v in user.get(trial_id, ())},
            system_attrs={k: json.loads(v) for k, v in system.get(trial_id, ())},
            intermediate_values={s: read_value(v, t) for s, v, t in steps.get(trial_id, ())},
            trial_id=trial_id))
    return trials
