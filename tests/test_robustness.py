"""Every row of docs/robustness.md, checked: exit code (or exception) and the exact one-line message."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from tests.robustness_fixtures import api_call, fill, make

DOC = Path(__file__).resolve().parent.parent / "docs" / "robustness.md"
ROW = re.compile(r"^\| (\d+) \| (.+?) \| `(.+?)` \| (\w+) \| `(.*)` \|$")
ROWS = [ROW.match(line).groups() for line in DOC.read_text().splitlines() if ROW.match(line)]


def test_the_table_has_at_least_a_hundred_rows():
    assert len(ROWS) >= 100
    assert [int(r[0]) for r in ROWS] == list(range(1, len(ROWS) + 1))


@pytest.mark.parametrize(("number", "what", "command", "expected_exit", "message"), ROWS,
                         ids=[f"{r[0]}-{r[1]}" for r in ROWS])
def test_row(number, what, command, expected_exit, message, cli, tmp_path, monkeypatch):
    files = make(tmp_path, command)
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    contents = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    concrete = fill(command, files)
    if concrete.startswith("api: "):
        kind, line = api_call(concrete.removeprefix("api: "))
        assert (kind, line) == (expected_exit, message.replace("{folder}", str(tmp_path)))
        return
    result = cli(*shlex.split(concrete)[1:])
    assert str(result.code) == expected_exit, result.err
    assert result.err.strip() == message.replace("{folder}", str(tmp_path))
    assert result.out == "" and "Traceback" not in result.err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, no study store left
    assert all((tmp_path / name).read_bytes() == data for name, data in contents.items())  # nor changed
