"""`moeplan serve`, in process (FastAPI's TestClient): answers equal the Python API's, bad requests get one-line
4xx answers and the service keeps serving, auth, and the job lease rules. The real server, the browser, the
schema fuzzing and the load run are in the slow tier (test_serve_*.py).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import optuna
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from moeplan.flops.count import count  # noqa: E402
from moeplan.flops.hf import load_architecture  # noqa: E402
from moeplan.planner import PlanRequest, plan  # noqa: E402
from moeplan.serve import db, jobs  # noqa: E402
from moeplan.serve.app import create_app  # noqa: E402
from moeplan.serve.settings import Settings  # noqa: E402

# A small space (about 1.5 s per plan on the project's machine): the shapes of tests/test_team.py.
SMALL = {"flops": 1e21, "priors": {"max_d_hidden": 2048, "max_experts": 64, "max_top_k": 8, "max_shared": 2}}
QWEN = Path(__file__).parents[1] / "moeplan" / "examples" / "qwen3-30b-a3b.config.json"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('serve') / 'studies.db'}"
    with TestClient(create_app(Settings(storage=url), run_jobs=False)) as client:
        yield client, url


def test_plan_is_the_python_apis_plan_and_one_study_per_request(service):
    client, url = service
    first = client.post("/api/plan", json=SMALL)
    assert first.status_code == 200, first.text
    again = client.post("/api/plan", json=SMALL)
    # The Python API on the same store: the study exists, so it adds no trial and answers the same plan.
    expected = plan(PlanRequest(**SMALL, storage=url))
    assert first.json() == again.json() == json.loads(expected.model_dump_json())
    names = optuna.get_all_study_names(storage=url)
    assert names == [expected.search.study_name]
    assert optuna.load_study(study_name=names[0], storage=url).trials.__len__() == expected.search.trials
    link = client.get(f"/api/studies/{expected.search.study_name}").json()
    assert link["trials"] == expected.search.trials and link["dashboard_url"] is None


def test_count_of_an_uploaded_hf_config_is_qwen3s_published_size(service):
    client, _ = service
    c = client.post("/api/count/hf", json=json.loads(QWEN.read_text()))
    assert c.status_code == 200, c.text
    # Qwen3-30B-A3B: 30.5B total, 3.3B activated (Qwen3 technical report, Table 2); the API's exact count
    assert c.json()["total"]["all"] == pytest.approx(30.5e9, rel=0.002)
    assert c.json()["active"]["all"] == pytest.approx(3.3e9, rel=0.02)
    assert c.json() == json.loads(count(load_architecture(QWEN)).model_dump_json())


BAD = [  # (endpoint, body, status, words in the one-line message)
    ("/api/plan", {"flops": "lots"}, 422, "flops: Input should be a valid number"),
    ("/api/plan", {"flops": -1e21}, 422, "flops: Input should be greater than 0"),
    ("/api/plan", {"flops": 1e40}, 422, "flops: Input should be less than or equal to"),
    ("/api/plan", {"flops": 1e10}, 400, "outside this service's range"),
    ("/api/plan", {"flops": 1e21, "colour": "red"}, 422, "colour: Extra inputs are not permitted"),
    ("/api/plan", {"flops": 1e21, "storage": "sqlite:////tmp/elsewhere.db"}, 400, "storage: not accepted"),
    ("/api/plan", {"flops": 1e21, "law_params": "/etc/passwd"}, 400, "law_params: over HTTP, name a finished fit"),
    ("/api/plan", {"flops": 1e21, "law_params": "job:nope"}, 400, "law_params: no fit job 'nope'"),
    ("/api/plan", {"flops": 1e21, "workers": 64}, 400, "workers and resume"),
    ("/api/plan", {"flops": 1e21, "trials": 100000}, 400, "trials 100000 exceeds"),
    ("/api/plan", {"flops": 1e21, "expert_align": 1, "hidden_align": 1, "d_head": 1, "gqa_group": 1}, 400,
     "configurations, above this service's limit"),
    ("/api/plan", {"flops": 1e21, "tolerance": 1.0}, 400, "tolerance 1 exceeds this service's limit of 0.03"),
    ("/api/plan", {"flops": 1e21, "priors": {"max_layers": 10 ** 7, "max_d_hidden": 10 ** 9}}, 422,
     "priors.max_layers: Input should be less than or equal to 4096"),
    ("/api/plan", {"gpu_hours": 1e5}, 422, "gpu_hours needs gpu or gpu_flops"),
    ("/api/plan", [1, 2], 422, "valid dictionary"),
    ("/api/count", {"architecture": {"n_layers": 2}}, 422, "architecture.d_hidden: Field required"),
    ("/api/count/hf", {"model_type": "qwen3_moe", "num_hidden_layers": 10 ** 7, "hidden_size": 64,
                       "num_attention_heads": 4, "moe_intermediate_size": 64, "num_experts": 8,
                       "num_experts_per_tok": 2, "vocab_size": 100, "intermediate_size": 64}, 422,
     "hf_config.num_hidden_layers 10000000 exceeds this service's limit"),
    ("/api/count", {"architecture": {"n_leading_dense": 10 ** 9}}, 422, "n_leading_dense 1000000000 exceeds"),
    ("/api/count", {"architecture": {"n_layers": 2, "d_hidden": 64, "n_heads": 4, "d_expert": 32, "n_experts": 4,
                                     "top_k": 1, "vocab_size": 100, "sliding_layers": False}}, 422,
     "architecture.sliding_layers: a list of layer indices"),
    ("/api/derive", {"law": "nope"}, 400, "unknown law 'nope'"),
    ("/api/predict", {"law": "hy", "tokens": 1e12}, 400, "needs total_params"),
    ("/api/leverage", {"flops": 1e21, "activation_ratio": 2, "granularity": 8}, 422, "activation ratio must be in"),
    ("/api/fit", {"runs": "N,D\n1,2\n", "law": "nope"}, 400, "unknown law"),
    ("/api/frontier", {"start": 1e18, "stop": 1e26, "per_decade": 20}, 400, "budgets exceed"),
    ("/api/export", {"architecture": None, "format": "megatron"}, 422, "exactly one of architecture and hf_config"),
]


@pytest.mark.parametrize(("path", "body", "status", "words"), BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_requests_get_one_line_4xx(service, path, body, status, words):
    client, _ = service
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert words in detail and "\n" not in detail and isinstance(detail, str)
    assert client.get("/health").json()["status"] == "ok"


def test_malformed_and_huge_bodies(service):
    client, _ = service
    r = client.post("/api/plan", content=b'{"flops": 1e21', headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"].startswith("the body is not JSON")
    r = client.post("/api/plan", content=b"[" + b"1," * 600_000 + b"1]", headers={"content-type": "application/json"})
    assert r.status_code == 413 and "limit of 1000000 bytes" in r.json()["detail"]
    assert client.get("/api/jobs/nope").status_code == 404
    assert client.get("/health").status_code == 200


def test_bearer_token(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("# team tokens\ns3cret-one\ns3cret-two\n")
    settings = Settings(storage=f"sqlite:///{tmp_path / 's.db'}", token_file=tokens)
    with TestClient(create_app(settings, run_jobs=False)) as client:
        assert client.get("/api/laws").status_code == 401
        wrong = client.get("/api/laws", headers={"Authorization": "Bearer s3cret"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        assert client.get("/api/laws", headers={"Authorization": "Bearer s3cret-two"}).status_code == 200
        assert client.get("/health").status_code == 200 and client.get("/").status_code == 200


def test_every_error_answer_is_documented_as_one_line():
    schema = create_app(Settings(storage="sqlite://"), run_jobs=False).openapi()
    error = {"$ref": "#/components/schemas/ErrorMessage"}
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            for code, answer in op["responses"].items():
                if code.startswith("4"):
                    assert answer["content"]["application/json"]["schema"] == error, (path, method, code)
    assert {"/api/plan", "/api/count", "/api/count/hf", "/api/laws", "/api/derive", "/api/predict", "/api/leverage",
            "/api/fit", "/api/frontier", "/api/jobs/{job_id}", "/api/export", "/api/plot/{kind}",
            "/health"} <= set(schema["paths"])


def _job_row(engine, attempts: int, lease_until: float, status: str = "running") -> str:
    job = jobs.submit(engine, "frontier", jobs.FrontierJob(start=1e19, stop=1e19))
    with engine.begin() as conn:
        conn.execute(db.jobs.update().where(db.jobs.c.id == job.id).values(
            status=status, attempts=attempts, lease_until=lease_until, worker="gone-host:4242:abc"))
    return job.id


def test_a_job_whose_worker_died_is_taken_over_then_failed_with_the_reason(tmp_path):
    settings = Settings(storage=f"sqlite:///{tmp_path / 's.db'}", job_lease_seconds=5, job_attempts=2)
    engine = db.connect(settings.storage)
    runner = jobs.Runner(settings, engine)
    alive = _job_row(engine, attempts=1, lease_until=time.time() + 60)
    assert runner.claim() is None  # its worker still renews the lease: nobody else may take it
    lost_once = _job_row(engine, attempts=1, lease_until=time.time() - 1)
    taken = runner.claim()
    assert taken["id"] == lost_once and taken["attempts"] == 2 and taken["worker"] == db.WORKER
    assert "attempt 1 was lost with worker gone-host:4242:abc" in taken["error"]
    lost_twice = _job_row(engine, attempts=2, lease_until=time.time() - 1)
    assert runner.claim() is None
    failed = jobs.get(engine, lost_twice)
    assert failed.status == "failed" and failed.finished is not None
    assert failed.error.startswith("abandoned: the worker running it (gone-host:4242:abc) stopped without "
                                   "finishing, 2 time(s)")
    assert jobs.get(engine, alive).status == "running"


def test_identical_concurrent_requests_run_one_study(service):
    from concurrent.futures import ThreadPoolExecutor

    client, url = service
    request = SMALL | {"seed": 7}
    before = set(optuna.get_all_study_names(storage=url))
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: client.post("/api/plan", json=request), range(8)))
    assert {a.status_code for a in answers} == {200}
    assert len({a.text for a in answers}) == 1
    new = set(optuna.get_all_study_names(storage=url)) - before
    assert new == {answers[0].json()["search"]["study_name"]}
    trials = optuna.load_study(study_name=new.pop(), storage=url).trials
    assert len(trials) == answers[0].json()["search"]["trials"]  # no trial run twice


def test_serve_without_the_extra_is_one_line(cli, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if `moeplan[serve]` were not installed
    result = cli("serve")
    assert result.code == 1
    assert result.err == "moeplan: error: moeplan serve needs FastAPI and uvicorn: pip install 'moeplan[serve]'\n"


def test_serve_on_a_taken_port_is_one_line(cli, tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("serve", "--port", port, "--storage", f"sqlite:///{tmp_path / 's.db'}")
    assert result.code == 1
    assert result.err == f"moeplan: error: cannot serve on 127.0.0.1:{port}: Address already in use\n"


def test_a_cluster_budget_plans_what_the_cluster_trains_in_its_days(service):
    """The same request model as the CLI's `--gpus 64 --gpu h100 --days 3`: layout, memory per device, days."""
    client, _ = service
    r = client.post("/api/plan", json={"cluster": {"gpus": 64, "gpu": "h100", "days": 3},
                                       "priors": {"max_d_hidden": 2048, "max_experts": 64}})
    assert r.status_code == 200, r.text
    c = r.json()["cluster"]
    assert c["gpus"] == 64 and c["memory"]["fits"] and c["memory"]["total"] <= c["memory"]["capacity"]
    assert c["days"] == pytest.approx(3.0, rel=1e-9) and c["layout_problems"] == []
