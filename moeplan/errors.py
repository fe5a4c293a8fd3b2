"""Errors a user can act on. The CLI turns each into one line and an exit code, never a traceback."""


class MoeplanError(Exception):
    """A domain error (exit code 1): the input is well-formed but cannot be satisfied or counted."""

    exit_code = 1


class UsageError(MoeplanError):
    """A usage error (exit code 2): the command line itself is wrong (unknown name, bad option value)."""

    exit_code = 2


class Notice(UserWarning):
    """Something the user should know that does not stop the command; the CLI prints it as one line."""
