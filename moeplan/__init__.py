"""moeplan: plan Mixture-of-Experts pre-training runs from a compute budget."""

from moeplan._version import __version__

# Loaded when first asked for: the counter imports pydantic, the planner optuna (~0.4 s), and a CLI command
# that needs neither should not wait for them (nor be interrupted inside them).
_LAZY = {"MLA": "moeplan.flops", "Architecture": "moeplan.flops", "Convention": "moeplan.flops",
         "count": "moeplan.flops", "plan": "moeplan.planner", "PlanRequest": "moeplan.planner",
         "Plan": "moeplan.planner", "Priors": "moeplan.planner", "frontier": "moeplan.planner.curves",
         "budgets": "moeplan.planner.curves"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'moeplan' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["MLA", "Architecture", "Convention", "Plan", "PlanRequest", "Priors", "__version__", "budgets", "count",
           "frontier", "plan"]
