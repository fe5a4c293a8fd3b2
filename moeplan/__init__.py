"""moeplan: plan Mixture-of-Experts pre-training runs from a compute budget."""

from moeplan._version import __version__
from moeplan.flops import MLA, Architecture, Convention, count


def __getattr__(name: str):
    # The planner imports optuna (~0.4 s); load it only when asked for, so `moeplan count` stays quick.
    if name in ("plan", "PlanRequest", "Plan"):
        from moeplan import planner

        return getattr(planner, name)
    raise AttributeError(f"module 'moeplan' has no attribute {name!r}")


__all__ = ["MLA", "Architecture", "Convention", "Plan", "PlanRequest", "__version__", "count", "plan"]
