"""Scaling laws, each defined once as a sympy expression with its constants ([HY] default)."""

from moeplan.errors import UsageError
from moeplan.laws.definitions import ALIASES, LAWS
from moeplan.laws.model import Constant, Extrapolation, Law, Variable

DEFAULT_LAW = "hy"


def get_law(name: str) -> Law:
    """The law with CLI name `name` (hy, chinchilla, chinchilla-active, krajewski, ludziejewski, ...; `joint` is
    ludziejewski's former name)."""
    try:
        return LAWS[ALIASES.get(name, name)]
    except (KeyError, TypeError):  # TypeError: an unhashable name, e.g. a list
        raise UsageError(f"unknown law {name!r}; choose one of: {', '.join(LAWS)}") from None


__all__ = ["DEFAULT_LAW", "LAWS", "Constant", "Extrapolation", "Law", "Variable", "get_law"]
