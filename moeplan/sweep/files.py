"""A sweep on disk: sweep.csv in `moeplan fit`'s format (empty loss column), sweep.json, and per run a
transformers config.json and a line of Megatron-LM arguments. Everything is rendered before anything is
written, and every file is written atomically: a failure leaves no half-written file."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from moeplan.errors import MoeplanError
from moeplan.files import write_text_atomic
from moeplan.flops.architecture import Architecture
from moeplan.flops.export import render_export
from moeplan.planner.family import DEFAULT_FAMILY
from moeplan.planner.space import AXES
from moeplan.sweep.candidates import sweep_space
from moeplan.sweep.sweep import Sweep, SweepRun

CSV_COLUMNS = ("run", "compute", "tokens", "family", "n_layers", "d_hidden", "n_heads", "n_kv_heads", "d_head", "d_expert",
               "n_experts", "top_k", "n_shared_experts", "vocab_size", "seq_len", "total_params",
               "N", "N_a", "D", "G", "S", "prior_loss", "loss")


def run_architecture(sweep: Sweep, run: SweepRun) -> Architecture:
    """The run's `Architecture`, built as the planner builds its points (validated on construction)."""
    space = sweep_space(sweep.request, _law(sweep), sweep.request.max_run)
    return space.architecture_of({a: getattr(run, a) for a in AXES})


def _law(sweep: Sweep):
    from moeplan.laws import get_law

    return get_law(sweep.law).with_values(sweep.law_constants, source="sweep prior")


def render_csv(sweep: Sweep) -> str:
    """One row per run: architecture fields, tokens, the law's variables (D = tokens) and an empty loss."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    r = sweep.request
    for run in sweep.runs:
        values = run.model_dump() | {"vocab_size": r.vocab_size, "seq_len": r.seq_len, "D": run.tokens, "loss": "",
                                     "family": DEFAULT_FAMILY}
        writer.writerow([values[c] for c in CSV_COLUMNS])  # floats as repr: they read back exactly
    return out.getvalue()


def run_folder(run: SweepRun) -> str:
    return f"run-{run.run:03d}"


def write_sweep(sweep: Sweep, out: Path) -> list[Path]:
    """Write the sweep into folder `out` (created if needed); returns the files written."""
    if out.exists() and not out.is_dir():
        raise MoeplanError(f"{out}: a file, not a folder (--out takes a folder)")
    texts: dict[Path, str] = {out / "sweep.csv": render_csv(sweep), out / "sweep.json": sweep.model_dump_json(indent=2) + "\n"}
    for run in sweep.runs:
        arch = run_architecture(sweep, run)
        texts[out / "configs" / run_folder(run) / "config.json"] = render_export(arch, "hf", DEFAULT_FAMILY)
        texts[out / "configs" / run_folder(run) / "megatron.args"] = render_export(arch, "megatron")
    return [write_text_atomic(path, text, parents=True) for path, text in texts.items()]
