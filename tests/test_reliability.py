"""Issue 15: what a user has is never lost or damaged by moeplan, a failure or a signal (stores, studies)."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest

from moeplan.errors import MoeplanError
from moeplan.planner import PlanRequest, Priors, plan
from moeplan.planner.study import add_trials, trials_target
from moeplan.store import open_storage

SMALL = ["--flops", "1e21", "--max-d-hidden", "2048", "--max-experts", "64", "--max-top-k", "8", "--max-shared", "2"]
PRIORS = Priors(max_d_hidden=2048, max_experts=64, max_top_k=8, max_shared=2)
MOEPLAN = [sys.executable, "-c", "from moeplan.cli.script import run; run()"]
TORN = ('{"op_code": 0, "worker_id": "x", "study_name": "a", "directions": [1]}\n'
        '{"op_code": 0, "worker_id": "x", "study_nam')


def run(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([*MOEPLAN, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def request(url: str, **kw) -> PlanRequest:
    return PlanRequest(**({"flops": 1e21, "priors": PRIORS, "storage": url} | kw))


# -- stores -------------------------------------------------------------------------------------------
def test_a_torn_journal_is_refused_and_left_as_it_was(tmp_path, cli):
    journal = tmp_path / "j.log"
    journal.write_text(TORN)
    for _ in range(2):
        result = cli("plan", *SMALL, "--storage", f"journal:{journal}")
        assert result.code == 1 and len(result.err.strip().splitlines()) == 1, result.err
        assert "cut off by a crash" in result.err and f"truncate -s 71 {journal}" in result.err
    assert journal.read_text() == TORN
    os.truncate(journal, 71)  # the repair the message gives: Optuna and moeplan read it again
    assert cli("plan", *SMALL, "--storage", f"journal:{journal}", "--json").code == 0


def test_another_applications_sqlite_file_is_refused_untouched(tmp_path, cli):
    app = tmp_path / "app.db"
    with sqlite3.connect(app) as db:
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        db.execute("INSERT INTO users (name) VALUES ('ada')")
    before = app.read_bytes()
    result = cli("plan", *SMALL, "--storage", f"sqlite:///{app}")
    assert result.code == 1, result.err
    assert result.err.strip() == (f"moeplan: error: sqlite:///{app} holds tables of another application (users); "
                                  "moeplan will not add its tables there: give a store of its own")
    assert app.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]  # not even WAL


def test_moeplans_own_tables_are_accepted(tmp_path):
    url = f"sqlite:///{tmp_path / 'team.db'}"
    plan(request(url))
    with sqlite3.connect(tmp_path / "team.db") as db:
        db.execute("CREATE TABLE moeplan_jobs (id INTEGER PRIMARY KEY)")
    assert plan(request(url, flops=2e21)).search.trials > 0


def test_a_file_that_is_not_a_database_is_refused_untouched(tmp_path, cli):
    notes = tmp_path / "notes.db"
    notes.write_text("my notes\n" * 100)
    result = cli("plan", *SMALL, "--storage", f"sqlite:///{notes}")
    assert result.code == 1 and "not an SQLite database" in result.err
    assert notes.read_text() == "my notes\n" * 100


def test_an_existing_store_opens_without_optunas_migration_machinery(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    plan(request(url))
    probe = ("import sys; from moeplan.store import open_storage; import optuna; "
             f"s = open_storage({url!r}); optuna.get_all_study_names(s); "
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.slow
def test_a_server_that_never_answers_gets_one_line_within_seconds():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    port = listener.getsockname()[1]
    start = time.monotonic()
    try:
        result = run("plan", *SMALL, "--storage", f"postgresql+psycopg://u@127.0.0.1:{port}/db", timeout=120)
    finally:
        listener.close()
    assert time.monotonic() - start < 40  # the connect timeout is 10 s
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"moeplan: error: cannot open storage 'postgresql+psycopg://u@127.0.0.1:{port}")


# -- studies ------------------------------------------------------------------------------------------
def test_a_plans_trials_are_stored_in_one_transaction(tmp_path):
    memory = optuna.create_study()
    memory.optimize(lambda t: t.suggest_int("x", 0, 9) ** 2, n_trials=10)
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    stored = optuna.create_study(storage=storage, study_name="s")
    statements = []
    storage._db.set_trace_callback(statements.append)  # moeplan's sqlite3 store: every statement it runs
    add_trials(stored, memory.trials)
    assert [s for s in statements if s.startswith(("BEGIN", "COMMIT"))] == ["BEGIN IMMEDIATE", "COMMIT"]
    assert [(t.number, t.params, t.value) for t in stored.trials] == [(t.number, t.params, t.value)
                                                                      for t in memory.trials]


def test_a_plans_trials_are_stored_in_one_transaction_through_sqlalchemy(tmp_path):
    """Stores moeplan's sqlite3 storage does not open (older schemas, servers) go through RDBStorage."""
    import sqlalchemy

    memory = optuna.create_study()
    memory.optimize(lambda t: t.suggest_int("x", 0, 9) ** 2, n_trials=10)
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}")
    stored = optuna.create_study(storage=storage, study_name="s")
    commits = []
    sqlalchemy.event.listen(storage.engine, "commit", lambda _conn: commits.append(1))
    add_trials(stored, memory.trials)
    assert len(commits) == 1
    assert [(t.number, t.params, t.value) for t in stored.trials] == [(t.number, t.params, t.value)
                                                                      for t in memory.trials]


def test_a_study_is_refused_for_another_request(tmp_path, cli):
    url = f"sqlite:///{tmp_path / 's.db'}"
    first = cli("plan", *SMALL, "--storage", url, "--study", "mine", "--json").json()["search"]["trials"]
    for flags in (["--flops", "1e24"], ["--flops", "1e24", "--resume"]):
        result = cli("plan", *SMALL, *flags, "--storage", url, "--study", "mine")
        assert result.code == 1, result.err
        assert result.err.strip() == ("moeplan: error: study 'mine' was made for another request (flops 1e+21, "
                                      "not 1e+24); use another --study, or the same request to join or --resume it")
    again = cli("plan", *SMALL, "--storage", url, "--study", "mine", "--seed", "3", "--trials", "5", "--json")
    assert again.code == 0 and again.json()["search"]["trials"] == first + 5  # the same request joins it, any seed


def test_a_study_with_finished_trials_survives_a_failing_trial(tmp_path, monkeypatch):
    from moeplan.planner import study as study_module

    url = f"sqlite:///{tmp_path / 's.db'}"
    real, calls = study_module.describe, []

    def describe_then_fail(space, values):
        calls.append(1)
        if len(calls) > 3:  # the objective's fourth trial (plan.py holds its own reference)
            raise RuntimeError("disk on fire")
        return real(space, values)

    monkeypatch.setattr(study_module, "describe", describe_then_fail)
    with pytest.raises(RuntimeError):
        plan(request(url, study_name="kept", trials=20))
    kept = optuna.load_study(study_name="kept", storage=url)
    assert len(kept.trials) == 3 and all(t.state.is_finished() for t in kept.trials)


@pytest.mark.slow
def test_concurrent_plans_on_one_study_record_the_trials_they_ran(tmp_path):
    """Two plans on one fresh SQLite file at once: no schema race, and the target is what both ran."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    procs = [subprocess.Popen([*MOEPLAN, "plan", *SMALL, "--storage", url, "--study", "both", "--trials", "30",
                               "--seed", str(k), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in results]
    study = optuna.load_study(study_name="both", storage=url)
    assert len(study.trials) == trials_target(study) == 60


def test_store_errors_are_moeplan_errors(tmp_path):
    with pytest.raises(MoeplanError, match="a folder"):
        open_storage(f"sqlite:///{tmp_path}")
    with pytest.raises(MoeplanError, match="a folder"):
        open_storage(f"journal:{tmp_path}")


# -- signals ------------------------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


def _start_plan_with_workers(url: str) -> tuple[subprocess.Popen, list[int]]:
    """A long plan on study "w" with two workers, 3 s after they started."""
    p = subprocess.Popen([*MOEPLAN, "plan", *SMALL, "--storage", url, "--study", "w", "--trials", "3000",
                          "--workers", "2", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(_children(p.pid)) < 2:
        time.sleep(0.2)
    workers = _children(p.pid)
    assert workers, "no worker started"
    time.sleep(3)
    return p, workers


@pytest.mark.slow
def test_workers_die_with_a_killed_parent_and_keep_their_trials(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    p, workers = _start_plan_with_workers(url)
    p.kill()
    p.wait()
    assert _all_gone(workers, within=30)
    study = optuna.load_study(study_name="w", storage=url)
    assert all(t.state.is_finished() for t in study.trials) and len(study.trials) > 10


@pytest.mark.slow
def test_ctrl_c_with_workers_stores_every_finished_trial_and_stops_them(tmp_path):
    import signal

    url = f"sqlite:///{tmp_path / 's.db'}"
    p, workers = _start_plan_with_workers(url)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert json.loads(out)["search"]["interrupted"] is True and "Traceback" not in err
    assert _all_gone(workers, within=10)  # multiprocessing's resource tracker leaves when it reads the parent's exit
    study = optuna.load_study(study_name="w", storage=url)
    assert all(t.state.is_finished() for t in study.trials)
    assert json.loads(out)["search"]["trials"] <= len(study.trials) < 3000


# -- output -------------------------------------------------------------------------------------------
def test_user_strings_with_rich_markup_are_printed_as_given(tmp_path, cli, monkeypatch):
    """A path or study name containing `[` crashed the output step after the file or study was written."""
    from tests.robustness_fixtures import ARCH

    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "a[" / "x]"  # the path holds "[/x]", a closing tag to rich
    folder.mkdir(parents=True)
    config = folder / "[bold]model.json"
    config.write_text(json.dumps(ARCH))
    counted = cli("count", config)
    assert counted.code == 0 and "a[/x]/[bold]model" in counted.out, counted.err
    exported = cli("export", config, "--out", folder / "[red]out.json")
    assert exported.code == 0 and exported.err.strip() == f"wrote {folder / '[red]out.json'}", exported.err
    planned = cli("plan", *SMALL, "--study", "[x] [/y]", "--storage", f"sqlite:///{folder / '[db].db'}")
    assert planned.code == 0, planned.err
    assert "study [x] [/y] in" in " ".join(planned.out.split())


def test_a_busy_port_is_one_line_before_any_banner(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    plan(request(url))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = run("dashboard", "--storage", url, "--port", port, timeout=60)
    assert result.returncode == 1
    assert result.stderr == f"moeplan: error: cannot serve on 127.0.0.1:{port}: Address already in use\n"


def _start_bootstrap(tmp_path) -> tuple[subprocess.Popen, list[int]]:
    from tests.test_fit import synthetic, write_runs

    runs = tmp_path.parent / f"{tmp_path.name}-runs.csv"
    write_runs(runs, synthetic(0.005, seed=2))
    p = subprocess.Popen([*MOEPLAN, "fit", runs, "--law", "hy", "--starts", "4", "--bootstrap", "5000",
                          "--out", tmp_path / "fitted.json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(_children(p.pid)) < 2:
        time.sleep(0.1)
    workers = _children(p.pid)
    assert len(workers) >= 2, p.stderr.read() if p.poll() is not None else "no pool"
    time.sleep(1)
    return p, workers


def _all_gone(pids: list[int], within: float = 15) -> bool:
    deadline = time.time() + within
    while time.time() < deadline and any(_alive(w) for w in pids):
        time.sleep(0.1)
    return not any(_alive(w) for w in pids)


@pytest.mark.slow
def test_bootstrap_workers_die_with_a_killed_fit(tmp_path):
    p, workers = _start_bootstrap(tmp_path)
    p.kill()
    p.wait()
    assert _all_gone(workers)
    assert not (tmp_path / "fitted.json").exists()


@pytest.mark.slow
def test_ctrl_c_stops_a_bootstrap_at_once_in_one_line(tmp_path):
    import signal

    p, workers = _start_bootstrap(tmp_path)
    start = time.monotonic()
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert time.monotonic() - start < 10
    assert p.returncode == 130 and err == "moeplan: error: interrupted\n", err
    assert _all_gone(workers)
    assert sorted(x.name for x in tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGINT", "SIGKILL"])
@pytest.mark.parametrize("workers", [1, 2])
def test_a_signal_at_any_moment_loses_nothing_and_leaves_no_process(sig, workers, tmp_path):
    """Signals at spread-out moments (start-up, the solve, store creation, the trials): afterwards the store
    opens, every stored trial is finished, --resume completes the target exactly, no worker is left."""
    import signal

    for k, delay in enumerate((0.4, 1.0, 1.6, 2.5, 4.0)):
        url = f"sqlite:///{tmp_path / f'{k}.db'}"
        args = [*MOEPLAN, "plan", *SMALL, "--storage", url, "--study", "s", "--trials", "400", "--json"]
        p = subprocess.Popen(args + (["--workers", "2"] if workers > 1 else []), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        spawned = _children(p.pid)
        p.send_signal(getattr(signal, sig))
        _, err = p.communicate(timeout=120)
        assert _all_gone(spawned)
        if sig == "SIGINT":
            assert p.returncode in (0, 130) and "Traceback" not in err and len(err.strip().splitlines()) <= 1, err
        if not (tmp_path / f"{k}.db").exists() or "s" not in optuna.get_all_study_names(url):
            continue
        before = {t.number: t.params for t in optuna.load_study(study_name="s", storage=url).trials}
        study = optuna.load_study(study_name="s", storage=url)
        assert all(t.state.is_finished() for t in study.trials)
        resumed = run("plan", *SMALL, "--storage", url, "--study", "s", "--resume", "--json")
        assert resumed.returncode == 0, resumed.stderr
        after = optuna.load_study(study_name="s", storage=url).trials
        assert len(after) == trials_target(optuna.load_study(study_name="s", storage=url)) == 400
        assert all(after[n].params == params for n, params in before.items())


def test_a_new_store_is_what_optuna_and_alembic_would_make(tmp_path):
    """moeplan writes a fresh SQLite store's schema in one transaction, without alembic: the same tables,
    indexes, version row and revision stamp as Optuna's RDBStorage, and Optuna's own checks accept it."""
    def schema(path):
        with sqlite3.connect(path) as db:
            return (sorted(db.execute("SELECT type, name, sql FROM sqlite_master")),
                    db.execute("SELECT * FROM alembic_version").fetchall(),
                    db.execute("SELECT * FROM version_info").fetchall())

    open_storage(f"sqlite:///{tmp_path / 'ours.db'}")
    optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optunas.db'}")
    assert schema(tmp_path / "ours.db") == schema(tmp_path / "optunas.db")
    checked = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'ours.db'}")  # Optuna's compatibility check
    assert checked.get_current_version() == checked.get_head_version()


def test_every_stored_trial_carries_the_constraints_list_the_dashboard_reads(tmp_path):
    """optuna-dashboard reads system attr `constraints` (a list), not Optuna 5's `constraints:<name>`
    (tests/test_team.py checks it through the dashboard's HTTP API)."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    planned = plan(request(url, trials=40))  # TPE past the enqueued trials: some break a prior
    trials = optuna.load_study(study_name=planned.search.study_name, storage=url).trials
    broken = [bool(t.user_attrs.get("violated")) or t.state.name == "PRUNED" for t in trials]
    shown = [any(c > 0 for c in t.system_attrs["constraints"]) for t in trials]
    assert shown == broken and any(broken) and not all(broken)
