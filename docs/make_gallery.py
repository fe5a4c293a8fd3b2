"""Regenerate the figures of docs/gallery.md from the default request (run from the repository root).

    python docs/make_gallery.py [OUT_DIR]

Each image is drawn by moeplan itself (moeplan.plots over moeplan.planner.curves), never by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

from moeplan.planner import PlanRequest, plan
from moeplan.planner.curves import band_points, budgets, frontier, iso_flop, pareto
from moeplan.plots import band_figure, frontier_figure, iso_flop_figure, pareto_figure, save


def main(out: Path) -> list[Path]:
    request = PlanRequest(flops=1e22, storage=":memory:")
    return [
        save(frontier_figure(frontier(request, budgets(1e18, 1e26, 2))), out / "frontier.png"),
        save(iso_flop_figure(iso_flop(request, [1e20, 1e21, 1e22, 1e23])), out / "isoflop.png"),
        save(band_figure(band_points(request), plan(request)), out / "band.png"),
        save(pareto_figure(pareto(request), request.bytes_per_param), out / "pareto.png"),
    ]


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "gallery"
    for path in main(target):
        print(f"wrote {path}")
