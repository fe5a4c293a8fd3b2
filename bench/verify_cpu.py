"""`moeplan plan --flops 1e22 --verify` at the defaults: the enumeration certificate's CPU time.

    python bench/verify_cpu.py

Goal (issue 18, and the promise in docs/planning.md): at most 30 s of CPU, imports included, for
enumerating all 214,856,000 configurations of the default space. Shown beside wall time and the floor.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _timing import floor, load, moeplan, run  # noqa: E402


def main() -> None:
    print(load())
    floor_wall, floor_cpu = floor()
    wall, cpu = run(moeplan("plan", "--flops", "1e22", "--storage", ":memory:", "--verify"))
    print(f"moeplan plan --flops 1e22 --verify: CPU {cpu:.1f} s ({cpu / floor_cpu:.0f}x floor), wall {wall:.1f} s "
          f"({wall / floor_wall:.0f}x floor); goal CPU <= 30 s: {'met' if cpu <= 30 else 'NOT met'}")


if __name__ == "__main__":
    main()
