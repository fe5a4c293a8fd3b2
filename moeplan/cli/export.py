"""`moeplan export ARCH_OR_PLAN.json --format hf|megatron --out PATH`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from moeplan.cli.common import stderr
from moeplan.flops.export import render_export, write_export
from moeplan.flops.hf import load_architecture

FormatOpt = Annotated[Literal["hf", "megatron"], typer.Option("--format", "-f", help="hf (config.json) or megatron.")]
FamilyOpt = Annotated[str | None, typer.Option("--family", help="HF model_type (default: chosen by features).")]


def export_command(
    source: Annotated[Path, typer.Argument(help="moeplan architecture JSON, plan JSON (--json), or HF config.json.")],
    fmt: FormatOpt = "hf",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="File or folder to write (default: stdout).")] = None,
    family: FamilyOpt = None,
) -> None:
    """Export an architecture as a transformers config.json or Megatron-LM arguments."""
    arch = load_architecture(source)
    if out is None:
        sys.stdout.write(render_export(arch, fmt, family))
        return
    written = write_export(arch, fmt, out, family)
    stderr.print(f"wrote {written}")
