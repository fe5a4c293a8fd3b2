"""Parsing of option values shared by several commands, as usage errors (exit 2) when wrong."""

from __future__ import annotations

from moeplan.errors import UsageError
from moeplan.flops.conventions import Convention


def convention_option(value: str) -> Convention:
    try:
        return Convention(value)
    except ValueError:
        raise UsageError(
            f"unknown convention {value!r}; choose one of: {', '.join(c.value for c in Convention)}"
        ) from None
