"""Issue 17's two goals, measured on the command a user types:

    python bench/sweep_regret.py [--simulate 50] [--plot docs/sweeps-comparison.png]

runs `moeplan sweep --law hy --target-flops 1e23 --sweep-flops 1e21 --noise 0.005 --simulate 50 --json`
as a subprocess. Goals: (1) at equal total compute and noise 0.005, the designed sweep's median true regret
of the plan at 1e23 is at most half that of the uniform IsoFLOP grid; (2) the command finishes in under
2 minutes. The floor, timed in the same run, is the same command without --simulate (design only); wall
and CPU time (the command and its worker processes) are both reported, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

COMMAND = ["moeplan", "sweep", "--law", "hy", "--target-flops", "1e23", "--sweep-flops", "1e21", "--noise", "0.005"]


def timed(args: list[str]) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (children: the command and its workers) and stdout of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} failed: {done.stderr.strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulate", type=int, default=50)
    parser.add_argument("--plot", default=None, help="also write the comparison figure here")
    args = parser.parse_args()
    floor_wall, floor_cpu, _ = timed([*COMMAND, "--json"])
    extra = ["--plot", args.plot] if args.plot else []
    wall, cpu, out = timed([*COMMAND, "--simulate", str(args.simulate), "--json", *extra])
    sim = json.loads(out)["simulation"]
    print(f"$ {' '.join(COMMAND)} --simulate {args.simulate}")
    print(f"{'design':>22} {'runs':>5} {'FLOPs':>9} {'median regret':>14} {'mean regret':>12} {'p95':>10} "
          f"{'exact':>6} {'G* [5%, 95%]':>20} {'failed':>6}")
    for d in sim["designs"]:
        r = d["regret"]
        g = d["g_star"]
        print(f"{d['design']:>22} {d['runs']:>5} {d['compute']:>9.3g} {r['median']:>14.3g} {d['mean_regret']:>12.3g} "
              f"{r['p95']:>10.3g} {d['zero_regret']:>6.0%} {g['median']:>6.3f} [{g['p5']:.3f}, {g['p95']:.3f}] "
              f"{d['failed_fits']:>6}")
    designed, uniform = sim["designs"][0], sim["designs"][1]
    met = designed["regret"]["median"] <= 0.5 * uniform["regret"]["median"]
    print(f"median true regret at 1e23: designed {designed['regret']['median']:.3g}, uniform grid "
          f"{uniform['regret']['median']:.3g} nats (mean {designed['mean_regret']:.3g} vs {uniform['mean_regret']:.3g})")
    print(f"goal designed median <= 0.5 x uniform median over {sim['repetitions']} simulations: "
          f"{'met' if met else 'NOT met'}")
    print(f"floor (design only): {floor_wall:.1f} s wall, {floor_cpu:.1f} s CPU")
    print(f"--simulate {args.simulate}: {wall:.1f} s wall, {cpu:.1f} s CPU ({wall / floor_wall:.1f}x the floor); "
          f"goal < 120 s wall: {'met' if wall < 120 else 'NOT met'}")


if __name__ == "__main__":
    main()
