"""Two reference designs to compare a designed sweep against, at the same number of runs and total compute.

- `uniform_grid`: the hand-made IsoFLOP grid: runs split evenly over the same budget ladder, each budget's
  runs spread evenly (a Halton lattice) over log N_a, G, S and log N/N_a of the candidates there.
- `table6_pattern`: [HY] Table 6's 446 configurations (N_a, N, D, G, S; bundled), every k-th one, sizes
  and tokens scaled by one factor so the compute fits, each snapped to the nearest buildable architecture.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from moeplan.sweep.candidates import Pool, Runs

TABLE6 = Path(__file__).with_name("hy_table6_configs.csv")


def _features(pool: Pool) -> np.ndarray:
    """Coordinates the references spread over: log N_a, G, S, log N/N_a."""
    return np.column_stack([np.log(pool.n_a), pool.g, pool.s, np.log(pool.n / pool.n_a)])


def uniform_grid(pool: Pool, budgets: np.ndarray, floor: float, runs: int, total: float) -> Runs:
    """`runs` runs, as even over the budgets as they divide, scaled to spend `total` FLOPs."""
    from scipy.stats import qmc

    per = np.full(len(budgets), runs // len(budgets))
    per[len(budgets) - runs % len(budgets):] += 1  # the remainder goes to the largest budgets
    scale = total / float(per @ budgets)
    features = _features(pool)
    arch, compute = [], []
    for count, budget in zip(per, budgets * scale, strict=True):
        if count == 0:
            continue
        ok = np.flatnonzero(budget / pool.flops_per_token >= floor * pool.total)
        if len(ok) == 0:
            ok = np.argsort(pool.total)[:count]
        x = features[ok]
        low, high = x.min(axis=0), x.max(axis=0)
        unit = (x - low) / np.where(high > low, high - low, 1.0)
        targets = qmc.Halton(unit.shape[1], scramble=False).random(count + 1)[1:]
        arch += _nearest(unit, targets, ok)
        compute += [budget] * count
    return Runs(pool, np.array(arch), np.array(compute))


def _nearest(unit: np.ndarray, targets: np.ndarray, index: np.ndarray) -> list[int]:
    """For each target in turn, the nearest unused row (Euclidean in unit coordinates)."""
    used = np.zeros(len(unit), dtype=bool)
    out = []
    for t in targets:
        d = np.where(used, np.inf, ((unit - t) ** 2).sum(axis=1))
        k = int(np.argmin(d))
        if not np.isfinite(d[k]):  # fewer candidates than runs: reuse the nearest
            k = int(np.argmin(((unit - t) ** 2).sum(axis=1)))
        used[k] = True
        out.append(int(index[k]))
    return out


def table6_rows() -> dict[str, np.ndarray]:
    with open(TABLE6, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {k: np.array([float(r[k]) for r in rows]) for k in ("N_a", "N", "D", "G", "S")}


def table6_pattern(pool: Pool, runs: int, total: float) -> Runs:
    """[HY] Table 6 thinned to `runs` configurations, scaled to `total` FLOPs, snapped to the pool."""
    t6 = table6_rows()
    pick = np.unique(np.linspace(0, len(t6["N"]) - 1, runs).round().astype(int))
    t6 = {k: v[pick] for k, v in t6.items()}
    shrink = np.sqrt(total / float(np.sum(6 * t6["N_a"] * t6["D"])))  # C ≈ 6 N_a D, sizes and tokens alike
    features = _features(pool)
    low, high = features.min(axis=0), features.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    unit = (features - low) / span
    wanted = np.column_stack([np.log(t6["N_a"] * shrink), t6["G"], t6["S"], np.log(t6["N"] / t6["N_a"])])
    arch = np.array(_nearest(unit, (wanted - low) / span, np.arange(len(pool))))
    tokens = t6["D"] * shrink
    compute = tokens * pool.flops_per_token[arch]
    return Runs(pool, arch, compute * (total / compute.sum()))
