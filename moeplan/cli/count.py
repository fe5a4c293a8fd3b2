"""`moeplan count CONFIG`: parameters and FLOPs per token of one architecture, by component."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from moeplan.cli.common import ConventionOpt, JsonOpt, SeqLenOpt, emit_json, human, stdout
from moeplan.cli.options import convention_option
from moeplan.flops.count import FLOP_COMPONENTS, PARAM_COMPONENTS, Count, count
from moeplan.flops.hf import load_architecture


def count_command(
    config: Annotated[Path, typer.Argument(help="moeplan architecture JSON, plan JSON or HF config.json.")],
    convention: ConventionOpt = "exact",
    seq_len: SeqLenOpt = None,
    no_causal: Annotated[
        bool, typer.Option("--no-causal", help="exact: score every key (dense masked kernel), no causal halving.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Count parameters (total and active, three conventions) and training FLOPs per token."""
    conv = convention_option(convention)
    result = count(load_architecture(config, seq_len), conv, causal=not no_causal)
    if json_out:
        emit_json(result)
    else:
        render(result, str(config))


def render(c: Count, title: str) -> None:
    """Exact numbers in full, in a table that fits 80 columns: no cell is ever cut (human units follow it)."""
    table = Table(title=escape(title), title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                  caption=f"FLOPs convention {c.convention.value}, seq {c.seq_len:,}, causal {c.causal}",
                  caption_justify="left")
    table.add_column("component", no_wrap=True)
    for header in ("total params", "active params", "train FLOPs/token"):
        table.add_column(header, justify="right", no_wrap=True)
    for comp in dict.fromkeys(PARAM_COMPONENTS + FLOP_COMPONENTS):
        flops = c.train_flops_by_component.get(comp)
        table.add_row(
            comp,
            f"{c.total_by_component[comp]:,}" if comp in c.total_by_component else "",
            f"{c.active_by_component[comp]:,}" if comp in c.active_by_component else "",
            f"{flops:,.0f}" if flops is not None else "",
        )
    table.add_section()
    for label, key in TOTALS:
        table.add_row(label, f"{getattr(c.total, key):,}", f"{getattr(c.active, key):,}", "")
    table.add_row("training", "", "", f"{c.train_flops_per_token:,.0f}")
    stdout.print(table)
    for label, key in TOTALS:
        stdout.print(f"{label}: {human(getattr(c.total, key))} total, {human(getattr(c.active, key))} active")
    stdout.print(f"training FLOPs per token: {human(c.train_flops_per_token)}")


# Shortened so the table fits 80 columns; the JSON keys say the same at length.
TOTALS = (("all", "all"), ("no input embedding", "without_input_embedding"), ("no embeddings", "without_embeddings"))
