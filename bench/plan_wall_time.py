"""`moeplan plan --flops 1e22` in fresh processes, imports included, as ratios to the floor.

    python bench/plan_wall_time.py [--runs 9]

Goals (issue 18): on an existing default SQLite store, median wall at most 2.5x the floor
(`python -c 'import numpy, optuna'`, measured in the same run); with a fresh store at most 3.5x.
Fresh: each run in a new empty folder. Existing: the store made by a first, untimed run, then `--runs`
timed runs (each adds its plan's trials to the store, as a team's store grows). Also `--storage
:memory:` (no store at all), to show what the store costs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _timing import floor, load, median_run, moeplan, run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--flops", default="1e22")
    args = parser.parse_args()
    command = moeplan("plan", "--flops", args.flops)
    print(load())
    floor_wall, floor_cpu = floor(args.runs)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        memory = median_run(command + ["--storage", ":memory:"], args.runs, cwd=tmp)
        fresh = []
        for k in range(args.runs):
            folder = Path(tmp) / f"fresh{k}"
            folder.mkdir()
            fresh.append(run(command, cwd=folder))
        fresh_wall = sorted(w for w, _ in fresh)[len(fresh) // 2]
        fresh_cpu = sorted(c for _, c in fresh)[len(fresh) // 2]
        existing_dir = Path(tmp) / "existing"
        existing_dir.mkdir()
        run(command, cwd=existing_dir)  # makes the store
        existing = median_run(command, args.runs, cwd=existing_dir)
    rows = [("--storage :memory:", memory[0], memory[1], None),
            ("default store, exists", existing[0], existing[1], 2.5),
            ("default store, fresh", fresh_wall, fresh_cpu, 3.5)]
    print(f"moeplan plan --flops {args.flops}, median of {args.runs}:")
    print(f"  {'case':24} {'wall s':>7} {'CPU s':>7} {'wall/floor':>11} {'CPU/floor':>10}  goal")
    for name, wall, cpu, goal in rows:
        verdict = "" if goal is None else f"<= {goal}x: {'met' if wall / floor_wall <= goal else 'NOT met'}"
        print(f"  {name:24} {wall:7.2f} {cpu:7.2f} {wall / floor_wall:10.2f}x {cpu / floor_cpu:9.2f}x  {verdict}")


if __name__ == "__main__":
    main()
