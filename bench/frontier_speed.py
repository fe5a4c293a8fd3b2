"""`moeplan frontier --from 1e18 --to 1e26 --per-decade 2` in a fresh process: median wall time of N runs.

    python bench/frontier_speed.py [--runs 3]

Goal (issue 8): under 10 s on a 2-core machine (17 exact optima, imports included).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    exe = Path(sys.executable).with_name("moeplan")
    command = [str(exe) if exe.exists() else "moeplan", "frontier", "--from", "1e18", "--to", "1e26",
               "--per-decade", "2", "--json"]
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(f"moeplan frontier --from 1e18 --to 1e26 --per-decade 2: median {median:.2f} s over {args.runs} runs "
          f"(min {min(times):.2f}, max {max(times):.2f})")
    print(f"goal < 10 s: {'met' if median < 10 else 'NOT met'}")


if __name__ == "__main__":
    main()
