"""Write an architecture as a Hugging Face config.json or Megatron-LM arguments, atomically."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Literal

from moeplan.errors import MoeplanError, UsageError
from moeplan.files import check_output, write_text_atomic
from moeplan.flops.architecture import Architecture
from moeplan.flops.hf import to_hf_config, to_megatron_args

Format = Literal["hf", "megatron"]
FILE_IN_FOLDER = {"hf": "config.json", "megatron": "megatron-args.txt", "torchtitan": "torchtitan.toml"}


def render_export(arch: Architecture, fmt: Format, family: str | None = None) -> str:
    """The file's text: config.json (indented JSON) or one shell-quoted line of Megatron-LM arguments."""
    if fmt == "hf":
        return json.dumps(to_hf_config(arch, family), indent=2) + "\n"
    if family is not None:
        raise MoeplanError("--family applies to --format hf")
    return shlex.join(to_megatron_args(arch)) + "\n"


def export_target(out: str | Path, fmt: Format, force: bool = False) -> Path:
    """The file `--out` names, checked before any work.

    A folder is meant when `out` ends with a slash, is an existing folder, or (hf) has no suffix: the file is
    then FOLDER/config.json (hf) or FOLDER/megatron-args.txt, and the folder is created. An existing file is
    replaced only with `force`.
    """
    text = str(out)
    if text.strip() == "":
        raise UsageError("--out needs a file or folder name")
    path = Path(text)
    if text.endswith(("/", "\\")) or path.is_dir() or (fmt == "hf" and not path.suffix):
        if path.exists() and not path.is_dir():
            raise UsageError(f"--out {text}: {path} is a file, not a folder")
        return check_output(path / FILE_IN_FOLDER[fmt], force, parents=True)
    return check_output(path, force)


def write_export(arch: Architecture, fmt: Format, out: str | Path, family: str | None = None,
                 force: bool = False) -> Path:
    """Render, then write through a temporary file and a rename: never a half-written or replaced file."""
    target = export_target(out, fmt, force)
    return write_text_atomic(target, render_export(arch, fmt, family), parents=True, force=force)
