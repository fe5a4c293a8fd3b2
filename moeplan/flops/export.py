"""Write an architecture as a Hugging Face config.json or Megatron-LM arguments, atomically."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Literal

from moeplan.errors import MoeplanError
from moeplan.flops.architecture import Architecture
from moeplan.files import write_text_atomic
from moeplan.flops.hf import to_hf_config, to_megatron_args

Format = Literal["hf", "megatron"]


def render_export(arch: Architecture, fmt: Format, family: str | None = None) -> str:
    """The file's text: config.json (indented JSON) or one shell-quoted line of Megatron-LM arguments."""
    if fmt == "hf":
        return json.dumps(to_hf_config(arch, family), indent=2) + "\n"
    if family is not None:
        raise MoeplanError("--family applies to --format hf")
    return shlex.join(to_megatron_args(arch)) + "\n"


def write_export(arch: Architecture, fmt: Format, out: Path, family: str | None = None) -> Path:
    """Render, then write through a temporary file and a rename: never a half-written file."""
    text = render_export(arch, fmt, family)
    out = Path(out)
    if out.is_dir() or (fmt == "hf" and not out.suffix):
        out = out / "config.json"
    return write_text_atomic(out, text, parents=True)
