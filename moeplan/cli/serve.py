"""`moeplan serve`: the planner as an HTTP service and web calculator (optional extra `serve`; docs/service.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from moeplan.cli.common import stderr
from moeplan.errors import MoeplanError

LIMITS = "Limits"


def serve_command(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port.")] = 8000,
    storage: Annotated[str, typer.Option("--storage", help="Study database, shared by every worker and host: "
                                                           "sqlite:///FILE or postgresql+psycopg://...")]
    = "sqlite:///moeplan.db",
    workers: Annotated[int, typer.Option("--workers", min=1, help="Worker processes.")] = 1,
    token_file: Annotated[Path | None, typer.Option("--token-file", help="Bearer tokens, one a line; "
                                                    "requests to /api need one.")] = None,
    dashboard_url: Annotated[str | None, typer.Option("--dashboard-url", help="optuna-dashboard on the same "
                                                      "storage (e.g. http://host:8080), for study links.")] = None,
    max_body: Annotated[int, typer.Option("--max-body", min=1, help="Largest request body in bytes.",
                                          rich_help_panel=LIMITS)] = 1_000_000,
    min_flops: Annotated[float, typer.Option("--min-flops", min=0, help="Smallest budget accepted.",
                                             rich_help_panel=LIMITS)] = 1e15,
    max_flops: Annotated[float, typer.Option("--max-flops", min=0, help="Largest budget accepted.",
                                             rich_help_panel=LIMITS)] = 1e28,
    max_verify: Annotated[int, typer.Option("--max-verify", min=1, help="Concurrent verify plans per worker.",
                                            rich_help_panel=LIMITS)] = 1,
    job_lease: Annotated[float, typer.Option("--job-lease", min=1, help="Seconds without a heartbeat before "
                                             "another worker takes a job over.", rich_help_panel=LIMITS)] = 15.0,
    graceful: Annotated[int, typer.Option("--graceful-timeout", min=0, help="Seconds in-flight requests get "
                                          "to finish on SIGTERM.", rich_help_panel=LIMITS)] = 30,
) -> None:
    """Serve the planner: JSON API (OpenAPI at /docs), a web calculator at /, jobs for fits and frontiers."""
    try:
        import uvicorn
        import fastapi  # noqa: F401
    except ImportError:
        raise MoeplanError("moeplan serve needs FastAPI and uvicorn: pip install 'moeplan[serve]'") from None
    from moeplan.serve import db
    from moeplan.serve.app import configure_logging
    from moeplan.serve.settings import ENV, Settings

    settings = Settings(storage=storage, token_file=token_file, dashboard_url=dashboard_url, max_body_bytes=max_body,
                        min_flops=min_flops, max_flops=max_flops, max_verify=max_verify, job_lease_seconds=job_lease)
    settings.tokens()  # a missing or empty token file is a one-line error now, not one per worker
    db.connect(settings.storage).dispose()  # likewise an unreachable database; creates the tables once
    os.environ[ENV] = settings.model_dump_json()
    configure_logging()
    stderr.print(f"moeplan serve on http://{host}:{port} ({workers} worker(s), storage "
                 f"{db.display_url(storage)}, auth {'on' if token_file else 'off'}); SIGTERM or Ctrl-C stops it")
    uvicorn.run("moeplan.serve.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                access_log=False, log_level="warning", timeout_graceful_shutdown=graceful,
                proxy_headers=True, forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"))
