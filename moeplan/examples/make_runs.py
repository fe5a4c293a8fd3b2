"""Write runs.csv: a SYNTHETIC sample of training runs for trying `moeplan fit` (not measurements).

    python -m moeplan.examples.make_runs     # from a checkout: it reads tests/data

Every 6th of [HY]'s published design points (Table 6: N, N_a, D, G, S and its fit/validation split,
tests/data/hy_table6_configs.csv), with the loss the published [HY] law predicts there plus Gaussian noise
(sigma 0.005 nats, seed 0). Each row says `source=synthetic`. Fitting it recovers roughly the published
constants; it says nothing about real models.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from moeplan.laws import get_law

HERE = Path(__file__).parent
DESIGN = HERE.parent.parent / "tests" / "data" / "hy_table6_configs.csv"
COLUMNS = ("N", "N_a", "D", "G", "S")


def main() -> Path:
    rows = list(csv.DictReader(open(DESIGN)))[::6]
    x = {k: np.array([float(r[k]) for r in rows]) for k in COLUMNS}
    loss = get_law("hy").evaluate(**x) + np.random.default_rng(0).normal(0, 0.005, len(rows))
    out = HERE / "runs.csv"
    with open(out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*COLUMNS, "split", "loss", "source"])
        for i, r in enumerate(rows):
            writer.writerow([r[k] for k in COLUMNS] + [r["split"], f"{loss[i]:.5f}", "synthetic"])
    return out


if __name__ == "__main__":
    print(f"wrote {main()}")
