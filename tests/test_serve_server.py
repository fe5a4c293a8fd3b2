"""`moeplan serve` as users run it: a real uvicorn server on loopback (random free port), every endpoint called
over HTTP and compared with the CLI's `--json` for the same request; workers killed with SIGKILL during a fit
job; a restart; a graceful shutdown with a request in flight.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.loopback import free_port
from tests.test_team import postgres_url  # noqa: F401  (the fixture: a PostgreSQL cluster on loopback)

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[1]
QWEN = ROOT / "moeplan" / "examples" / "qwen3-30b-a3b.config.json"
RUNS = ROOT / "tests" / "data" / "gadre2024_overtraining_runs.csv"
MOEPLAN = [sys.executable, "-c", "from moeplan.cli.script import run; run()"]
SMALL_ARGS = ["--flops", "1e21", "--max-d-hidden", "2048", "--max-experts", "64", "--max-top-k", "8",
              "--max-shared", "2"]
SMALL = {"flops": 1e21, "priors": {"max_d_hidden": 2048, "max_experts": 64, "max_top_k": 8, "max_shared": 2}}
FIT = {"law": "chinchilla", "columns": {"N": "params_no_embed", "D": "tokens", "loss": "loss_c4_val"},
       "where": {"dataset": "c4_original"}}
FIT_ARGS = ["--law", "chinchilla", "--columns", "N=params_no_embed,D=tokens,loss=loss_c4_val",
            "--where", "dataset=c4_original"]


class Server:
    """`moeplan serve` in a subprocess; its JSON log lines go to `log`."""

    def __init__(self, folder: Path, storage: str, workers: int = 1, *options: str):
        self.folder, self.storage, self.workers, self.options = folder, storage, workers, options
        self.port = free_port()
        self.log = folder / f"serve-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> Server:
        self.process = subprocess.Popen(
            [*MOEPLAN, "serve", "--port", str(self.port), "--storage", self.storage, "--workers", str(self.workers),
             *self.options], cwd=self.folder, stdout=subprocess.DEVNULL, stderr=open(self.log, "a"),
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited {self.process.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if self.call("GET", "/health")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"server not up after {timeout} s: {self.log.read_text()[-2000:]}")

    def call(self, method: str, path: str, body=None, raw: bytes | None = None, headers: dict | None = None,
             timeout: float = 600):
        """(status, parsed JSON or text, headers)."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                status, text, kind = answer.status, answer.read().decode(), answer.headers.get("content-type", "")
        except urllib.error.HTTPError as err:
            status, text, kind = err.code, err.read().decode(), err.headers.get("content-type", "")
        return status, (json.loads(text) if kind.startswith("application/json") else text)

    def stop(self, sig=signal.SIGTERM, timeout: float = 60) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
        return self.process.wait(timeout)

    def wait_job(self, job_id: str, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, job = self.call("GET", f"/api/jobs/{job_id}")
            assert status == 200, job
            if job["status"] in ("done", "failed"):
                return job
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s")


def cli(*args, cwd=None) -> str:
    done = subprocess.run([*MOEPLAN, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    s = Server(folder, f"sqlite:///{folder / 'studies.db'}", 2, "--job-lease", "3").start()
    yield s
    assert s.stop() in (0, -signal.SIGTERM)


def test_every_endpoint_answers_as_the_cli_does(server, tmp_path):
    s = server
    # plan: the CLI on the server's own store finds the study made by the server and answers the same plan
    status, served = s.call("POST", "/api/plan", SMALL)
    assert status == 200, served
    assert served == json.loads(cli("plan", *SMALL_ARGS, "--storage", s.storage, "--json"))
    status, link = s.call("GET", f"/api/studies/{served['search']['study_name']}")
    assert status == 200 and link["trials"] == served["search"]["trials"]
    # count: an architecture as moeplan JSON, and an uploaded HF config
    arch = json.loads(cli("count", QWEN, "--json"))["architecture"]
    (tmp_path / "arch.json").write_text(json.dumps(arch))
    assert s.call("POST", "/api/count", {"architecture": arch, "convention": "6n"})[1] == \
        json.loads(cli("count", tmp_path / "arch.json", "--convention", "6n", "--json"))
    assert s.call("POST", "/api/count/hf?seq_len=2048&causal=false", json.loads(QWEN.read_text()))[1] == \
        json.loads(cli("count", QWEN, "--seq-len", "2048", "--no-causal", "--json"))
    # laws, derive, predict, leverage
    assert s.call("GET", "/api/laws")[1] == json.loads(cli("laws", "--json"))
    assert s.call("POST", "/api/derive", {"law": "hy", "total_params": 1e11, "active_params": 1e10})[1] == \
        json.loads(cli("derive", "--law", "hy", "--total-params", "1e11", "--active-params", "1e10", "--json"))
    qwen = {"hf_config": json.loads(QWEN.read_text())}
    assert s.call("POST", "/api/predict", {"law": "hy", "arch": qwen, "tokens": 3.6e13})[1] == \
        json.loads(cli("predict", "--law", "hy", "--arch", QWEN, "--tokens", "3.6e13", "--json"))
    assert s.call("POST", "/api/predict", {"law": "chinchilla", "total_params": 7e10, "tokens": 1.4e12})[1] == \
        json.loads(cli("predict", "--law", "chinchilla", "--total-params", "7e10", "--tokens", "1.4e12", "--json"))
    assert s.call("POST", "/api/leverage", {"flops": 1e23, "arch": qwen})[1] == \
        json.loads(cli("leverage", "--flops", "1e23", "--arch", QWEN, "--json"))
    # export: the files themselves
    for fmt in ("hf", "megatron"):
        assert s.call("POST", "/api/export", qwen | {"format": fmt})[1] == cli("export", QWEN, "--format", fmt)
    # a figure, as SVG
    status, svg = s.call("POST", "/api/plot/pareto", SMALL)
    assert status == 200 and svg.lstrip().startswith("<?xml") and "Best loss under a memory cap" in svg
    # jobs: a frontier and a fit, each equal to the CLI's output
    status, job = s.call("POST", "/api/frontier", {"start": 1e19, "stop": 1e21, "per_decade": 1})
    assert status == 202 and job["status"] == "queued"
    frontier = s.wait_job(job["id"])
    assert frontier["status"] == "done", frontier["error"]
    assert frontier["result"] == json.loads(cli("frontier", "--from", "1e19", "--to", "1e21", "--per-decade", "1",
                                                "--json"))
    shutil.copy(RUNS, tmp_path / "runs.csv")
    status, job = s.call("POST", "/api/fit", FIT | {"runs": RUNS.read_text(), "bootstrap": 20})
    assert status == 202
    fit = s.wait_job(job["id"])
    assert fit["status"] == "done", fit["error"]
    expected = json.loads(cli("fit", "runs.csv", *FIT_ARGS, "--bootstrap", "20", "--out", "constants.json", "--json",
                              cwd=tmp_path))
    assert fit["result"] == expected | {"out": None}
    assert fit["law_params"] == json.loads((tmp_path / "constants.json").read_text())
    health = s.call("GET", "/health")[1]
    assert health["status"] == "ok" and health["queued_jobs"] == health["running_jobs"] == 0


def test_bad_requests_over_http_leave_the_server_serving(server):
    s = server
    for body, status in (({"flops": "x"}, 422), ({"flops": 1e50}, 422), ({"flops": 1e21, "x": 1}, 422)):
        code, answer = s.call("POST", "/api/plan", body)
        assert code == status and "\n" not in answer["detail"]
    code, answer = s.call("POST", "/api/plan", raw=b"0" * 5_000_000)
    assert code == 413 and answer["detail"] == "request body over this service's limit of 1000000 bytes"
    assert s.call("GET", "/health")[0] == 200
    logs = [json.loads(line) for line in s.log.read_text().splitlines() if line.startswith('{"time"')]
    assert {"method": "POST", "path": "/api/plan", "status": 413} in \
        [{k: entry[k] for k in ("method", "path", "status")} for entry in logs]


def _worker_pid(job: dict) -> int:
    return int(job["worker"].split(":")[1])


def _running(s: Server, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = s.call("GET", f"/api/jobs/{job_id}")[1]
        if job["status"] == "running":
            return job
        assert job["status"] == "queued", job
        time.sleep(0.2)
    raise AssertionError("job never started")


def test_a_worker_killed_during_a_fit_job_is_replaced_by_another(server):
    _kill_during_fit(server)


def test_the_same_on_postgresql(postgres_url, tmp_path):  # noqa: F811
    s = Server(tmp_path, postgres_url, 2, "--job-lease", "3").start()
    try:
        _kill_during_fit(s)
    finally:
        s.stop()


def _kill_during_fit(s: Server) -> None:
    status, job = s.call("POST", "/api/fit", FIT | {"runs": RUNS.read_text(), "bootstrap": 300})
    assert status == 202
    running = _running(s, job["id"])
    time.sleep(1.0)
    os.kill(_worker_pid(running), signal.SIGKILL)
    finished = s.wait_job(job["id"])
    if finished["status"] == "done":  # another worker took it over after the lease ran out, and finished it
        assert finished["attempts"] == 2 and finished["worker"] != running["worker"]
        assert finished["result"]["bootstrap_samples"] == 300
    else:
        assert finished["error"].startswith("abandoned: the worker running it")
    assert s.call("GET", "/health")[0] == 200  # uvicorn replaced the killed worker, or the other one serves


def test_a_restart_loses_no_job_and_sigterm_lets_a_request_finish(tmp_path):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    first = Server(tmp_path, storage, 1, "--job-lease", "3").start()
    status, job = first.call("POST", "/api/fit", FIT | {"runs": RUNS.read_text(), "bootstrap": 200})
    assert status == 202
    _running(first, job["id"])
    first.stop(signal.SIGKILL)  # the only worker dies mid-job: nobody renews the lease
    second = Server(tmp_path, storage, 1, "--job-lease", "3").start()
    try:
        finished = second.wait_job(job["id"])
        assert finished["status"] == "done" and finished["attempts"] == 2, finished
        # graceful shutdown: a plan in flight when SIGTERM arrives still gets its answer
        import threading

        answers = []
        request = threading.Thread(target=lambda: answers.append(second.call("POST", "/api/plan", SMALL)))
        request.start()
        time.sleep(0.5)
        # uvicorn shuts down gracefully, then re-raises the signal: killed by SIGTERM, after the shutdown ran
        assert second.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
        request.join(60)
        assert answers and answers[0][0] == 200 and answers[0][1]["law"]["loss"] > 0
        assert '"event": "worker stopped"' in second.log.read_text()
    finally:
        second.stop(signal.SIGKILL)


def test_plan_with_a_fit_jobs_constants(server, tmp_path):
    """fit -> plan over HTTP: `law_params: "job:ID"` plans with the job's constants and bootstrap, as
    `moeplan plan --law-params` does with the `fit --out` file."""
    import csv

    from moeplan.laws import get_law

    hy = get_law("hy")  # runs at [HY]'s Table 6 design points, losses from the published law
    with open(ROOT / "tests" / "data" / "hy_table6_configs.csv") as f:
        rows = list(csv.DictReader(f))
    lines = ["N,N_a,D,G,S,split,loss"]
    for r in rows:
        x = {k: float(r[k]) for k in ("N", "N_a", "D", "G", "S")}
        lines.append(",".join([*(repr(v) for v in x.values()), r["split"], repr(float(hy.evaluate(**x)))]))
    status, job = server.call("POST", "/api/fit", {"runs": "\n".join(lines) + "\n", "law": "hy", "starts": 8,
                                                   "holdout_column": "split", "bootstrap": 8})
    assert status == 202
    fit = server.wait_job(job["id"])
    assert fit["status"] == "done", fit["error"]
    status, planned = server.call("POST", "/api/plan", SMALL | {"law_params": f"job:{job['id']}"})
    assert status == 200, planned
    (tmp_path / "constants.json").write_text(json.dumps(fit["law_params"]))
    expected = json.loads(cli("plan", *SMALL_ARGS, "--law-params", tmp_path / "constants.json", "--storage",
                              f"sqlite:///{tmp_path / 'cli.db'}", "--json"))
    assert planned["request"]["law_params"] == f"job:{job['id']}"
    for key in ("architecture", "training", "counts"):
        assert planned[key] == expected[key], key
    for key in ("loss", "loss_interval", "constants"):
        assert planned["law"][key] == expected["law"][key], key
    assert planned["search"]["binding"] == expected["search"]["binding"]
    assert planned["law"]["loss_interval"] is not None  # the job's bootstrap samples travelled with its constants
