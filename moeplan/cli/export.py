"""`moeplan export ARCH_OR_PLAN.json --format hf|megatron --out PATH`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.markup import escape

from moeplan.cli.common import ForceOpt, stderr
from moeplan.flops.export import export_target, render_export, write_export
from moeplan.flops.hf import load_architecture, read_json

FormatOpt = Annotated[Literal["hf", "megatron"], typer.Option("--format", "-f", help="hf (config.json) or megatron.")]
FamilyOpt = Annotated[str | None, typer.Option(
    "--family", help="HF model_type (default: the plan's --family, else chosen by the architecture's features).")]


def export_command(
    source: Annotated[Path, typer.Argument(help="moeplan architecture JSON, plan JSON (--json), or HF config.json.")],
    fmt: FormatOpt = "hf",
    out: Annotated[str | None, typer.Option(
        "--out", "-o", help="File, or folder (ending in /, or an existing one) to write config.json into "
        "(default: stdout).")] = None,
    family: FamilyOpt = None,
    force: ForceOpt = False,
) -> None:
    """Export an architecture as a transformers config.json or Megatron-LM arguments."""
    if out is not None:
        export_target(out, fmt, force)  # before reading anything: one line if the output cannot be written
    arch = load_architecture(source)
    if family is None and fmt == "hf":
        family = _planned_family(source)
    if out is None:
        sys.stdout.write(render_export(arch, fmt, family))
        return
    written = write_export(arch, fmt, out, family, force)
    stderr.print(f"wrote {escape(str(written))}")


def _planned_family(source: Path) -> str | None:
    """The family a plan JSON was planned for (its counts assume that family's features)."""
    request = read_json(source).get("request")
    family = request.get("family") if isinstance(request, dict) else None
    return family if isinstance(family, str) else None
