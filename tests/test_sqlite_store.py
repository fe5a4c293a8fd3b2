"""moeplan's sqlite3 storage writes what Optuna's RDBStorage writes, reads what it reads, and raises what it raises."""

from __future__ import annotations

import contextlib
import math
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from moeplan import _optuna_schema, sqlite_store, store, store_codegen
from moeplan.sqlite_store import SQLiteStorage

MIN, MAX = StudyDirection.MINIMIZE, StudyDirection.MAXIMIZE
DATETIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}")  # SQLAlchemy's DateTime on SQLite
DISTRIBUTIONS = {"i": IntDistribution(1, 64, step=3), "f": FloatDistribution(-1.0, 1.0),
                 "lg": FloatDistribution(1e-5, 1.0, log=True), "li": IntDistribution(1, 1024, log=True),
                 "c": CategoricalDistribution(["a", 2, None, 1.5, "ü"])}


# -- the schema ----------------------------------------------------------------------------------------
def test_the_generated_schema_is_what_the_installed_optuna_makes():
    assert store_codegen.render(store_codegen.optunas_schema()) == store_codegen.TARGET.read_text(), \
        "regenerate: python -m moeplan.store_codegen"


def test_moeplans_table_list_is_optunas_models_and_alembics():
    from optuna.storages._rdb import models

    assert store.optuna_tables() == frozenset(models.BaseModel.metadata.tables) | {"alembic_version"}


def test_the_pinned_revision_is_the_installed_optunas_head():
    """When Optuna's schema moves on, stores fall back to RDBStorage until this module is checked for it."""
    assert sqlite_store.WRITTEN_FOR == _optuna_schema.REVISION == store._schema_head()


def test_another_schema_head_falls_back_to_rdbstorage(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert isinstance(store.open_storage(url), SQLiteStorage)  # fresh: made by moeplan
    assert isinstance(store.open_storage(url), SQLiteStorage)  # existing
    monkeypatch.setattr(sqlite_store, "WRITTEN_FOR", "v9.9.9.a")
    fallback = store.open_storage(url)
    assert isinstance(fallback, optuna.storages.RDBStorage)
    assert fallback.get_current_version() == _optuna_schema.REVISION


def test_an_old_schema_goes_through_rdbstorage_which_asks_for_an_upgrade(tmp_path):
    path = tmp_path / "old.db"
    SQLiteStorage.create(path).close()
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE alembic_version SET version_num = 'v3.0.0.d'")
    with pytest.raises(store.MoeplanError, match="optuna storage upgrade"):  # Optuna's own check, as before
        store.open_storage(f"sqlite:///{path}")
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [("v3.0.0.d",)]


def test_a_plan_on_a_fresh_and_an_existing_store_imports_no_sqlalchemy(tmp_path):
    """The point of this module: SQLAlchemy and Optuna's ORM models cost a plan ~0.2 s of imports."""
    probe = ("import sys; from moeplan.planner import PlanRequest, Priors, plan; "
             "r = PlanRequest(flops=1e21, priors=Priors(max_d_hidden=2048, max_experts=64), "
             "storage='sqlite:///s.db'); plan(r); plan(r.model_copy(update={'flops': 2e21})); "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'alembic') "
             "or m.endswith('_rdb.models')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert out.stdout.strip() == "[]"
    with contextlib.closing(sqlite3.connect(tmp_path / "s.db")) as db:
        assert db.execute("SELECT count(*) FROM studies").fetchone() == (2,)


# -- the same operations through both storages give the same rows -----------------------------------------
@pytest.fixture(scope="module")
def empty_store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("template") / "empty.db"
    SQLiteStorage.create(path).close()
    return path


def rdb(path: Path) -> optuna.storages.RDBStorage:
    """Optuna's RDBStorage on an existing store (made without its migration check: that costs 0.1 s a time)."""
    return store._without_migration(f"sqlite:///{path}", {})


def dump(path: Path) -> dict[str, list[tuple]]:
    """Every row of every table in rowid order, datetimes as their format (their values are the clock's)."""
    def masked(value):
        return "<datetime>" if isinstance(value, str) and DATETIME.fullmatch(value) else value

    with contextlib.closing(sqlite3.connect(path)) as db:
        return {t: [tuple(masked(v) for v in row) for row in db.execute(f"SELECT * FROM {t} ORDER BY rowid")]
                for t in _optuna_schema.TABLES}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6)
attrs = st.dictionaries(st.text(min_size=1, max_size=6), json_values, max_size=3)
objective_values = st.floats(allow_nan=False) | st.sampled_from([math.inf, -math.inf])  # Optuna stores no NaN
steps = st.dictionaries(st.integers(0, 50), st.floats() | st.sampled_from([math.nan, math.inf, -math.inf]),
                        max_size=4)


@st.composite
def finished_trials(draw, n_objectives: int):
    state = draw(st.sampled_from([TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL]))
    names = draw(st.lists(st.sampled_from(sorted(DISTRIBUTIONS)), unique=True, max_size=5))
    params = {n: DISTRIBUTIONS[n].to_external_repr(draw(st.sampled_from(_internal_values(DISTRIBUTIONS[n]))))
              for n in names}
    start = datetime(2025, 1, 2, 3, 4, 5, draw(st.integers(0, 999_999)))
    system = draw(attrs) | {"constraints:x < y": draw(st.floats(-2, 2)), "constraints": [draw(st.floats(-2, 2))]}
    return FrozenTrial(
        number=0, state=state, value=None,
        values=[draw(objective_values) for _ in range(n_objectives)] if state == TrialState.COMPLETE else None,
        datetime_start=start, datetime_complete=start + timedelta(seconds=draw(st.integers(0, 10**6))),
        params=params, distributions={n: DISTRIBUTIONS[n] for n in names}, user_attrs=draw(attrs),
        system_attrs=system, intermediate_values=draw(steps), trial_id=0)


def _internal_values(distribution) -> list[float]:
    if isinstance(distribution, CategoricalDistribution):
        return [float(k) for k in range(len(distribution.choices))]
    return [distribution.low, distribution.high]


def timeless(trial: FrozenTrial) -> str:
    """A trial's repr with its datetimes left out (the clock's, when the storage makes them)."""
    return re.sub(r"datetime\.datetime\([^)]*\)", "<datetime>", repr(trial))


def operations(storage, draw_data: dict, batch) -> list:
    """One script of storage calls; returns what each returned or raised (its exception type)."""
    log = []

    def call(name, *args):
        try:
            result = getattr(storage, name)(*args)
            log.append((name, timeless(result) if isinstance(result, FrozenTrial) else result))
            return result
        except Exception as err:  # noqa: BLE001 - the raised kind is what is compared
            log.append((name, type(err).__name__))
            return None

    one = call("create_new_study", [MIN], "one")
    three = call("create_new_study", [MAX, MIN, MAX], "three ü")
    gone = call("create_new_study", [MIN], "gone")
    call("create_new_study", [MAX], "one")  # DuplicatedStudyError
    for key, value in draw_data["study_attrs"].items():
        call("set_study_user_attr", one, key, value)
        call("set_study_system_attr", three, key, value)
    call("set_study_user_attr", one, "request", {"flops": 1e22, "nested": [1, {"ü": None}]})
    call("set_study_user_attr", one, "request", "overwritten")
    call("set_study_user_attr", 999, "x", 1)  # KeyError

    running = call("create_new_trial", one)
    for name in sorted(DISTRIBUTIONS):
        call("set_trial_param", running, name, _internal_values(DISTRIBUTIONS[name])[1], DISTRIBUTIONS[name])
    call("set_trial_param", running, "i", 4.0, DISTRIBUTIONS["i"])  # already set: ignored by both
    call("set_trial_param", running, "f", 1.0, CategoricalDistribution([1.0]))  # incompatible: ValueError
    for step, value in draw_data["steps"].items():
        call("set_trial_intermediate_value", running, step, value)
    call("set_trial_intermediate_value", running, 0, 1.5)  # overwrites
    for key, value in draw_data["trial_attrs"].items():
        call("set_trial_user_attr", running, key, value)
        call("set_trial_system_attr", running, key, value)
    call("set_trial_system_attr", running, "constraints", [0.0, 1.0])
    call("set_trial_state_values", running, TrialState.COMPLETE, [draw_data["value"]])
    call("set_trial_state_values", running, TrialState.FAIL)  # UpdateFinishedTrialError
    call("set_trial_user_attr", running, "late", 1)  # UpdateFinishedTrialError
    call("set_trial_param", 10**6, "x", 1.0, DISTRIBUTIONS["f"])  # KeyError
    for state in (TrialState.FAIL, TrialState.PRUNED, TrialState.RUNNING):
        trial = call("create_new_trial", one)
        call("set_trial_state_values", trial, state)  # RUNNING while running: False
    waiting = call("create_new_trial", one, FrozenTrial(
        number=0, state=TrialState.WAITING, value=None, values=None, datetime_start=None,
        datetime_complete=None, params={"i": 4}, distributions={"i": DISTRIBUTIONS["i"]},
        user_attrs={"role": "seed"}, system_attrs={"fixed_params": {"i": 4}}, intermediate_values={}, trial_id=0))
    call("set_trial_state_values", waiting, TrialState.RUNNING)  # WAITING -> RUNNING: True
    call("set_trial_state_values", waiting, TrialState.RUNNING)  # taken already: False

    for trial in draw_data["trials"][:2]:
        call("create_new_trial", three, trial)
    batch(storage, three, draw_data["trials"][2:])
    call("create_new_trial", gone, draw_data["trials"][0])
    call("delete_study", gone)
    call("delete_study", gone)  # KeyError
    for trial_id in (running, waiting, 10**6):
        call("get_trial", trial_id)
        call("get_trial_number_from_id", trial_id)
    call("get_trial_id_from_study_id_trial_number", three, 1)
    call("get_trial_id_from_study_id_trial_number", three, 99)  # KeyError
    call("get_trial_param", running, "f")
    call("get_trial_param", running, "nothing")  # KeyError
    call("get_study_id_from_name", "three ü")
    call("get_study_id_from_name", "nothing")  # KeyError
    call("get_study_name_from_id", three)
    call("get_all_trials", 999)  # KeyError
    log.append(("directions", storage.get_study_directions(three)))
    log.append(("best", timeless(storage.get_best_trial(one))))
    return log


def one_transaction(storage, study_id, trials):
    if isinstance(storage, SQLiteStorage):
        return storage.add_finished_trials(study_id, trials)
    return [storage.create_new_trial(study_id, t) for t in trials]


def everything(storage) -> list[str]:
    """What a storage reads back from a store, in a form that compares NaN equal to itself."""
    studies = storage.get_all_studies()
    read = [repr((s.study_name, s._study_id, s.directions, s.user_attrs, s.system_attrs)) for s in studies]
    for s in studies:
        for states in (None, (TrialState.COMPLETE,), (TrialState.RUNNING, TrialState.WAITING)):
            read += [repr(t) for t in storage.get_all_trials(s._study_id, deepcopy=False, states=states)]
    return read


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.fixed_dictionaries({"study_attrs": attrs, "trial_attrs": attrs, "steps": steps, "value": objective_values,
                              "trials": st.lists(finished_trials(3), min_size=2, max_size=6)}))
def test_both_storages_write_the_same_rows_and_read_each_others_stores(tmp_path, empty_store, data):
    folder = Path(tempfile.mkdtemp(dir=tmp_path))  # one per example: no WAL file of the last one around
    ours_path, optunas_path = folder / "ours.db", folder / "optunas.db"
    for path in (ours_path, optunas_path):
        shutil.copy(empty_store, path)
    ours, optunas = SQLiteStorage(ours_path), rdb(optunas_path)
    assert operations(ours, data, one_transaction) == operations(optunas, data, one_transaction)
    assert dump(ours_path) == dump(optunas_path)
    assert everything(ours) == everything(rdb(ours_path))  # Optuna reads our store as we do
    assert everything(SQLiteStorage(optunas_path)) == everything(optunas)  # and we read Optuna's as it does
    ours.close()


def test_studies_through_optunas_api_store_the_same_rows(tmp_path, empty_store):
    """create_study, enqueue, optimize with a failing and a pruned trial, set_metric_names: Optuna's own calls."""
    def objective(trial):
        x = trial.suggest_float("x", -1, 1)
        trial.suggest_categorical("c", ["a", "b"])
        trial.report(x, 0)
        if trial.number == 3:
            raise optuna.TrialPruned
        if trial.number == 4:
            raise RuntimeError("fails")
        return x**2, abs(x)

    dumps = []
    for path, make in ((tmp_path / "ours.db", SQLiteStorage), (tmp_path / "optunas.db", rdb)):
        shutil.copy(empty_store, path)
        study = optuna.create_study(storage=make(path), study_name="s", directions=["minimize", "maximize"],
                                    sampler=optuna.samplers.RandomSampler(seed=1))
        study.set_metric_names(["a", "b"])
        study.enqueue_trial({"x": 0.5, "c": "b"})
        study.optimize(objective, n_trials=8, catch=(RuntimeError,))
        dumps.append(dump(path))
    assert dumps[0] == dumps[1]


# -- reading and writing costs a few statements, not one per trial ---------------------------------------
def test_reading_a_study_costs_the_same_few_statements_for_any_number_of_trials(tmp_path):
    storage = SQLiteStorage.create(tmp_path / "s.db")
    study = optuna.create_study(storage=storage)
    memory = optuna.create_study()
    memory.optimize(lambda t: t.suggest_float("x", 0, 1) + t.suggest_int("y", 0, 3), n_trials=50)
    statements = []
    storage._db.set_trace_callback(statements.append)
    storage.add_finished_trials(study._study_id, memory.trials)
    assert statements[0] == "BEGIN IMMEDIATE" and statements[-1] == "COMMIT"
    assert sum(s.startswith("BEGIN") for s in statements) == 1
    statements.clear()
    assert len(study.get_trials(deepcopy=False)) == 50
    assert len(statements) <= 9, statements  # BEGIN, the study, the trials, their 5 kinds of rows, COMMIT


# -- concurrency ---------------------------------------------------------------------------------------
ADDER = """
import sys, optuna
from moeplan.sqlite_store import SQLiteStorage
storage = SQLiteStorage(sys.argv[1])
memory = optuna.create_study()
memory.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=int(sys.argv[2]))
for k, trial in enumerate(memory.trials):  # single trials through Optuna's path, batches through ours
    if k % 2:
        storage.add_finished_trials(1, [trial, trial])
    else:
        storage.create_new_trial(1, trial)
"""


def test_two_processes_adding_trials_at_once_store_all_with_unique_numbers(tmp_path):
    path = tmp_path / "s.db"
    storage = SQLiteStorage.create(path)
    study_id = storage.create_new_study([MIN], "both")
    n = 40
    procs = [subprocess.Popen([sys.executable, "-c", ADDER, str(path), str(n)]) for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    numbers = [t.number for t in storage.get_all_trials(study_id)]
    per_process = n // 2 + 2 * (n // 2)  # even k: one trial; odd k: a batch of two
    assert sorted(numbers) == list(range(2 * per_process))


# -- the planner's own uses ------------------------------------------------------------------------------
def _small(url: str, **kw):
    from moeplan.planner import PlanRequest, Priors

    return PlanRequest(**({"flops": 1e21, "priors": Priors(max_d_hidden=2048, max_experts=64), "storage": url} | kw))


def test_a_plan_failing_before_its_first_trial_leaves_no_study(tmp_path, monkeypatch):
    from moeplan.planner import plan
    from moeplan.planner import study as study_module

    def fail(*_args):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(study_module, "describe", fail)
    url = f"sqlite:///{tmp_path / 's.db'}"
    with pytest.raises(RuntimeError):
        plan(_small(url, study_name="empty"))
    assert optuna.get_all_study_names(storage=url) == []  # read by Optuna's RDBStorage


def test_resume_fails_the_trials_an_old_moeplan_left_running(tmp_path):
    from moeplan.planner import plan

    url = f"sqlite:///{tmp_path / 's.db'}"
    first = plan(_small(url, study_name="s"))
    storage = store.open_storage(url)
    assert isinstance(storage, SQLiteStorage)
    stale = storage.create_new_trial(storage.get_study_id_from_name("s"))  # as pre-0.2 moeplan left them
    storage.close()
    plan(_small(url, study_name="s", resume=True))
    trials = optuna.load_study(study_name="s", storage=url).trials
    assert [t.state for t in trials if t._trial_id == stale] == [TrialState.FAIL]
    assert len(trials) >= first.search.trials + 1


def test_a_pickled_storage_opens_its_own_connection_to_the_same_store(tmp_path):
    import pickle

    storage = SQLiteStorage.create(tmp_path / "s.db")
    storage.create_new_study([MIN], "s")
    copy = pickle.loads(pickle.dumps(storage))
    assert copy._db is not storage._db and copy.get_study_id_from_name("s") == 1


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_a_fresh_store_and_its_wal_files_honour_the_umask(tmp_path, mask):
    import os

    old = os.umask(mask)
    try:
        storage = store.open_storage(f"sqlite:///{tmp_path / 's.db'}")
        storage.create_new_study([MIN], "s")  # a write: SQLite makes the -wal and -shm files
        modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
        storage.close()
    finally:
        os.umask(old)
    assert modes == {name: 0o666 & ~mask for name in ("s.db", "s.db-wal", "s.db-shm")}


def test_a_store_whose_schema_cannot_be_made_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(_optuna_schema, "DDL", (*_optuna_schema.DDL[:3], "CREATE TABLE broken ("))
    with pytest.raises(store.MoeplanError, match="cannot open storage"):
        store.open_storage(f"sqlite:///{tmp_path / 's.db'}")
    assert list(tmp_path.iterdir()) == []
