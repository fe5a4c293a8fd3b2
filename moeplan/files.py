"""Files moeplan writes appear whole or not at all, with the user's umask, and never replace a file silently.

Each file is written to a temporary file beside the target and renamed. `mkstemp` creates 0600 files, so the
mode is set from the umask before the rename (a teammate sharing the folder reads what `touch` would let
them read). Without `force` the temporary file is hard-linked into place, which fails if the target exists:
no window in which another writer's file is replaced.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from moeplan.errors import MoeplanError, UsageError


def umask() -> int:
    """The process umask (reading it means setting it, so set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def exists_error(path: Path) -> UsageError:
    return UsageError(f"{path} exists; add --force to replace it")


def write_atomic(path: Path, write: Callable[[str], None], suffix: str = ".tmp", parents: bool = False,
                 force: bool = True) -> Path:
    """Call `write(temporary_path)`, then move it onto `path`; a failure leaves neither file behind.

    `force=False` refuses (UsageError) when `path` exists, even if it appeared while writing.
    """
    path = Path(path)
    tmp = None
    try:
        if parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", suffix=suffix)
        os.close(fd)
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask())
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise exists_error(path) from None
            except OSError:  # a filesystem without hard links: check, then rename
                if path.exists():
                    raise exists_error(path) from None
                os.replace(tmp, path)
    except OSError as err:
        raise MoeplanError(f"cannot write {path}: {err.strerror or err}") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_text_atomic(path: Path, text: str, parents: bool = False, force: bool = True) -> Path:
    """`text` into `path`, atomically."""
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text), parents=parents, force=force)


def check_output(path: Path, force: bool, option: str = "--out", suffixes: Iterable[str] | None = None,
                 parents: bool = False, kind: str = "plots") -> Path:
    """Refuse, before any work, an output file that could not be written or would replace one silently.

    One line each (UsageError, exit 2): an empty path, a suffix other than `suffixes` (files of `kind`), a
    folder where a file is meant, a missing parent folder (unless `parents`: moeplan creates the folder the user named), an
    existing file without `force`.
    """
    if str(path) in ("", "."):
        raise UsageError(f"{option} needs a file name")
    path = Path(path)
    if suffixes is not None:
        allowed = tuple(suffixes)
        if path.suffix.lower().lstrip(".") not in allowed:
            raise UsageError(f"{path}: {kind} are written as {' or '.join('.' + s for s in allowed)}")
    if path.is_dir():
        raise UsageError(f"{option} {path} is a folder; give a file name")
    parent = path.parent
    if not parents:
        if not parent.is_dir():
            raise UsageError(f"{option} {path}: no folder {parent}" if not parent.exists()
                             else f"{option} {path}: {parent} is not a folder")
    else:
        existing = next((p for p in (parent, *parent.parents) if p.exists()), Path("."))
        if not existing.is_dir():
            raise UsageError(f"{option} {path}: {existing} is not a folder")
    if path.exists() and not force:
        raise exists_error(path)
    return path
