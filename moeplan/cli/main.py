"""The typer application and the one place where errors become one line and an exit code."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

try:  # typer >= 0.20 vendors click; older typer uses click itself
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover
    from click import exceptions as click_exceptions

from moeplan import __version__
from moeplan.cli.assess import assess_command
from moeplan.cli.count import count_command
from moeplan.cli.laws import derive_command, laws_command, leverage_command, predict_command
from moeplan.cli.dashboard import dashboard_command
from moeplan.cli.export import export_command
from moeplan.cli.fit import fit_command
from moeplan.cli.frontier import frontier_command
from moeplan.cli.layout import layout_command
from moeplan.cli.memory import memory_command
from moeplan.cli.plan import plan_command
from moeplan.cli.serve import serve_command
from moeplan.cli.sweep import sweep_command
from moeplan.errors import MoeplanError

app = typer.Typer(
    name="moeplan",
    help="Plan Mixture-of-Experts pre-training runs: exact counts, published scaling laws, certified optima.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"moeplan {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")] = False,
) -> None:
    """moeplan: which MoE to build for a compute budget, how long to train it, and the loss to expect."""


app.command("plan")(plan_command)
app.command("count")(count_command)
app.command("laws")(laws_command)
app.command("derive")(derive_command)
app.command("predict")(predict_command)
app.command("leverage")(leverage_command)
app.command("fit")(fit_command)
app.command("export")(export_command)
app.command("frontier")(frontier_command)
app.command("dashboard")(dashboard_command)
app.command("memory")(memory_command)
app.command("layout")(layout_command)
app.command("serve")(serve_command)
app.command("sweep")(sweep_command)
app.command("assess")(assess_command)


def _fail(message: str, code: int) -> None:
    print(f"moeplan: error: {message}", file=sys.stderr)
    sys.exit(code)


def _stdout_closed() -> None:
    """The reader went away (`moeplan plan | head -1`): stop quietly with exit 0, as `seq 1000 | head -1`
    does from the pipeline's view. Point stdout at /dev/null so the interpreter's final flush cannot fail."""
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        pass
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(0)


def _one_line_warnings(debug: bool) -> None:
    """Warnings print as one line each (`moeplan: note: ...`), never with their source line; numpy's
    floating-point RuntimeWarnings only with --debug (the code guards the overflow it expects)."""
    import warnings

    from moeplan.errors import Notice

    def show(message, category, _filename, _lineno, _file=None, _line=None) -> None:
        kind = "note" if issubclass(category, Notice) else f"warning: {category.__name__}"
        print(f"moeplan: {kind}: {str(message).splitlines()[0] if str(message) else ''}", file=sys.stderr)

    warnings.showwarning = show
    if not debug:
        warnings.filterwarnings("ignore", category=RuntimeWarning)


def _note_ctrl_c() -> list[int]:
    """Ctrl-C raises KeyboardInterrupt as usual, and is remembered: typer turns it into a silent exit 130, which
    still deserves its one line. (A plan's study catches Ctrl-C itself and says what it kept.)"""
    import signal
    import threading

    hits: list[int] = []

    def handler(signum, _frame):
        hits.append(signum)
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)
    return hits


def main() -> None:
    """Console entry point: usage errors exit 2, domain errors exit 1, each as one line on stderr."""
    debug = "--debug" in sys.argv[1:]
    _one_line_warnings(debug)
    ctrl_c = _note_ctrl_c()
    try:
        code = typer.main.get_command(app).main(args=sys.argv[1:], prog_name="moeplan", standalone_mode=False)
    except getattr(click_exceptions, "NoArgsIsHelpError", ()) as err:
        print(err.format_message() if hasattr(err, "format_message") else err)
        sys.exit(0)
    except click_exceptions.UsageError as err:
        if debug:
            raise
        _fail(err.format_message().replace("\n", " ").replace("Value error, ", ""), 2)
    except BrokenPipeError:
        _stdout_closed()
    except (typer.Abort, KeyboardInterrupt):
        _fail("interrupted", 130)
    except MoeplanError as err:
        if debug:
            raise
        _fail(str(err), err.exit_code)
    except (OSError, ValueError, OverflowError) as err:
        if debug:
            raise
        _fail(f"{type(err).__name__}: {err}", 1)
    except Exception as err:  # a bug: still one line, the traceback with --debug
        if debug:
            raise
        _fail(f"internal error: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''} "
              "(rerun with --debug for the traceback)", 1)
    if code == 130 and ctrl_c:
        _fail("interrupted", 130)
    sys.exit(code if isinstance(code, int) else 0)
