"""[HY] law evaluated on 10 million points: median wall time of the generated numpy code, one run.

    python bench/law_eval.py [--n 10000000] [--repeats 5]

Goal (issue 4): under one second on a 2-core machine. Also prints sympy.lambdify's time on the same
points, to show the generated code is what lambdify would build.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from moeplan.laws import get_law

sys.path.insert(0, str(Path(__file__).parent))
from _timing import Clock, floor, load, versus_floor  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n = args.n
    points = {"N": rng.uniform(1e8, 1e12, n), "D": rng.uniform(1e9, 1e13, n), "G": rng.uniform(1, 20, n),
              "S": rng.uniform(0, 0.7, n)}
    points["N_a"] = points["N"] * rng.uniform(0.01, 1, n)
    law = get_law("hy")
    print(load())
    base = floor()
    times = []
    with Clock() as clock:
        for _ in range(args.repeats):
            start = time.perf_counter()
            ours = law.evaluate(**points)
            times.append(time.perf_counter() - start)

    import sympy as sp

    expr = law.expression(substitute=True)
    symbols = sorted(expr.free_symbols, key=lambda s: s.name)
    fn = sp.lambdify(symbols, expr, "numpy")
    start = time.perf_counter()
    reference = fn(*(points[s.name] for s in symbols))
    lambdify_time = time.perf_counter() - start
    assert np.allclose(ours, reference, rtol=1e-12, atol=0)

    median = statistics.median(times)
    print(f"[HY] law on {n:,} points: median {median:.3f} s over {args.repeats} runs "
          f"({n / median / 1e6:.1f} M points/s); sympy.lambdify: {lambdify_time:.3f} s")
    print(f"all {args.repeats} runs: {versus_floor(clock.wall, clock.cpu, base)}")
    print(f"goal < 1 s: {'met' if median < 1 else 'NOT met'}")


if __name__ == "__main__":
    main()
