"""Read training runs from CSV for fitting: the law's variables and `loss`, checked row by row.

Columns are named as the law's variables (N, N_a, D, G, S, ... and loss), renamed with `columns`
(e.g. {"N": "params", "D": "tokens", "loss": "loss_c4_val"}), or architecture fields plus `tokens`
(n_layers, d_hidden, n_heads, d_expert, n_experts, top_k, vocab_size, ...) counted by moeplan.flops.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from moeplan.errors import MoeplanError, UsageError
from moeplan.flops.count import count
from moeplan.flops.hf import architecture
from moeplan.laws.fit import Runs
from moeplan.laws.inputs import law_inputs
from moeplan.laws.model import Law

HOLDOUT_VALUES = {"validation", "valid", "val", "holdout", "test", "true", "1", "yes"}
ARCH_FIELDS = ("n_layers", "d_hidden", "n_heads", "n_kv_heads", "d_head", "d_expert", "n_experts", "top_k",
               "n_shared_experts", "d_shared_expert", "vocab_size", "seq_len", "n_leading_dense", "d_dense_ffn")
MAY_BE_ZERO = {"S", "S_inactive"}


MAX_CSV_BYTES = 64 << 20  # and MAX_RUNS rows: published fits use hundreds of runs ([HY]: 268)
MAX_RUNS = 100_000


def read_rows(path: Path) -> list[dict[str, str]]:
    from itertools import islice

    from moeplan.jsonio import check_input_file

    check_input_file(path, MAX_CSV_BYTES, "a runs CSV")
    try:
        with open(path, newline="") as handle:
            rows = list(islice(csv.DictReader(handle), MAX_RUNS + 1))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: a folder, not a file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise MoeplanError(f"{path}: cannot read as CSV: {err}") from None
    if not rows:
        raise MoeplanError(f"{path}: no runs (a header line and one row per run are needed)")
    if len(rows) > MAX_RUNS:
        raise MoeplanError(f"{path}: more than {MAX_RUNS:,} runs, the limit of a fit")
    return rows


def _number(row: dict, column: str, line: int) -> float:
    text = (row.get(column) or "").strip()
    try:
        value = float(text)
    except ValueError:
        raise MoeplanError(f"row {line}: column {column!r}: {text!r} is not a number") from None
    if math.isnan(value) or math.isinf(value):
        raise MoeplanError(f"row {line}: column {column!r} is {text}")
    return value


def load_runs(path: Path, law: Law, columns: dict[str, str] | None = None,
              where: dict[str, str] | None = None) -> tuple[Runs, list[dict[str, str]]]:
    """The runs of `path` (those matching `where`) as `law`'s variables and losses; one error per bad cell."""
    rows = read_rows(path)
    for key, value in (where or {}).items():
        if key not in rows[0]:
            raise MoeplanError(f"{path}: no column {key!r} to select runs by")
        rows = [r for r in rows if (r.get(key) or "").strip() == value]
        if not rows:
            raise MoeplanError(f"{path}: no runs with {key} = {value!r}")
    columns = columns or {}
    header = set(rows[0])
    loss_col = columns.get("loss", "loss")
    needed = {v: columns.get(v, v) for v in law.variable_names}
    missing = [c for c in [*needed.values(), loss_col] if c not in header]
    by_architecture = missing and loss_col in header and {"n_layers", "d_hidden", "tokens"} <= header
    if missing and not by_architecture:
        raise MoeplanError(f"{path}: missing column(s) {', '.join(missing)} for law {law.name!r} "
                           f"(or give architecture fields plus 'tokens')")
    values: dict[str, list[float]] = {v: [] for v in law.variable_names}
    losses = []
    for line, row in enumerate(rows, start=2):
        loss = _number(row, loss_col, line)
        if loss <= 0:
            raise MoeplanError(f"row {line}: loss must be positive, got {loss}")
        losses.append(loss)
        if by_architecture:
            fields = {k: int(_number(row, k, line)) for k in ARCH_FIELDS if k in header and row.get(k, "").strip()}
            try:
                family = (row.get("family") or "").strip()
                if family:  # what that transformers family fixes (router bias, q/k norms, ...) is counted too
                    from moeplan.planner.family import plan_family

                    fields |= plan_family(family).features
                inputs = law_inputs(law, count(architecture(fields)), tokens=_number(row, "tokens", line))
            except MoeplanError as err:
                raise MoeplanError(f"row {line}: {err}") from None
        else:
            inputs = {v: _number(row, c, line) for v, c in needed.items()}
        for v in law.variable_names:
            x = inputs[v]
            if x < 0 or (x == 0 and v not in MAY_BE_ZERO):
                raise MoeplanError(f"row {line}: {v} must be positive, got {x:g}")
            values[v].append(x)
    return Runs({k: np.array(v) for k, v in values.items()}, np.array(losses)), rows


def holdout_mask(rows: list[dict[str, str]], column: str | None, fraction: float | None, seed: int) -> np.ndarray:
    """Which runs are held out: marked in `column` (validation, holdout, test, 1, ...) or a random fraction."""
    if column is not None:
        if column not in rows[0]:
            raise MoeplanError(f"no holdout column {column!r} in the runs")
        return np.array([(r.get(column) or "").strip().lower() in HOLDOUT_VALUES for r in rows])
    if fraction is not None:
        rng = np.random.default_rng(seed)
        mask = np.zeros(len(rows), dtype=bool)
        mask[rng.permutation(len(rows))[: int(round(fraction * len(rows)))]] = True
        return mask
    return np.zeros(len(rows), dtype=bool)
