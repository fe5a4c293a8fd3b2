"""`moeplan sweep`: design the small training runs that pin down a law where the plan needs it (docs/sweeps.md)."""

from moeplan.sweep.request import SweepRequest
from moeplan.sweep.sweep import Simulation, Sweep, SweepRun, design_sweep, simulation, sweep, to_model

__all__ = ["Simulation", "Sweep", "SweepRequest", "SweepRun", "design_sweep", "simulation", "sweep", "to_model"]
