"""`moeplan plan --flops 1e22` in fresh processes, imports included: median wall time of N runs.

    python bench/plan_wall_time.py [--runs 7]

Goal (issue 5): median at most 2 s on a 2-core machine. The first run creates the SQLite study store in a
temporary folder and is reported separately; the median is over the runs after it (the usual case: a
team's store exists). Uses hyperfine's approach without needing it: subprocesses timed end to end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--flops", default="1e22")
    args = parser.parse_args()
    exe = Path(sys.executable).with_name("moeplan")
    command = [str(exe) if exe.exists() else "moeplan", "plan", "--flops", args.flops]
    with tempfile.TemporaryDirectory() as tmp:
        times = []
        for _ in range(args.runs + 1):
            start = time.perf_counter()
            subprocess.run(command, cwd=tmp, check=True, stdout=subprocess.DEVNULL, env=os.environ.copy())
            times.append(time.perf_counter() - start)
    first, rest = times[0], times[1:]
    median = statistics.median(rest)
    print(f"moeplan plan --flops {args.flops}: first run {first:.2f} s (creates the store); "
          f"median {median:.2f} s over {len(rest)} runs (min {min(rest):.2f}, max {max(rest):.2f})")
    print(f"goal median <= 2 s: {'met' if median <= 2 else 'NOT met'}")


if __name__ == "__main__":
    main()
