"""`moeplan plan --gpus 1024 --gpu h100 --days 30` in fresh processes: wall and CPU time, beside a floor.

    python bench/plan_cluster.py [--runs 3]

Goal (issue 11): a plan with a cluster takes at most 3 s wall in a fresh process on this machine. The floor
measured in the same run is `moeplan plan --flops 1e22` (no cluster), so a loaded machine shows as a ratio;
CPU time (user + system of the child) is printed beside wall time. The first run of each command creates
its SQLite study store in a temporary folder and is not counted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _timing import moeplan, run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    commands = {"cluster": moeplan("plan", "--gpus", "1024", "--gpu", "h100", "--days", "30"),
                "floor": moeplan("plan", "--flops", "1e22")}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, command in commands.items():
            run(command, tmp)  # creates the study store (and warms the bytecode cache)
            runs = [run(command, tmp) for _ in range(args.runs)]
            results[name] = (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
    for name, (wall, cpu) in results.items():
        print(f"{name:8} {' '.join(commands[name][1:])}: median wall {wall:.2f} s, CPU {cpu:.2f} s "
              f"over {args.runs} runs")
    wall, cpu = results["cluster"]
    print(f"cluster / floor: wall {wall / results['floor'][0]:.2f}x, CPU {cpu / results['floor'][1]:.2f}x")
    print(f"goal wall <= 3 s: {'met' if wall <= 3 else 'NOT met'} (CPU {cpu:.2f} s: "
          f"{'met' if cpu <= 3 else 'not met'} on an idle core)")


if __name__ == "__main__":
    main()
