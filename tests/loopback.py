"""Servers on loopback for the tests and benches that need real ones: a free port, a throwaway PostgreSQL."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bindir() -> Path | None:
    """The newest installed PostgreSQL's binaries (Debian's layout), or None."""
    initdb = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(initdb[-1]).parent if initdb else None


@contextlib.contextmanager
def postgres_cluster(max_connections: int = 400):
    """A throwaway PostgreSQL cluster on loopback (initdb in a temporary folder, trust auth); yields its URL."""
    bindir = postgres_bindir()
    if bindir is None:
        raise FileNotFoundError("PostgreSQL is not installed (apt-get install postgresql)")
    root = tempfile.mkdtemp(prefix="moeplan-pg-")
    as_pg = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        os.chmod(root, 0o755)
        shutil.chown(root, "postgres")
        as_pg = ["runuser", "-u", "postgres", "--"]
    data, port = f"{root}/data", free_port()
    subprocess.run([*as_pg, bindir / "initdb", "-D", data, "-A", "trust", "-U", "postgres"], check=True,
                   capture_output=True)
    subprocess.run([*as_pg, bindir / "pg_ctl", "-D", data, "-l", f"{root}/log", "-w", "-o",
                    f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections={max_connections}",
                    "start"], check=True, capture_output=True)
    try:
        subprocess.run([*as_pg, bindir / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "moeplan"],
                       check=True, capture_output=True)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/moeplan"
    finally:
        subprocess.run([*as_pg, bindir / "pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
