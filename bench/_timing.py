"""Timing for the benches on a shared machine: wall and CPU time of subprocesses, and the floor.

The floor is `python -c 'import numpy, optuna'` run in the same session: every bench reports its
times as ratios to it, so results from a busy or a quiet machine can be compared. CPU time is the user
plus system time of the process and all its children (RUSAGE_CHILDREN), which other tenants do not inflate
as much as they inflate wall time.

Both sides run with Python's bytecode cache, as an installed program does: the floor's numpy and optuna
come with theirs from pip, so a shell that sets PYTHONDONTWRITEBYTECODE would charge moeplan alone for
compiling its sources on every run. The cache goes to a folder of this session (PYTHONPYCACHEPREFIX), not
into the checkout, and `warm()` fills it before anything is timed.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLOOR = [sys.executable, "-c", "import numpy, optuna"]
_PYCACHE = tempfile.mkdtemp(prefix="moeplan-bench-pycache-")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = _PYCACHE
    return env


def warm(command: list[str], cwd=None) -> None:
    """Run `command` once, untimed, so that the bytecode cache holds everything it imports."""
    subprocess.run(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())


def moeplan(*args: str) -> list[str]:
    """The installed console script (imports whatever `moeplan` is on PYTHONPATH)."""
    exe = Path(sys.executable).with_name("moeplan")
    return [str(exe) if exe.exists() else "moeplan", *args]


def run(command: list[str], cwd=None, limit_kb: int | None = None) -> tuple[float, float]:
    """(wall s, CPU s) of one run of `command`, its children included; stdout discarded, failure raises.
    `limit_kb` caps the address space like `ulimit -v` (set in the child before it starts)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit_kb * 1024, limit_kb * 1024))

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          env=_env(), preexec_fn=limit if limit_kb else None)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def median_run(command: list[str], runs: int, cwd=None) -> tuple[float, float, list[float]]:
    """Median wall, median CPU and all walls of `runs` runs (after one untimed run that warms the cache)."""
    warm(command, cwd)
    times = [run(command, cwd) for _ in range(runs)]
    walls = [w for w, _ in times]
    return statistics.median(walls), statistics.median(c for _, c in times), walls


def floor(runs: int = 5) -> tuple[float, float]:
    """Median wall and CPU of `python -c 'import numpy, optuna'`."""
    warm(FLOOR)
    wall, cpu, _ = median_run(FLOOR, runs)
    print(f"floor `python -c 'import numpy, optuna'`: wall {wall:.2f} s, CPU {cpu:.2f} s (median of {runs})")
    return wall, cpu


def load() -> str:
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


class Clock:
    """Wall and CPU time of a block run in this process (its waited-for children included)."""

    def __enter__(self) -> Clock:
        self._wall, self._cpu = time.perf_counter(), _cpu_now()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self._wall, _cpu_now() - self._cpu


def _cpu_now() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def versus_floor(wall: float, cpu: float, floor_: tuple[float, float]) -> str:
    return f"wall {wall:.2f} s ({wall / floor_[0]:.1f}x floor), CPU {cpu:.2f} s ({cpu / floor_[1]:.1f}x floor)"
