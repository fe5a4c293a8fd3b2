"""The [HY] fit on its 446 design points with 64 starts, and a 100-sample bootstrap on both cores.

    python bench/fit_speed.py [--starts 64] [--bootstrap 100]

Losses are synthetic: the published [HY] law at [HY] Table 6's 446 configurations plus Gaussian noise
(sigma 0.005). Goals (issue 6): the fit under 10 s; the bootstrap under 60 s on 2 cores. Prints the
recovered G* and S* against the published 6.78 and 0.31.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from moeplan.laws import get_law
from moeplan.laws.fit import Runs, bootstrap, fit_law, huber_objective

sys.path.insert(0, str(Path(__file__).parent))
from _timing import Clock, floor, load, versus_floor  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "hy_table6_configs.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=64)
    parser.add_argument("--bootstrap", type=int, default=100)
    args = parser.parse_args()
    law = get_law("hy")
    rows = list(csv.DictReader(open(DATA)))
    x = {k: np.array([float(r[k]) for r in rows]) for k in ("N", "N_a", "D", "G", "S")}
    runs = Runs(x, law.evaluate(**x) + np.random.default_rng(0).normal(0, 0.005, len(rows)))
    objective = huber_objective(1e-3)
    print(load())
    base = floor()

    with Clock() as fit_clock:
        result = fit_law(law, runs, objective, starts=args.starts)
    t_fit = fit_clock.wall
    v = result.values
    print(f"fit: {len(runs)} runs, {args.starts} starts: {versus_floor(fit_clock.wall, fit_clock.cpu, base)} "
          f"(goal < 10 s: {'met' if t_fit < 10 else 'NOT met'}); "
          f"G* {np.sqrt(v['f'] / v['e']):.3f} (published 6.778), S* {-v['n'] / (2 * v['m']):.3f} (0.315)")

    with Clock() as boot_clock:
        samples = bootstrap(law, runs, objective, v, args.bootstrap, seed=0, workers=2)
    t_boot = boot_clock.wall
    g = [np.sqrt(s["f"] / s["e"]) for s in samples]
    print(f"bootstrap: {len(samples)} samples on 2 workers: {versus_floor(boot_clock.wall, boot_clock.cpu, base)} "
          f"(goal < 60 s: "
          f"{'met' if t_boot < 60 else 'NOT met'}); G* 95% interval [{np.percentile(g, 2.5):.3f}, "
          f"{np.percentile(g, 97.5):.3f}]")


if __name__ == "__main__":
    main()
