"""Speed of the decision tools at the default space (1e22 FLOPs, 214,856,000 designs), in-process.

    python bench/decisions_speed.py

Each line: wall and CPU seconds, and the ratio to the floor measured in the same run (one exact solve
of the loss-optimal band, `solve(space, tolerance)`), so a loaded machine shifts both alike.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from moeplan.flops.hf import load_architecture  # noqa: E402
from moeplan.laws import get_law  # noqa: E402
from moeplan.planner.assess import assess  # noqa: E402
from moeplan.planner.designs import band_axes  # noqa: E402
from moeplan.planner.lifetime import lifetime_plan  # noqa: E402
from moeplan.planner.pareto import pareto_fronts  # noqa: E402
from moeplan.planner.request import PlanRequest  # noqa: E402
from moeplan.planner.robust import robust_plan  # noqa: E402
from moeplan.planner.solve import solve  # noqa: E402
from moeplan.planner.space import Space  # noqa: E402

HY = get_law("hy")


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    request = PlanRequest(flops=1e22, objective="cost", serve_tokens=1e13)
    space = Space(request, HY)
    (band, _, _), floor_wall, floor_cpu = timed(lambda: solve(space, request.tolerance))
    print(f"floor: solve at 1e22          wall {floor_wall:6.2f} s  cpu {floor_cpu:6.2f} s")
    axes = {a: int(v[0]) for a, v in band_axes(space, band).items()}

    perturbed = HY.with_values({"e": HY.values["e"] * 1.6, "f": HY.values["f"] * 0.9}, source="perturbed")
    rows = [
        ("robust: hy + perturbed hy", lambda: robust_plan(request, [("hy", HY), ("perturbed", perturbed)]),
         lambda r: f"minimax regret {r.minimax.worst_regret:.3g}, exact {r.exact}"),
        ("cost: serve 1e13 tokens", lambda: lifetime_plan(space, axes, float(band.loss[0])),
         lambda r: f"saving {r.saving:.1%}, {r.boxes_evaluated:,} boxes"),
        ("pareto: both exact fronts", lambda: pareto_fronts(space),
         lambda r: f"{len(r.points):,} designs, {r.boxes_evaluated:,} boxes"),
        ("assess: Qwen3-30B-A3B, 36T", lambda: assess(load_architecture(
            Path(__file__).resolve().parent.parent / "moeplan/examples/qwen3-30b-a3b.config.json"), 36e12,
            [("hy", HY)], "qwen3"), lambda r: f"regret {r.laws[0].regret:.4f}, {r.space_size:,} designs"),
    ]
    for name, run, say in rows:
        result, wall, cpu = timed(run)
        print(f"{name:30s} wall {wall:6.2f} s  cpu {cpu:6.2f} s  ({cpu / floor_cpu:5.1f}x floor cpu)  {say(result)}")


if __name__ == "__main__":
    main()
