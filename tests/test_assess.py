"""`moeplan assess`: published MoEs scored by each law against the best design of their own family."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moeplan.flops.count import count
from moeplan.flops.hf import from_hf_config
from moeplan.laws import get_law
from moeplan.planner.assess import assess, containing_request, model_axes, model_space
from tests.conftest import DATA
from tests.hf_configs import hf_config

FIXTURES = json.loads((DATA / "real-moe-configs.json").read_text())
HY = get_law("hy")
FAST = ["gpt-oss-20b", "Qwen3-30B-A3B"]  # the smallest spaces; the slow tier runs every fixture


def _config(tmp_path, name):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(hf_config(name, FIXTURES[name])))
    return path


def _check(data, name):
    fx = FIXTURES[name]
    assert data["model"]["total_params"] == fx["computed"]["total"]  # the space counts the model exactly
    for law in data["laws"]:
        assert law["regret"] >= 0, law
        assert law["optimum"]["loss"] <= law["loss"]


@pytest.mark.parametrize("name", FAST)
def test_assess_fixture_models(cli, tmp_path, name):
    data = cli("assess", _config(tmp_path, name), "--tokens", "1e12", "--json").json()
    _check(data, name)
    text = cli("assess", _config(tmp_path, name), "--tokens", "1e12")
    assert text.code == 0 and "regret" in text.out


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FIXTURES))
def test_assess_every_fixture_model(cli, tmp_path, name):
    _check(cli("assess", _config(tmp_path, name), "--tokens", "5e12", "--json").json(), name)


def test_disagreements_in_words():
    """gpt-oss-20b routes to 4 experts: [HY] would activate 6 (G* = 6.78), still without shared experts, which
    its family (transformers' gpt_oss) does not have; its sparsity N/N_a is said too."""
    a = from_hf_config(hf_config("gpt-oss-20b", FIXTURES["gpt-oss-20b"]))
    result = assess(a, 1e12, [("hy", HY)], "gpt-oss-20b")
    words = result.laws[0].disagreements
    assert words[0] == "top-k 4: G = 4 against G = 6 (top-k 6); the law's unconstrained G* = 6.78"
    assert result.laws[0].optimum.n_shared_experts == 0
    assert any(w.startswith("total/active N/N_a = 6.52 against") for w in words)


def test_the_law_optimum_assessed_has_zero_regret(cli, tmp_path):
    """A plan's own architecture, at its own tokens, is the optimum of the space assess builds around it."""
    plan = cli("plan", "--flops", "1e21", "--storage", ":memory:", "--json").json()
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    data = cli("assess", path, "--tokens", repr(plan["training"]["tokens"]), "--json").json()
    law = data["laws"][0]
    assert law["regret"] == 0 and law["disagreements"] == []
    assert law["loss"] == pytest.approx(plan["law"]["loss"], abs=1e-12)
    assert data["compute"] == pytest.approx(1e21, rel=1e-12)


def test_space_contains_models_with_unusual_shapes():
    """Qwen3 (heads x d_head = 2 d_hidden), Mixtral (d_expert = 3.5 d_hidden), Qwen1.5 (60 experts, 4 fused
    shared): each is a point of its own space, counted exactly."""
    for name in ("Qwen3-30B-A3B", "Mixtral-8x7B", "Qwen1.5-MoE-A2.7B", "DeepSeek-V2-Lite"):
        a = from_hf_config(hf_config(name, FIXTURES[name]))
        request = containing_request(a, 1e12, count(a).convention)
        space = model_space(a, HY, request)  # raises if the space's count differs from the counter's
        values = {k: np.array([v]) for k, v in model_axes(a).items()}
        assert int(space.evaluate_values(values).total[0]) == FIXTURES[name]["computed"]["total"]


@pytest.mark.parametrize("args, code, message", [
    (["--tokens", "0"], 2, "--tokens must be positive"),
    (["--tokens", "1e12", "--laws", "nosuch"], 2, "unknown law"),
    (["--tokens", "1e12", "--laws", "hol"], 1, "predicts tokens, not loss"),
])
def test_bad_assess_requests(cli, tmp_path, args, code, message):
    result = cli("assess", _config(tmp_path, "gpt-oss-20b"), *args)
    assert result.code == code and message in result.err and len(result.err.strip().splitlines()) == 1


def test_missing_config(cli, tmp_path):
    result = cli("assess", tmp_path / "nope.json", "--tokens", "1e12")
    assert result.code == 2 and "no such file" in result.err
