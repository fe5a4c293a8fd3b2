"""Load: 200 concurrent plan requests (20 distinct) against 4 workers on PostgreSQL give zero errors, identical
answers for identical requests and exactly one stored study per distinct request (bench/serve_load.py, which
also prints the latencies recorded in bench/RESULTS.md).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.test_team import postgres_url  # noqa: F401  (the fixture: a PostgreSQL cluster on loopback)

pytestmark = pytest.mark.slow
BENCH = Path(__file__).parents[1] / "bench" / "serve_load.py"


def test_200_concurrent_plans_on_4_workers_and_postgresql(postgres_url):  # noqa: F811
    pytest.importorskip("uvicorn")
    spec = importlib.util.spec_from_file_location("serve_load", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.run(postgres_url, total=200, distinct=20, workers=4)
    print(bench.report(result))
    assert result["errors"] == 0, result["error_samples"]
    assert result["identical_answers"] and result["studies_match"] and result["trials_match"]
    assert result["stored_studies"] == 20
