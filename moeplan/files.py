"""Files moeplan writes appear whole or not at all: written to a temporary file beside the target, renamed."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from moeplan.errors import MoeplanError


def write_atomic(path: Path, write: Callable[[str], None], suffix: str = ".tmp", parents: bool = False) -> Path:
    """Call `write(temporary_path)`, then rename it onto `path`; a failure leaves neither file behind."""
    path = Path(path)
    tmp = None
    try:
        if parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", suffix=suffix)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a written file honours the umask like open()
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        raise MoeplanError(f"cannot write {path}: {err}") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: Path, text: str, parents: bool = False) -> Path:
    """`text` into `path`, atomically."""
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text), parents=parents)
