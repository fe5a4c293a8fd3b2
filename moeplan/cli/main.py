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
from moeplan.errors import MoeplanError

# Each command's module is imported only when that command runs (or for the root --help, which lists them
# all): a plan does not pay for building the other fourteen commands' options and importing their code.
COMMANDS = {
    "plan": ("moeplan.cli.plan", "plan_command"),
    "count": ("moeplan.cli.count", "count_command"),
    "laws": ("moeplan.cli.laws", "laws_command"),
    "derive": ("moeplan.cli.laws", "derive_command"),
    "predict": ("moeplan.cli.laws", "predict_command"),
    "leverage": ("moeplan.cli.laws", "leverage_command"),
    "fit": ("moeplan.cli.fit", "fit_command"),
    "export": ("moeplan.cli.export", "export_command"),
    "frontier": ("moeplan.cli.frontier", "frontier_command"),
    "dashboard": ("moeplan.cli.dashboard", "dashboard_command"),
    "memory": ("moeplan.cli.memory", "memory_command"),
    "layout": ("moeplan.cli.layout", "layout_command"),
    "serve": ("moeplan.cli.serve", "serve_command"),
    "sweep": ("moeplan.cli.sweep", "sweep_command"),
    "assess": ("moeplan.cli.assess", "assess_command"),
}
ROOT_FLAGS = {"--version", "--debug", "--help"}


def _version(value: bool) -> None:
    if value:
        print(f"moeplan {__version__}")
        raise typer.Exit()


def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")] = False,
) -> None:
    """moeplan: which MoE to build for a compute budget, how long to train it, and the loss to expect."""
    _collect_again()


def build_app(only: str | None = None) -> typer.Typer:
    """The typer application with every command, or with `only` that one (same options, same behaviour)."""
    import importlib

    app = typer.Typer(
        name="moeplan",
        help="Plan Mixture-of-Experts pre-training runs: exact counts, published scaling laws, certified optima.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    app.callback()(_root)
    for name, (module, function) in COMMANDS.items():
        if only is None or name == only:
            app.command(name)(getattr(importlib.import_module(module), function))
    return app


def _invoked(args: list[str]) -> str | None:
    """The command `args` run, if they name one before anything else (root flags aside)."""
    for arg in args:
        if arg not in ROOT_FLAGS:
            return arg if arg in COMMANDS and "--version" not in args[: args.index(arg)] else None
    return None


def __getattr__(name: str):
    if name == "app":  # the whole application, for tools that inspect it (tests, docs)
        return build_app()
    raise AttributeError(name)


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


def _collect_again() -> None:
    """The command starts: the garbage collector, off while start-up built its thousands of long-lived
    objects (classes, schemas, the options), runs again, and never again scans those (`gc.freeze`)."""
    import gc

    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def main() -> None:
    """Entry point: usage errors exit 2, domain errors exit 1, each as one line on stderr."""
    debug = "--debug" in sys.argv[1:]
    _one_line_warnings(debug)
    ctrl_c = _note_ctrl_c()
    try:
        app = build_app(_invoked(sys.argv[1:]))
        code = typer.main.get_command(app).main(args=sys.argv[1:], prog_name="moeplan", standalone_mode=False)
    except getattr(click_exceptions, "NoArgsIsHelpError", ()) as err:
        try:
            print(err.format_message() if hasattr(err, "format_message") else err)
        except BrokenPipeError:  # `moeplan | head`
            _stdout_closed()
        sys.exit(0)
    except click_exceptions.UsageError as err:
        if debug:
            raise
        _fail(err.format_message().replace("\n", " ").replace("Value error, ", ""), 2)
    except BrokenPipeError:
        _stdout_closed()
    except SystemExit as exit_:  # rich exits 1 on a closed stdout, e.g. while printing --help into `| head`
        if isinstance(exit_.__context__, BrokenPipeError):
            _stdout_closed()
        raise
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


if __name__ == "__main__":
    from moeplan.cli.script import run

    run()
