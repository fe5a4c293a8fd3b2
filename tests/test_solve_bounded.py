"""The bounded-memory search and streamed band: exact against enumeration, whatever K and band size."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moeplan.errors import MoeplanError
from moeplan.laws import get_law
from moeplan.planner import PlanRequest, Priors, plan
from moeplan.planner import solve as solver
from moeplan.planner.solve import Band, branch_and_bound, enumerate_space
from moeplan.planner.space import AXES, Space
from tests.test_planner import random_requests


def _everything(space: Space, tolerance: float) -> Band:
    """The band held whole, by brute force over every point: the reference the streamed bands must match."""
    j_lo, j_hi = space.expert_index_range
    pair = np.repeat(np.arange(len(j_lo)), j_hi - j_lo + 1)
    j = np.concatenate([np.arange(a, b + 1) for a, b in zip(j_lo, j_hi, strict=True)])
    combo, i = np.meshgrid(np.arange(len(space.combos[0])), np.arange(1, space.expert_count_range[1] + 1))
    combo, i = combo.ravel(), i.ravel()
    routed = space.min_expert_index(space.combos[0][combo]) <= i
    combo, i = combo[routed], i[routed]
    p, c = np.repeat(pair, len(combo)), np.tile(combo, len(pair))
    jj, ii = np.repeat(j, len(combo)), np.tile(i, len(pair))
    ev = space.evaluate(p, c, jj, ii)
    ok = ev.feasible
    if not ok.any():
        return Band(*(np.empty(0, dtype=np.int64),) * 4, np.empty(0), tolerance, 0)
    loss = ev.loss[ok]
    near = loss <= loss.min() + tolerance
    p, c, jj, ii, loss, flops = (x[ok][near] for x in (p, c, jj, ii, ev.loss, ev.flops_per_token))
    order = np.lexsort((ii, jj, c, p, loss))
    p, c, jj, ii, loss, flops = (x[order] for x in (p, c, jj, ii, loss, flops))
    values = space.values(p, c, jj, ii)
    cheapest = int(np.lexsort((loss, flops))[0])
    return Band(p, c, jj, ii, loss, tolerance, len(ok), len(loss),
                {a: (int(values[a].min()), int(values[a].max())) for a in AXES},
                (int(p[cheapest]), int(c[cheapest]), int(jj[cheapest]), int(ii[cheapest])))


def _assert_same_band(streamed, full, keep):
    assert len(streamed) == len(full)
    if not len(full):
        return
    n = min(keep, len(full))
    assert len(streamed.loss) == n
    assert np.array_equal(streamed.loss, full.loss[:n])  # the best K, in the same order (ties by index)
    for name in ("pair", "combo", "j", "i"):
        assert np.array_equal(getattr(streamed, name), getattr(full, name)[:n])
    assert streamed.bounds == full.bounds
    assert streamed.cheapest == full.cheapest


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(request=random_requests(), tolerance=st.sampled_from([0.0, 0.01, 0.05, 0.3]), keep=st.integers(1, 12))
def test_streamed_band_is_the_enumerated_band_for_any_keep_and_band_size(request, tolerance, keep, monkeypatch):
    """Large tolerances make bands of thousands; a tiny buffer forces counting (and whole-box counting)."""
    monkeypatch.setattr(solver, "_MAX_BUFFER", 64)
    monkeypatch.setattr(solver, "BATCH", 256)
    space = Space(request, get_law("hy"))
    full = _everything(space, tolerance)
    _assert_same_band(branch_and_bound(space, tolerance, keep=keep), full, keep)
    _assert_same_band(enumerate_space(space, tolerance, keep=keep, chunk=4096), full, keep)


def test_a_large_band_with_few_kept_matches_brute_force():
    space = Space(PlanRequest(flops=1e21, priors=Priors(max_d_hidden=2048, max_layers=32, max_experts=32,
                                                        max_top_k=4, max_shared=1)), get_law("hy"))
    full = _everything(space, 0.05)
    assert len(full) > 1000  # a large band
    _assert_same_band(branch_and_bound(space, 0.05, keep=3), full, 3)
    _assert_same_band(enumerate_space(space, 0.05, keep=3), full, 3)


def test_plan_band_size_is_exact_with_few_kept():
    request = PlanRequest(flops=1e21, priors=Priors(max_d_hidden=2048, max_experts=32), tolerance=0.02,
                          storage=":memory:", band_keep=5)
    result = plan(request, verify=True)
    s = result.search
    assert s.band_size == s.certificate_band_size > 5
    assert abs(s.regret) < 1e-12
    assert len(s.alternatives) == 4  # the best 5 kept: the plan and four others
    assert s.band_bounds["d_hidden"][0] <= result.architecture.d_hidden <= s.band_bounds["d_hidden"][1]


def test_efficient_objective_is_exact_beyond_the_kept_members():
    base = dict(flops=1e21, priors=Priors(max_d_hidden=2048, max_experts=32), tolerance=0.02, storage=":memory:")
    few = plan(PlanRequest(**base, objective="efficient", band_keep=2))
    many = plan(PlanRequest(**base, objective="efficient", band_keep=100_000))
    assert few.architecture == many.architecture


def test_too_little_memory_is_one_clear_error(cli, tmp_path):
    out = cli("plan", "--flops", "1e22", "--max-memory-gb", "0.001", "--storage", f"sqlite:///{tmp_path / 's.db'}")
    assert out.code == 1 and out.out == ""
    assert "--max-memory-gb 0.001 is too little" in out.err and len(out.err.strip().splitlines()) == 1


def test_running_out_of_memory_is_one_clear_error(monkeypatch):
    space = Space(PlanRequest(flops=1e21, priors=Priors(max_d_hidden=2048, max_experts=32)), get_law("hy"))

    def exhausted(*args, **kwargs):
        raise MemoryError  # what numpy raises (_ArrayMemoryError) when an allocation fails

    monkeypatch.setattr(Space, "evaluate", exhausted)
    with pytest.raises(MoeplanError, match="ran out of memory"):
        branch_and_bound(space, 0.001)
