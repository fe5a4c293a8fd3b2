"""Which priors and caps bind at a plan: the ones that block a step that would lower the loss.

Neighbours of the optimum are one step along one axis (layers by the pipeline degree, d_hidden by its
alignment step, d_expert by its alignment, n_experts by the expert-parallel degree, top_k and shared experts
by one). A constraint binds if a neighbour with a lower predicted loss breaks it; `also` lists the other
constraints that neighbour breaks (empty: relaxing this one alone would gain `loss_gain`).
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict

from moeplan.planner.space import AXES, Space


class Binding(BaseModel):
    """A constraint that holds the plan back, and what one step past it would gain."""

    model_config = ConfigDict(frozen=True)

    constraint: str
    neighbour: str
    loss_gain: float
    also: list[str] = []


def binding_constraints(space: Space, best: dict[str, int], best_loss: float) -> list[Binding]:
    r = space.request
    steps = {"n_layers": r.pipeline_parallel, "d_hidden": r.d_hidden_step, "d_expert": r.expert_align,
             "n_experts": r.expert_parallel, "top_k": 1, "n_shared_experts": 1}
    neighbours = []
    for axis in AXES:
        for sign in (-1, 1):
            moved = dict(best, **{axis: best[axis] + sign * steps[axis]})
            if moved[axis] >= (0 if axis == "n_shared_experts" else 1):
                neighbours.append((axis, sign, moved))
    values = {a: np.array([m[a] for _, _, m in neighbours]) for a in AXES}
    broken = space.prior_violations(values)
    loss = space.evaluate_values(values).loss
    if r.cluster is not None:
        # a neighbour that does not fit in memory is scored (for the search) at its slowest layout variant; one
        # step past the memory constraint it would run as fast as it can, so score it with the memory lifted
        lifted = r.model_copy(update={"cluster": r.cluster.model_copy(update={"hbm_gb": 1e9})})
        past = [m for name, m in broken.items() if name.startswith("memory per device")]
        if past:
            loss = np.where(past[0], Space(lifted, space.law).evaluate_values(values).loss, loss)
    found: dict[str, Binding] = {}
    for n, (axis, sign, _) in enumerate(neighbours):
        which = [name for name, mask in broken.items() if mask[n]]
        gain = best_loss - float(loss[n])
        if gain <= 0:
            continue
        for name in which:
            entry = Binding(constraint=name, neighbour=f"{axis} {'+' if sign > 0 else '-'}{steps[axis]}",
                            loss_gain=gain, also=[w for w in which if w != name])
            old = found.get(name)
            if old is None or (len(entry.also), -entry.loss_gain) < (len(old.also), -old.loss_gain):
                found[name] = entry
    return sorted(found.values(), key=lambda b: (len(b.also), -b.loss_gain))
