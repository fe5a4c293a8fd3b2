"""moeplan: plan Mixture-of-Experts pre-training runs from a compute budget."""

from moeplan.flops import MLA, Architecture, Convention, count

__version__ = "0.1.0"

_PLANNER = {"plan": "moeplan.planner", "PlanRequest": "moeplan.planner", "Plan": "moeplan.planner",
            "Priors": "moeplan.planner", "frontier": "moeplan.planner.curves", "budgets": "moeplan.planner.curves"}


def __getattr__(name: str):
    # The planner imports optuna (~0.4 s); load it only when asked for, so `moeplan count` stays quick.
    if name in _PLANNER:
        import importlib

        return getattr(importlib.import_module(_PLANNER[name]), name)
    raise AttributeError(f"module 'moeplan' has no attribute {name!r}")


__all__ = ["MLA", "Architecture", "Convention", "Plan", "PlanRequest", "Priors", "__version__", "budgets", "count",
           "frontier", "plan"]
