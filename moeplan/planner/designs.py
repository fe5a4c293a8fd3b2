"""A design: one architecture of a `Space` with its counts, tokens and loss, summarised from the vectorised
evaluation (shared by the robust, lifetime, Pareto and assess reports)."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict

from moeplan.planner.space import AXES, Evaluation, Space


class Design(BaseModel):
    """Six architecture axes and what the space derives from them under one law.

    `active_params` counts everything a token touches, embeddings included (as `Plan.counts.active.all`);
    `law_N`, `law_N_a` are the law's non-embedding inputs."""

    model_config = ConfigDict(frozen=True)

    n_layers: int
    d_hidden: int
    d_expert: int
    n_experts: int
    top_k: int
    n_shared_experts: int
    total_params: int
    active_params: int
    law_N: float
    law_N_a: float
    tokens: float
    train_flops_per_token: float
    loss: float

    @property
    def axes(self) -> dict[str, int]:
        return {a: getattr(self, a) for a in AXES}

    def shape(self) -> str:
        """One short line: layers x width, experts, top-k and shared."""
        shared = f"+{self.n_shared_experts}s" if self.n_shared_experts else ""
        return (f"{self.n_layers}x{self.d_hidden}, {self.n_experts}x{self.d_expert} top-{self.top_k}{shared}")


def stack(designs: list[dict[str, int]]) -> dict[str, np.ndarray]:
    """Axes of many designs as arrays (the input of `Space.evaluate_values`)."""
    return {a: np.array([d[a] for d in designs], dtype=np.int64) for a in AXES}


def summarise(values: dict[str, np.ndarray], ev: Evaluation) -> list[Design]:
    """`Design`s of points given by their axes and their evaluation (arrays of one length)."""
    embeddings = ev.total - ev.n  # input embedding and LM head: the same in total and active counts
    n = len(np.atleast_1d(ev.loss))
    col = {a: np.broadcast_to(np.asarray(values[a]), (n,)) for a in AXES}
    return [Design(**{a: int(col[a][k]) for a in AXES}, total_params=int(ev.total[k]),
                   active_params=int(ev.n_a[k] + embeddings[k]), law_N=float(ev.n[k]), law_N_a=float(ev.n_a[k]),
                   tokens=float(ev.tokens[k]), train_flops_per_token=float(ev.flops_per_token[k]),
                   loss=float(ev.loss[k]))
            for k in range(n)]


def design_of(space: Space, axes: dict[str, int]) -> Design:
    """The `Design` of one architecture of `space`."""
    values = {a: np.array([axes[a]]) for a in AXES}
    return summarise(values, space.evaluate_values(values))[0]


def band_axes(space: Space, band) -> dict[str, np.ndarray]:
    """Axes of every point of a `Band` (index arrays -> architecture values)."""
    return {a: np.asarray(v) for a, v in space.values(band.pair, band.combo, band.j, band.i).items()}
