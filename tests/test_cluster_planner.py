"""`moeplan plan --gpus N --gpu K --days T`: memory per device binds every candidate, days decide the tokens."""

from __future__ import annotations

import numpy as np
import pytest

from moeplan.cluster.layout import layout_problems
from moeplan.cluster.planning import ClusterBudget
from moeplan.planner import PlanRequest, Priors, plan

SMALL = dict(max_d_hidden=3072, max_layers=48, max_experts=64, max_top_k=8, max_shared=2)


def small_cluster_request(**kw) -> PlanRequest:
    fields = dict(cluster=ClusterBudget(gpus=64, gpu="h100", days=3), expert_parallel=8, priors=Priors(**SMALL),
                  storage=":memory:")
    return PlanRequest(**(fields | kw))


@pytest.mark.parametrize("kw", [
    {},
    {"cluster": ClusterBudget(gpus=64, gpu="h100", days=3, hbm_gb=24)},  # memory binds
    {"flops": 3e21, "cluster": ClusterBudget(gpus=64, gpu="h100", days=2.5)},  # a FLOPs budget, days a cap
], ids=["days-budget", "small-hbm", "flops-with-days-cap"])
def test_cluster_plan_is_the_enumerations_optimum(kw):
    """--verify certifies under the same model: every point enumerated with the cluster's memory and speed."""
    result = plan(small_cluster_request(**kw), verify=True)
    assert result.search.verified and abs(result.search.regret) < 1e-9
    c = result.cluster
    assert c.memory.fits and c.memory.total <= c.accelerator.hbm_gb
    assert c.layout_problems == []
    if result.request.flops is None:
        assert c.days == pytest.approx(3, rel=1e-6)
    else:
        assert c.days <= 2.5 * (1 + 1e-9)


def test_tokens_are_days_times_throughput():
    result = plan(small_cluster_request())
    c = result.cluster
    assert result.training.tokens == pytest.approx(3 * 86400 * c.tokens_per_s, rel=1e-9)
    assert result.training.compute == pytest.approx(result.training.tokens * result.counts.train_flops_per_token)
    assert c.gpu_hours == pytest.approx(3 * 24 * 64, rel=1e-6)
    assert c.optimizer_steps == pytest.approx(result.training.tokens / c.tokens_per_step)


def test_memory_binds_and_the_prior_is_shown():
    tight = plan(small_cluster_request(cluster=ClusterBudget(gpus=64, gpu="h100", days=3, hbm_gb=24)))
    roomy = plan(small_cluster_request())
    assert tight.counts.total.all < roomy.counts.total.all
    assert any(b.constraint.startswith("memory per device <= 24 GiB") for b in tight.search.binding)
    w = roomy.without_prior
    assert w is not None and w.loss <= roomy.law.loss + 1e-12


def test_must_show_1024_h100_for_30_days(cli, tmp_path):
    """Must show: a layout Megatron-Core accepts, memory within 80 GB, days within 30 (regret: the slow test)."""
    out = cli("plan", "--gpus", "1024", "--gpu", "h100", "--days", "30", "--json",
              "--storage", f"sqlite:///{tmp_path / 'p.db'}")
    assert out.code == 0, out.err
    data = out.json()
    c = data["cluster"]
    assert c["memory"]["total"] <= 80 and c["memory"]["fits"] and c["days"] <= 30 * (1 + 1e-9)
    assert c["layout_problems"] == []
    from moeplan.cluster.layout import Layout
    from moeplan.flops.architecture import Architecture

    layout, arch = Layout(**c["layout"]), Architecture(**data["architecture"])
    assert layout_problems(arch, layout) == []
    assert layout.tp * layout.cp * layout.pp * layout.dp == 1024 == layout.etp * layout.ep * layout.pp * layout.edp


def test_human_output_names_the_cluster(cli, tmp_path):
    out = cli("plan", "--gpus", "64", "--days", "3", "--max-d-hidden", "3072", "--max-layers", "48",
              "--max-experts", "64", "--ep", "8", "--price-per-gpu-hour", "2",
              "--storage", f"sqlite:///{tmp_path / 'p.db'}")
    assert out.code == 0, out.err
    for label in ("cluster", "memory/device", "speed", "calendar", "no prior", "cost"):
        assert label in out.out


@pytest.mark.slow
def test_must_show_regret_zero_under_verify(cli, tmp_path):
    out = cli("plan", "--gpus", "1024", "--gpu", "h100", "--days", "30", "--json", "--verify",
              "--storage", f"sqlite:///{tmp_path / 'p.db'}")
    assert out.code == 0 and out.json()["search"]["verified"] and abs(out.json()["search"]["regret"]) < 1e-9


@pytest.mark.parametrize("args, code, text", [
    (["--gpus", "8", "--days", "30", "--hbm-gb", "4", "--min-d-hidden", "4096"], 1,
     r"no buildable model fits 8 x h100: the smallest needs [\d.]+ GiB per device"),
    (["--gpus", "4", "--ep", "8", "--days", "1"], 1, "smaller than, or not a multiple of, one layout"),
    (["--days", "3"], 2, "need --gpus"),
    (["--gpus", "64", "--gpu", "x100", "--days", "1"], 2, "unknown gpu 'x100'"),
])
def test_bad_cluster_requests_are_one_line(cli, tmp_path, args, code, text):
    import re

    out = cli("plan", *args, "--storage", f"sqlite:///{tmp_path / 'p.db'}")
    assert out.code == code and out.err.count("\n") == 1 and re.search(text, out.err), out.err


def test_study_tokens_agree_with_the_space():
    """The trials' tokens come from the same cluster model as the search."""
    from moeplan.planner.plan import load_law
    from moeplan.planner.space import AXES, Space
    from moeplan.planner.study import describe

    request = small_cluster_request()
    space = Space(request, load_law(request))
    values = {"n_layers": 16, "d_hidden": 2048, "d_expert": 1024, "n_experts": 32, "top_k": 2, "n_shared_experts": 1}
    ev = space.evaluate_values({k: np.array([values[k]]) for k in AXES})
    assert describe(space, values)["tokens"] == pytest.approx(float(ev.tokens[0]))
