"""Errors a user can act on. The CLI turns each into one line and an exit code, never a traceback.

What the public API raises on bad input (tests/test_api_errors.py checks it with wrong types of every kind):

- `MoeplanError`: the input is well-formed but cannot be satisfied, counted or read (no buildable model,
  a malformed file, a HF config with a wrong field, a store that is not moeplan's).
- `UsageError` (a `MoeplanError`): the call itself is wrong: an unknown name (law, convention, model
  family), or an argument of the wrong type (`count(dict)`, `plan(dict)`, `evaluate(N=None)`).
- `pydantic.ValidationError`: a field of `Architecture`, `PlanRequest` or `Priors` is of the wrong type,
  out of its documented range, or not finite.
- `OverflowError`: only `count_arrays`, where an architecture's counts would not fit in int64.

`Notice` is a warning, not an error: something the user should know (a config field the count leaves out).
"""


class MoeplanError(Exception):
    """A domain error (exit code 1): the input is well-formed but cannot be satisfied or counted."""

    exit_code = 1


class UsageError(MoeplanError):
    """A usage error (exit code 2): the command line itself is wrong (unknown name, bad option value)."""

    exit_code = 2


class Notice(UserWarning):
    """Something the user should know that does not stop the command; the CLI prints it as one line."""
