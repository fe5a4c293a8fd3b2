"""Team use: one study shared by many workers (PostgreSQL, SQLite, journal), crashes, Ctrl-C, the dashboard.

The PostgreSQL tests start a real server on loopback (initdb + pg_ctl in a temporary folder, trust auth);
`.ci/run` installs PostgreSQL on a bare machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import optuna
import pytest

from moeplan.planner import PlanRequest, Priors, plan
from moeplan.store import open_storage
from tests.loopback import free_port, postgres_bindir, postgres_cluster

SMALL = ["--flops", "1e21", "--max-d-hidden", "2048", "--max-experts", "64", "--max-top-k", "8", "--max-shared", "2"]
REFERENCE = PlanRequest(flops=1e21, priors=Priors(max_d_hidden=2048, max_experts=64, max_top_k=8, max_shared=2),
                        storage=":memory:")
MOEPLAN = [sys.executable, "-c", "from moeplan.cli.script import run; run()"]
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


@pytest.fixture(scope="module")
def reference():
    return plan(REFERENCE)


@pytest.fixture(scope="module")
def postgres_url():
    if postgres_bindir() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed (.ci/run installs it)")
        pytest.skip("PostgreSQL is not installed")
    with postgres_cluster() as url:
        yield url


def moeplan(*args, **kw) -> subprocess.Popen:
    return subprocess.Popen([*MOEPLAN, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kw)


def states(url: str, name: str) -> dict[str, int]:
    study = optuna.load_study(study_name=name, storage=open_storage(url))
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def assert_same_answer(out: str, reference) -> None:
    planned = json.loads(out)
    assert planned["architecture"] == json.loads(reference.architecture.model_dump_json())
    assert planned["law"]["loss"] == reference.law.loss


@pytest.mark.slow  # worker processes, a real server or seconds of wall time
@pytest.mark.parametrize("kind", ["postgres", "journal"])
def test_four_processes_share_one_study(kind, postgres_url, tmp_path, reference):
    """Four processes (as from four machines) x 200 trials on one study: exactly 800 finished, no errors."""
    url = postgres_url if kind == "postgres" else f"journal:{tmp_path / 'studies.journal'}"
    procs = [moeplan("plan", *SMALL, "--storage", url, "--study", "team", "--trials", 200, "--seed", k, "--json")
             for k in range(4)]
    results = [p.communicate(timeout=900) for p in procs]
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
        assert_same_answer(out, reference)
    counted = states(url, "team")
    assert counted.get("COMPLETE", 0) + counted.get("PRUNED", 0) == 800, counted
    assert set(counted) <= {"COMPLETE", "PRUNED"}, counted


@pytest.mark.slow  # worker processes, a real server or seconds of wall time
def test_workers_option_on_sqlite(tmp_path, reference):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    p = moeplan("plan", *SMALL, "--storage", url, "--study", "team", "--trials", 800, "--workers", 4, "--json")
    out, err = p.communicate(timeout=900)
    assert p.returncode == 0, err
    assert_same_answer(out, reference)
    counted = states(url, "team")
    assert counted.get("COMPLETE", 0) + counted.get("PRUNED", 0) == 800 and set(counted) <= {"COMPLETE", "PRUNED"}


def wait_for_finished(url: str, name: str, at_least: int, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            done = sum(v for k, v in states(url, name).items() if k in ("COMPLETE", "PRUNED"))
            if done >= at_least:
                return
        except KeyError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"fewer than {at_least} trials finished in {timeout} s")


def finished(url: str, name: str) -> dict[int, tuple]:
    study = optuna.load_study(study_name=name, storage=url)
    return {t.number: (tuple(sorted(t.params.items())), t.values)
            for t in study.get_trials(deepcopy=False, states=FINISHED)}


@pytest.mark.slow  # worker processes, a real server or seconds of wall time
def test_sigkill_then_resume_loses_and_duplicates_nothing(tmp_path, reference):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    p = moeplan("plan", *SMALL, "--storage", url, "--study", "crash", "--trials", 120, "--json")
    wait_for_finished(url, "crash", 30)
    p.send_signal(signal.SIGKILL)
    p.wait()
    before = finished(url, "crash")
    assert 30 <= len(before) < 120
    r = moeplan("plan", *SMALL, "--storage", url, "--study", "crash", "--resume", "--json")
    out, err = r.communicate(timeout=900)
    assert r.returncode == 0, err
    assert_same_answer(out, reference)
    after = finished(url, "crash")
    assert len(after) == 120  # the target, exactly: nothing lost, nothing run twice
    assert all(after[n] == v for n, v in before.items())
    roles = [t.user_attrs["role"] for t in optuna.load_study(study_name="crash", storage=url).get_trials(
        deepcopy=False, states=FINISHED) if "role" in t.user_attrs]
    assert roles.count("plan") == 1


@pytest.mark.slow  # worker processes, a real server or seconds of wall time
def test_ctrl_c_prints_the_plan_and_exits_130(tmp_path, reference):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    p = moeplan("plan", *SMALL, "--storage", url, "--study", "stop", "--trials", 400, "--json")
    wait_for_finished(url, "stop", 20)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert_same_answer(out, reference)
    assert json.loads(out)["search"]["interrupted"] is True
    assert "interrupted" in err and "--resume" in err and len(err.strip().splitlines()) == 1
    assert len(finished(url, "stop")) >= 20  # kept for --resume


def dashboard_detail(url: str, name: str) -> dict:
    """The study as optuna-dashboard's HTTP API serves it (the data its pages draw)."""
    port = free_port()
    server = moeplan("dashboard", "--storage", url, "--port", port)
    try:
        deadline, studies = time.time() + 60, None
        while time.time() < deadline and studies is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as resp:
                    studies = json.loads(resp.read())["study_summaries"]
            except OSError:
                time.sleep(0.3)
        assert studies is not None, server.stderr.read() if server.poll() is not None else "no answer"
        (entry,) = [s for s in studies if s["study_name"] == name]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{entry['study_id']}", timeout=10) as resp:
            return json.loads(resp.read())
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow  # worker processes, a real server or seconds of wall time
def test_dashboard_serves_the_study(tmp_path, reference):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    planned = plan(REFERENCE.model_copy(update={"storage": url}))
    detail = dashboard_detail(url, planned.search.study_name)
    assert len(detail["trials"]) == planned.search.trials
    params = [{p["name"]: p["param_external_value"] for p in t["params"]} for t in detail["trials"]]
    arch = planned.architecture
    assert {k: str(getattr(arch, k)) for k in params[0]} in params  # the API serialises values as text
    assert detail["objective_names"] == ["predicted_loss"]  # set_metric_names, as the dashboard names it


@pytest.mark.slow
def test_dashboard_shows_infeasible_trials_as_infeasible(tmp_path):
    """optuna-dashboard marks a trial feasible when every entry of its `constraints` list is <= 0."""
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    planned = plan(REFERENCE.model_copy(update={"storage": url, "trials": 60}))  # TPE tries both kinds
    stored = {t.number: t for t in optuna.load_study(study_name=planned.search.study_name, storage=url).trials}
    detail = dashboard_detail(url, planned.search.study_name)
    shown = {t["number"]: all(c <= 0 for c in t["constraints"]) for t in detail["trials"]}
    broken = {n for n, t in stored.items() if t.user_attrs.get("violated") or t.state.name == "PRUNED"}
    assert broken and len(broken) < len(stored)  # the search tried both kinds
    assert {n for n, feasible in shown.items() if not feasible} == broken


def test_same_request_and_seed_give_byte_identical_json():
    runs = [subprocess.run([*MOEPLAN, "plan", *SMALL, "--storage", ":memory:", "--trials", "30", "--json"],
                           capture_output=True, text=True, check=True).stdout for _ in range(2)]
    assert runs[0] == runs[1]
