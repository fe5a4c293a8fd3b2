"""Reading the JSON files users give (configs, plans, fitted constants) and one-line validation messages."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from pydantic import ValidationError

from moeplan.errors import MoeplanError, UsageError

MAX_JSON_BYTES = 64 << 20  # 64 MiB: a config.json is kilobytes; a fit with a large bootstrap a few megabytes


def check_input_file(path: Path, limit: int, kind: str) -> None:
    """Refuse, before reading, what is not a regular file of at most `limit` bytes (a FIFO or /dev/zero would
    block or never end)."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except OSError as err:
        raise MoeplanError(f"{path}: cannot read: {err.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise UsageError(f"{path}: a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"{path}: not a regular file")
    if info.st_size > limit:
        raise MoeplanError(f"{path}: {info.st_size:,} bytes, above the {limit >> 20} MiB limit for {kind}")


def read_json(path: Path) -> dict:
    """A JSON object from `path`, or a one-line error saying why not (also for FIFOs, devices and huge files,
    which are refused before reading)."""
    path = Path(path)
    check_input_file(path, MAX_JSON_BYTES, "a JSON input")
    try:
        data = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError) as err:
        raise MoeplanError(f"{path}: cannot read: {err}") from None
    except json.JSONDecodeError as err:
        raise MoeplanError(f"{path}: not JSON ({err.msg} at line {err.lineno})") from None
    except RecursionError:
        raise MoeplanError(f"{path}: JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise MoeplanError(f"{path}: expected a JSON object")
    return data


def validation_message(err: ValidationError) -> str:
    """One line from a pydantic error: the first problem, with the field it concerns."""
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    return f"{where}: {msg}" if where else msg
