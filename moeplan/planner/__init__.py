"""Budget -> buildable space -> exact optimum (branch and bound, certified by enumeration) -> Optuna study."""

from moeplan.planner.designs import Design
from moeplan.planner.plan import plan
from moeplan.planner.request import GPU_PEAK_FLOPS, PlanRequest, Priors
from moeplan.planner.result import Plan

__all__ = ["GPU_PEAK_FLOPS", "Design", "Plan", "PlanRequest", "Priors", "plan"]
