"""Budget -> buildable space -> exact optimum (branch and bound, certified by enumeration) -> Optuna study."""

from moeplan.planner.plan import Candidate, Plan, plan
from moeplan.planner.request import GPU_PEAK_FLOPS, PlanRequest, Priors

__all__ = ["GPU_PEAK_FLOPS", "Candidate", "Plan", "PlanRequest", "Priors", "plan"]
