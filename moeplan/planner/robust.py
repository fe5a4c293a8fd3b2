"""Plans robust across laws and fits: each law's own optimum, the regret of every candidate under every law,
and the design with the least worst-case regret (minimax regret; Savage 1951), computed exactly.

Regret of design x under law l: L_l(x) - min_y L_l(y), in law l's loss units, over the request's space.
Candidates: the union of every law's near-optimal band (within `tolerance` of its optimum). If the best
worst-case regret R found there exceeds `tolerance`, the exact minimax design over the WHOLE space still lies
within R of every law's optimum, so law 0's band at tolerance R holds it: that band is evaluated under
every law and the answer is certified (`exact`). Every loss comes from `Space.evaluate_values`, so any law
the planner accepts works here unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from moeplan.errors import MoeplanError
from moeplan.laws.model import Law
from moeplan.planner.designs import Design, band_axes, summarise
from moeplan.planner.request import PlanRequest
from moeplan.planner.solve import solve
from moeplan.planner.space import AXES, Space

CERTIFY_MAX_REGRET = 0.05  # nats: beyond this law 0's band can hold millions of points; the answer is then
                           # minimax over the union of bands only (exact=False says so)
CERTIFY_MAX_POINTS = 1_000_000


class RobustCandidate(BaseModel):
    """A candidate design and its regret under every law (same order as `Robustness.laws`)."""

    model_config = ConfigDict(frozen=True)

    role: str = Field(description="whose optimum it is, or 'minimax regret'")
    design: Design = Field(description="counts and tokens; loss under the first law")
    regret: list[float]
    worst_regret: float
    worst_law: str


class Robustness(BaseModel):
    """Decisions across laws: optima, a disagreement table and the minimax-regret design."""

    model_config = ConfigDict(frozen=True)

    laws: list[str]
    optimum_loss: list[float] = Field(description="each law's own best loss over the space")
    optima: list[RobustCandidate] = Field(description="each law's optimum (laws sharing one are listed once)")
    minimax: RobustCandidate
    point_estimate: RobustCandidate = Field(description="the first law's optimum (the point-estimate plan)")
    tolerance: float
    candidates_considered: int
    exact: bool = Field(description="the minimax design is certified over the whole space, not just the bands")
    disagreement: str


def _label(entry: str) -> str:
    return Path(entry).stem if entry.endswith(".json") else entry


def load_laws(request: PlanRequest) -> list[tuple[str, Law]]:
    """The laws of `--laws` (names, or fitted-constant JSON files) and, with `--robust`, the point estimate and
    bootstrap samples of `--law-params`; the first is the reference (the point estimate)."""
    from moeplan.planner.plan import law_and_samples

    laws: list[tuple[str, Law]] = []
    if request.robust:
        law, samples = law_and_samples(request)
        if not samples:
            raise MoeplanError("--robust needs --law-params with bootstrap samples "
                               "(moeplan fit RUNS --bootstrap 50 --out fitted.json)")
        laws.append(("fit", law))
        laws += [(f"bootstrap {k + 1}", law.with_values(s, source=f"bootstrap sample {k + 1}"))
                 for k, s in enumerate(samples)]
    laws += [law_from_entry(request, entry) for entry in request.laws or []]
    labels = [label for label, _ in laws]
    if len(set(labels)) != len(labels):
        raise MoeplanError(f"--laws names a law twice: {', '.join(labels)}")
    if len(laws) < 2:
        raise MoeplanError("robust planning compares at least two laws: --laws hy,OTHER (or --robust with a fit's "
                           "bootstrap samples)")
    return laws


def law_from_entry(request: PlanRequest, entry: str) -> tuple[str, Law]:
    """(label, law) of one `--laws` entry: a law name, or a fitted-constants JSON file (its stem labels it)."""
    from moeplan.flops.hf import read_json
    from moeplan.planner.plan import law_and_samples

    if entry.endswith(".json"):
        name = read_json(entry).get("law", request.law)
        return _label(entry), law_and_samples(request.model_copy(update={"law": name, "law_params": entry}))[0]
    return entry, law_and_samples(request.model_copy(update={"law": entry, "law_params": None}))[0]


def plannable_space(request: PlanRequest, label: str, law: Law) -> Space:
    """The space scored by `law`, refused in one line if the planner cannot score architectures with it."""
    from moeplan.planner.plan import check_plannable

    check_plannable(law)
    space = Space(request, law)
    space.check()
    try:  # one point: a law that cannot score the space's counts says so here, in one line
        space.evaluate(0, 0, int(space.expert_index_range[0][0]), space.expert_count_range[1])
    except MoeplanError as err:
        raise MoeplanError(f"law {label!r} cannot score an architecture yet: {err}") from None
    return space


def _unique_axes(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    rows = np.unique(np.stack([np.concatenate([p[a] for p in parts]) for a in AXES], axis=1), axis=0)
    return {a: rows[:, k] for k, a in enumerate(AXES)}


def _take(values: dict[str, np.ndarray], keep) -> dict[str, np.ndarray]:
    return {a: v[keep] for a, v in values.items()}


def regret_matrix(spaces: list[Space], optimum: np.ndarray, values: dict[str, np.ndarray]) -> np.ndarray:
    """Regret of each design (columns) under each law (rows); infeasible designs get +inf."""
    out = np.empty((len(spaces), len(values[AXES[0]])))
    for m, space in enumerate(spaces):
        ev = space.evaluate_values(values)
        out[m] = np.where(ev.feasible, ev.loss - optimum[m], np.inf)
    return out


def _minimax(spaces, optimum, values, incumbent: float = np.inf):
    """Index and worst-case regret of the minimax design among `values`, laws scored one at a time and points
    dropped as soon as one law's regret exceeds the incumbent (they cannot win)."""
    index = np.arange(len(values[AXES[0]]))
    worst = np.zeros(len(index))
    for m, space in enumerate(spaces):
        ev = space.evaluate_values(_take(values, index))
        regret = np.where(ev.feasible, ev.loss - optimum[m], np.inf)
        worst = np.maximum(worst, regret)
        keep = worst <= incumbent
        index, worst = index[keep], worst[keep]
        if len(index) == 0:
            return None, incumbent
    best = int(np.argmin(worst))  # np.unique sorted the rows: ties go to the smallest axes, deterministically
    return int(index[best]), float(worst[best])


def _candidate(role, labels, spaces, optimum, axes: dict[str, int]) -> RobustCandidate:
    values = {a: np.array([axes[a]]) for a in AXES}
    regret = regret_matrix(spaces, optimum, values)[:, 0]
    design = summarise(values, spaces[0].evaluate_values(values))[0]
    worst = int(np.argmax(regret))
    return RobustCandidate(role=role, design=design, regret=[float(r) for r in regret],
                           worst_regret=float(regret[worst]), worst_law=labels[worst])


def robust_plan(request: PlanRequest, laws: list[tuple[str, Law]], tolerance: float | None = None) -> Robustness:
    """Each law's optimum, the disagreement table and the minimax-regret design over `request`'s space."""
    tolerance = request.tolerance if tolerance is None else tolerance
    labels = [label for label, _ in laws]
    spaces = [plannable_space(request, label, law) for label, law in laws]
    # every band member is a candidate: keep them all (the solver streams bands, keeping the best `keep`)
    bands = [solve(space, tolerance, keep=CERTIFY_MAX_POINTS, max_memory_gb=request.max_memory_gb)[0]
             for space in spaces]
    empty = [label for label, band in zip(labels, bands, strict=True) if len(band) == 0]
    if empty:
        raise MoeplanError(f"no buildable model fits this request (law {empty[0]} finds none)")
    optimum = np.array([float(b.loss[0]) for b in bands])

    union = _unique_axes([band_axes(s, b) for s, b in zip(spaces, bands, strict=True)])
    best, worst = _minimax(spaces, optimum, union)
    axes = {a: int(union[a][best]) for a in AXES}
    considered = len(union[AXES[0]])
    complete = all(len(b.loss) == len(b) for b in bands)
    exact = complete and worst <= tolerance
    if complete and not exact and worst <= CERTIFY_MAX_REGRET:
        wide = solve(spaces[0], worst, keep=CERTIFY_MAX_POINTS, max_memory_gb=request.max_memory_gb)[0]
        if len(wide) <= CERTIFY_MAX_POINTS:
            values = band_axes(spaces[0], wide)
            found, found_worst = _minimax(spaces, optimum, values, incumbent=worst)
            if found is not None and found_worst < worst:
                axes, worst = {a: int(values[a][found]) for a in AXES}, found_worst
            considered += len(wide)
            exact = True

    optima, seen = [], {}
    for label, space, band in zip(labels, spaces, bands, strict=True):
        own = {a: int(v[0]) for a, v in band_axes(space, band).items()}
        key = tuple(own.values())
        if key in seen:
            seen[key].append(label)
            continue
        seen[key] = [label]
        optima.append((own, seen[key]))
    rows = [_candidate("optimum of " + ", ".join(names), labels, spaces, optimum, own) for own, names in optima]
    minimax = _candidate("minimax regret", labels, spaces, optimum, axes)
    return Robustness(laws=labels, optimum_loss=optimum.tolist(), optima=rows, minimax=minimax,
                      point_estimate=rows[0], tolerance=tolerance, candidates_considered=considered, exact=exact,
                      disagreement=_disagreement(request, labels, rows, minimax))


def _disagreement(request: PlanRequest, labels: list[str], rows: list[RobustCandidate],
                  minimax: RobustCandidate) -> str:
    """One line: how much one law's optimum loses under another at this budget."""
    worst = max(rows, key=lambda r: r.worst_regret)
    budget = f"{request.compute:.3g} FLOPs"
    if worst.worst_regret <= 0:
        return f"the {len(labels)} laws agree at {budget}: one design is optimal under all of them"
    return (f"the {len(labels)} laws disagree at {budget} by up to {worst.worst_regret:.3g} in loss "
            f"(the {worst.role.split(', ')[0]} under {worst.worst_law}); the minimax design loses at most "
            f"{minimax.worst_regret:.3g} (under {minimax.worst_law})")
