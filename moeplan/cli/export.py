"""`moeplan export ARCH_OR_PLAN.json --format hf|megatron --out PATH`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from moeplan.cli.common import ForceOpt, stderr
from moeplan.errors import UsageError
from moeplan.files import write_text_atomic
from moeplan.flops.export import export_target, render_export, write_export
from moeplan.flops.hf import load_architecture
from moeplan.jsonio import read_json

FormatOpt = Annotated[Literal["hf", "megatron", "torchtitan"], typer.Option(
    "--format", "-f", help="hf (config.json), megatron (a plan made with --gpus: a runnable launch script with its "
    "layout; otherwise the model's arguments) or torchtitan (TOML; a plan made with --gpus).")]
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
    """Export an architecture as a transformers config.json, Megatron-LM arguments, or a plan's training job."""
    if out is not None:
        export_target(out, fmt, force)  # before reading anything: one line if the output cannot be written
    if fmt != "hf":
        from moeplan.cluster.launch import job_from_plan

        job = job_from_plan(source, fmt)  # a plan made with --gpus carries its layout: the whole job
        if job is None and fmt == "torchtitan":
            raise UsageError("--format torchtitan needs a plan made with --gpus (moeplan plan --gpus N ... --json): "
                             "it carries the parallel layout and the training flags")
        if job is not None:
            if out is None:
                sys.stdout.write(job)
            else:
                stderr.print(f"wrote {write_text_atomic(export_target(out, fmt, force), job, parents=True, force=force)}")
            return
    arch = load_architecture(source)
    if family is None and fmt == "hf":
        family = _planned_family(source)
    if out is None:
        sys.stdout.write(render_export(arch, fmt, family))
        return
    written = write_export(arch, fmt, out, family, force)
    stderr.print(f"wrote {written}")


def _planned_family(source: Path) -> str | None:
    """The family a plan JSON was planned for (its counts assume that family's features)."""
    request = read_json(source).get("request")
    family = request.get("family") if isinstance(request, dict) else None
    return family if isinstance(family, str) else None
