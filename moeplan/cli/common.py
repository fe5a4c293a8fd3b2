"""Option aliases shared by every command, so flags read the same everywhere, and output helpers."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from pydantic import BaseModel
from rich.console import Console

JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly the result model as JSON on stdout.")]
ConventionOpt = Annotated[
    str, typer.Option("--convention", "-c", help="FLOPs convention: exact, 6n, torchtitan, deepseek, holistic.")
]
SeqLenOpt = Annotated[int | None, typer.Option("--seq-len", min=1, help="Training sequence length.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace output files that already exist.")]

class _Stdout(Console):
    """rich turns a closed stdout into SystemExit(1); hand it to moeplan.cli.main, which exits 0 as Unix tools
    do when their reader (`| head -1`) has what it wanted."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


stdout = _Stdout(highlight=False)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)  # notices stay one line


def emit_json(model: BaseModel) -> None:
    """The result model and nothing else on stdout."""
    sys.stdout.write(model.model_dump_json(indent=2) + "\n")


def human(x: float, unit: str = "") -> str:
    """3 significant digits with an SI suffix: 30.5B, 3.76e+10 stays readable in a table."""
    for factor, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= factor:
            return f"{x / factor:.3g}{suffix}{unit}"
    return f"{x:.3g}{unit}"


@contextmanager
def progress(description: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr while a block runs; yields `advance(n)`. Drawn only when stderr is a terminal,
    so pipes, logs and `--json` consumers see nothing of it (stdout is never touched)."""
    if not stderr.is_terminal:
        yield lambda n=1: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn()]
    columns += [MofNCompleteColumn()] if total else []
    with Progress(*columns, TimeElapsedColumn(), console=stderr, transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


class _TrialCounter(logging.Handler):
    """Counts Optuna's 'Trial N finished' records; passes errors on to Optuna's own handlers."""

    def __init__(self, advance: Callable[[int], None]):
        super().__init__(logging.INFO)
        self.advance = advance

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            logging.getLogger("optuna").handle(record)
        elif " finished with value" in record.getMessage():
            self.advance(1)


@contextmanager
def trial_progress(description: str, total: int | None) -> Iterator[None]:
    """A progress bar advanced by every Optuna trial this process finishes (Optuna logs each one at INFO on
    `optuna.study.study`; that logger alone is listened to, so nothing else Optuna says is shown)."""
    with progress(description, total) as advance:
        if not stderr.is_terminal:
            yield
            return
        logger = logging.getLogger("optuna.study.study")
        saved = logger.level, logger.propagate
        handler = _TrialCounter(advance)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        logger.addHandler(handler)
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.setLevel(saved[0])
            logger.propagate = saved[1]
