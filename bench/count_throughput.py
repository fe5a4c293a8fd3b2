"""Architectures counted per second: vectorised (`count_arrays`) versus layer-wise (`count`), one run.

    python bench/count_throughput.py [--n 2000000] [--repeats 5]

Prints the median rate of each path and their ratio. Goal (issue 2): >= 5 million per second vectorised
on a 2-core machine. Counts are checked equal on a sample so the two paths are timing the same thing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from moeplan import Architecture, count
from moeplan.flops.vectorised import count_arrays

sys.path.insert(0, str(Path(__file__).parent))
from _timing import Clock, floor, load, versus_floor  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    n = args.n
    d = rng.integers(1, 17, n) * 1024
    grid = dict(
        n_layers=rng.integers(4, 128, n), d_hidden=d, n_heads=d // 128, n_kv_heads=d // 1024,  # GQA groups of 8
        d_expert=rng.integers(2, 64, n) * 64, n_experts=rng.integers(1, 33, n) * 8,
        top_k=rng.integers(1, 9, n), n_shared_experts=rng.integers(0, 3, n),
    )
    template = Architecture(n_layers=48, d_hidden=2048, n_heads=16, n_kv_heads=2, d_head=128, d_expert=768,
                            n_experts=128, top_k=8, vocab_size=128256, seq_len=4096)

    print(load())
    base = floor()
    vec_times = []
    with Clock() as vec_clock:
        for _ in range(args.repeats):
            start = time.perf_counter()
            out = count_arrays(template, "exact", **grid)
            _ = out.total["without_embeddings"], out.active["without_embeddings"], out.train_flops_per_token
            vec_times.append(time.perf_counter() - start)

    sample = rng.choice(n, size=2000, replace=False)
    archs = [template.model_copy(update={k: int(v[i]) for k, v in grid.items()}) for i in sample]
    start = time.perf_counter()
    counts = [count(a, "exact") for a in archs]
    scalar_time = time.perf_counter() - start
    for i, c in zip(sample, counts, strict=True):
        assert c.train_flops_per_token == out.train_flops_per_token[i]
        assert c.total.all == out.total["all"][i]

    vec_rate = n / statistics.median(vec_times)
    scalar_rate = len(archs) / scalar_time
    print(f"vectorised: {vec_rate / 1e6:.2f} M architectures/s (median of {args.repeats} x {n:,}); all repeats: "
          f"{versus_floor(vec_clock.wall, vec_clock.cpu, base)}")
    print(f"layer-wise: {scalar_rate:,.0f} architectures/s ({len(archs):,} counted)")
    print(f"ratio vectorised/layer-wise: {vec_rate / scalar_rate:,.0f}x")
    print(f"goal >= 5 M/s vectorised: {'met' if vec_rate >= 5e6 else 'NOT met'}")


if __name__ == "__main__":
    main()
