"""The `moeplan` console script: what happens around `moeplan.cli.main.main` in a process of its own.

Start-up: a Ctrl-C before `main` runs has nothing to undo, so it ends the process with one line (Python
would print a traceback out of whichever module was being imported); the garbage collector is off while
start-up builds its thousands of long-lived objects (`main` turns it on for the command). Exit: output is
flushed and the atexit handlers (multiprocessing's, logging's) run, then the process ends without the
interpreter's teardown, which frees every module's objects one by one (a tenth of a plan's wall time).
"""

from __future__ import annotations

import atexit
import gc
import os
import signal
import sys


def _interrupted_at_start(_signum, _frame) -> None:
    os.write(2, b"moeplan: error: interrupted\n")
    os._exit(130)


def run() -> None:
    signal.signal(signal.SIGINT, _interrupted_at_start)  # until main installs its own handler
    gc.disable()
    try:
        from moeplan.cli.main import main

        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    if not isinstance(code, int):  # sys.exit("text"): the text on stderr, status 1
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass
    atexit._run_exitfuncs()
    os._exit(code)
