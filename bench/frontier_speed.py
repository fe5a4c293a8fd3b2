"""`moeplan frontier --from 1e18 --to 1e26` at 2 and 10 budgets per decade: CPU and wall, and the floor.

    python bench/frontier_speed.py [--runs 3]

Goals (issue 18): at most 3 s of CPU with --per-decade 2 (17 exact optima), at most 10 s with
--per-decade 10 (81), imports and both worker processes included. CPU is the goal because the
machine is shared; wall is shown beside it, and both as ratios to the floor measured in the same run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _timing import floor, load, median_run, moeplan  # noqa: E402

GOALS = {2: 3.0, 10: 10.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(load())
    floor_wall, floor_cpu = floor()
    for per_decade, goal in GOALS.items():
        command = moeplan("frontier", "--from", "1e18", "--to", "1e26", "--per-decade", str(per_decade), "--json")
        wall, cpu, walls = median_run(command, args.runs)
        print(f"moeplan frontier --from 1e18 --to 1e26 --per-decade {per_decade}: CPU {cpu:.2f} s "
              f"({cpu / floor_cpu:.1f}x floor), wall {wall:.2f} s ({wall / floor_wall:.1f}x floor), median of "
              f"{args.runs}; goal CPU <= {goal:g} s: {'met' if cpu <= goal else 'NOT met'}")


if __name__ == "__main__":
    main()
