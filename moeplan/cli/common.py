"""Option aliases shared by every command, so flags read the same everywhere, and output helpers."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from pydantic import BaseModel
from rich.console import Console

JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly the result model as JSON on stdout.")]
ConventionOpt = Annotated[
    str, typer.Option("--convention", "-c", help="FLOPs convention: exact, 6n, torchtitan, deepseek, holistic.")
]
SeqLenOpt = Annotated[int | None, typer.Option("--seq-len", min=1, help="Training sequence length.")]

stdout = Console(highlight=False)
stderr = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)  # one line each; paths print as given


def emit_json(model: BaseModel) -> None:
    """The result model and nothing else on stdout."""
    sys.stdout.write(model.model_dump_json(indent=2) + "\n")


def human(x: float, unit: str = "") -> str:
    """3 significant digits with an SI suffix: 30.5B, 3.76e+10 stays readable in a table."""
    for factor, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= factor:
            return f"{x / factor:.3g}{suffix}{unit}"
    return f"{x:.3g}{unit}"
