"""Shared test helpers: the bundled data folder and running the CLI in-process as a user would."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs with no example database: a failure found once is not replayed into later, unrelated runs, and
# nothing is written into the checkout (.hypothesis/). Locally the database keeps replaying found failures.
settings.register_profile("ci", database=None, print_blob=True)
if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    settings.load_profile("ci")

DATA = Path(__file__).parent / "data"


class CliResult:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err

    def json(self):
        return json.loads(self.out)


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run `moeplan ARGS...` through the console entry point; returns exit code, stdout, stderr."""
    from moeplan.cli.main import main

    def run(*args: str) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["moeplan", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run
