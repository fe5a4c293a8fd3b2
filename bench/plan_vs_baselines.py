"""Wall and CPU time and regret, in one run: (a) moeplan's planner, (b) plain Optuna TPE, (c) exhaustive enumeration.

    python bench/plan_vs_baselines.py [--flops 1e20 1e22 1e24] [--tpe-trials 1000]

All three search the same default buildable space under the [HY] law. (b) is what a user would write:
TPESampler() with default settings over the six architecture axes, the same objective and constraints,
1000 trials, in memory. (c) evaluates every point (vectorised, chunked) and is the certificate: regret is
each method's best feasible predicted loss minus (c)'s; speed-up compares CPU time, and the floor
`python -c 'import numpy, optuna'` is measured in the same run. Goal (issue 5): (a) at regret 0 and at least
10x faster than (b) and (c).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import optuna

from moeplan.laws import get_law
from moeplan.planner import PlanRequest, plan
from moeplan.planner.solve import enumerate_space
from moeplan.planner.space import Space
from moeplan.planner.study import objective_for

sys.path.insert(0, str(Path(__file__).parent))
from _timing import Clock, floor, load  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flops", type=float, nargs="+", default=[1e20, 1e22, 1e24])
    parser.add_argument("--tpe-trials", type=int, default=1000)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    print(load())
    base = floor()
    print(f"{'budget':>8} {'method':<28} {'wall s':>8} {'CPU s':>8} {'CPU/floor':>10} {'regret':>10} "
          f"{'speed-up of (a)':>16}")
    for flops in args.flops:
        with tempfile.TemporaryDirectory() as tmp:
            request = PlanRequest(flops=flops, storage=f"sqlite:///{Path(tmp) / 'bench.db'}")
            with Clock() as ours_clock:
                ours = plan(request)

        space = Space(request, get_law("hy"))
        with Clock() as enum_clock:
            certificate = enumerate_space(space, 0.0)
        best = float(certificate.loss[0])

        study = optuna.create_study(sampler=optuna.samplers.TPESampler())
        with Clock() as tpe_clock:
            study.optimize(objective_for(space, multi=False), n_trials=args.tpe_trials)
        feasible = [t.value for t in study.trials
                    if t.state == optuna.trial.TrialState.COMPLETE and all(v <= 0 for v in t.constraints.values())]
        tpe_regret = (min(feasible) - best) if feasible else float("inf")

        rows = [("(a) moeplan plan", ours_clock, ours.law.loss - best),
                (f"(b) Optuna TPE, {args.tpe_trials} trials", tpe_clock, tpe_regret),
                (f"(c) enumeration, {certificate.evaluated:,}", enum_clock, 0.0)]
        for name, clock, regret in rows:
            print(f"{flops:>8.0e} {name:<28} {clock.wall:>8.2f} {clock.cpu:>8.2f} {clock.cpu / base[1]:>9.1f}x "
                  f"{regret:>10.2e} {clock.cpu / ours_clock.cpu:>15.1f}x")
    print("goal: (a) at regret 0 and at least 10x faster than (b) and (c)")


if __name__ == "__main__":
    main()
