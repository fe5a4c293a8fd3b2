"""Worker processes that end with their parent, even when it is killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import threading
import time


def die_with_parent(parent: int) -> None:
    """SIGTERM to this process when `parent` dies: Linux's PR_SET_PDEATHSIG, else a thread watching the
    parent id. Call first thing in the worker; `parent` is the pid the parent passed (os.getpid() there)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGTERM, 0, 0, 0) != 0:  # 1 = PR_SET_PDEATHSIG
            raise OSError(ctypes.get_errno(), "prctl")
    except (OSError, AttributeError):
        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(0.5)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent:  # the parent died before the signal was armed
        os.kill(os.getpid(), signal.SIGTERM)


def pool_worker(parent: int) -> None:
    """Initializer of a pool whose parent handles Ctrl-C: the workers ignore SIGINT (no traceback from each)
    and end with the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent)
