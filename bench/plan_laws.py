"""The planned optimum at one budget under every law the planner accepts, and what finding it cost.

    python bench/plan_laws.py [--flops 1e22]

Laws with a sympy-derived box bound are solved by branch and bound; the others are enumerated (all
configurations). CPU seconds are process time of the solve alone (no study, no imports).
"""

from __future__ import annotations

import argparse
import time

from moeplan.laws import LAWS
from moeplan.planner.request import PlanRequest
from moeplan.planner.solve import solve
from moeplan.planner.space import Space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flops", type=float, default=1e22)
    args = parser.parse_args()
    request = PlanRequest(flops=args.flops, storage=":memory:")
    print("| law | loss | layers | d_hidden | d_expert | n_experts | top_k | shared | evaluated | search | CPU s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, law in LAWS.items():
        if law.can_score() is not None:
            continue
        space = Space(request, law)
        start = time.process_time()
        band, _, evaluated = solve(space, request.tolerance)
        cpu = time.process_time() - start
        v = space.values(*band.point(0))
        print(f"| {name} | {band.loss[0]:.4f} | {v['n_layers']} | {v['d_hidden']} | {v['d_expert']} | "
              f"{v['n_experts']} | {v['top_k']} | {v['n_shared_experts']} | {evaluated:,} of {space.size:,} | "
              f"{'branch and bound' if law.has_bound else 'enumeration'} | {cpu:.2f} |", flush=True)


if __name__ == "__main__":
    main()
