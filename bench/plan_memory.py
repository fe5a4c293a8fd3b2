"""`moeplan plan --flops 1e26` under `ulimit -v 4000000`: the default space and every prior widened.

    python bench/plan_memory.py

Goal (issue 18): both finish under a 4,000,000 kB address-space limit within 60 s of CPU, imports and
the study included (the widened space has 3.1e11 configurations and a band of tens of millions at the
default tolerance). Before issue 18 the widened plan grew past 9 GB and died with a numpy
_ArrayMemoryError. Each plan runs in a subprocess with RLIMIT_AS set as `ulimit -v` does; peak resident
memory is read back from the child's rusage.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _timing import floor, load, moeplan, run  # noqa: E402

LIMIT_KB = 4_000_000
WIDENED = ["--max-experts", "1024", "--max-layers", "256", "--max-top-k", "32", "--min-expert-ratio", "0.0625",
           "--max-expert-ratio", "2", "--min-aspect", "8", "--max-aspect", "512", "--ep", "1"]
CASES = {"default space": [], "every prior widened": WIDENED}


def main() -> None:
    print(load())
    floor_wall, floor_cpu = floor()
    for name, extra in CASES.items():
        command = moeplan("plan", "--flops", "1e26", "--storage", ":memory:", *extra)
        wall, cpu = run(command, limit_kb=LIMIT_KB)
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # largest child so far
        print(f"moeplan plan --flops 1e26 ({name}) under ulimit -v {LIMIT_KB}: CPU {cpu:.1f} s "
              f"({cpu / floor_cpu:.0f}x floor), wall {wall:.1f} s ({wall / floor_wall:.0f}x floor), peak RSS of any "
              f"child so far {peak_mb:,.0f} MB; goal CPU <= 60 s: {'met' if cpu <= 60 else 'NOT met'}")


if __name__ == "__main__":
    main()
