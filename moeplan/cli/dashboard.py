"""`moeplan dashboard`: optuna-dashboard on a study store (optional extra `dashboard`)."""

from __future__ import annotations

from typing import Annotated

import typer

from moeplan.cli.common import stderr
from moeplan.errors import MoeplanError


def dashboard_command(
    storage: Annotated[str, typer.Option("--storage", help="Study store (default sqlite:///moeplan.db).")]
    = "sqlite:///moeplan.db",
    host: Annotated[str, typer.Option("--host", help="Interface to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port.")] = 8080,
) -> None:
    """Review plans in optuna-dashboard: history, Pareto fronts, importances, infeasible trials."""
    try:
        from optuna_dashboard import run_server
    except ImportError:
        raise MoeplanError("the dashboard needs optuna-dashboard: pip install 'moeplan[dashboard]'") from None
    from moeplan.store import open_storage, store_file

    path = store_file(storage)
    if path is not None and not path.is_file():
        raise MoeplanError(f"no study store at {path} (run moeplan plan first)")
    store = open_storage(storage)
    stderr.print(f"optuna-dashboard on http://{host}:{port} for {storage} (Ctrl-C stops it)")
    try:
        run_server(store, host=host, port=port)
    except OSError as err:
        raise MoeplanError(f"cannot serve on {host}:{port}: {err.strerror or err}") from None
