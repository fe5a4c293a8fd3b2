"""schemathesis against the live server's OpenAPI schema: generated valid and invalid requests to every operation
(examples, coverage, fuzzing and stateful phases) get no 5xx, no undocumented status, and answers that match
the schema. A token file is set, so every request also goes through the bearer-token check.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from tests.test_serve_server import Server

pytestmark = pytest.mark.slow
CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance,status_code_conformance"


def test_schemathesis_finds_no_server_error_and_no_schema_violation(tmp_path):
    pytest.importorskip("schemathesis")
    tokens = tmp_path / "tokens"
    tokens.write_text("fuzz-token\n")
    server = Server(tmp_path, f"sqlite:///{tmp_path / 'studies.db'}", 1, "--token-file", str(tokens)).start()
    try:
        st = shutil.which("schemathesis") or shutil.which("st")
        command = [st] if st else [sys.executable, "-m", "schemathesis.cli"]
        done = subprocess.run(
            [*command, "run", f"http://127.0.0.1:{server.port}/openapi.json", "--checks", CHECKS,
             "--max-examples", "12", "--seed", "1", "--request-timeout", "300", "--continue-on-failure",
             "--header", "Authorization: Bearer fuzz-token", "--no-color"],
            capture_output=True, text=True, timeout=1800, cwd=tmp_path)
        assert done.returncode == 0, done.stdout[-6000:]
        selected = re.search(r"Selected: (\d+)/(\d+)", done.stdout)
        assert selected and selected[1] == selected[2] == re.search(r"Tested: (\d+)", done.stdout)[1], done.stdout
        assert int(selected[1]) >= 14  # every operation of the schema, none skipped
        assert server.call("GET", "/health")[0] == 200
    finally:
        server.stop()
