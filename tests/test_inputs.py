"""Issue 15: every request input is finite and bounded, checked before any work; TP divides the kv heads."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from pydantic import ValidationError

from moeplan.planner import PlanRequest, Priors, plan
from moeplan.planner.request import MAX_FLOPS

MOEPLAN = [sys.executable, "-c", "from moeplan.cli.script import run; run()"]
FLOAT_FIELDS = [name for name, f in PlanRequest.model_fields.items() if "float" in repr(f.annotation)]
PRIOR_FLOATS = [name for name, f in Priors.model_fields.items() if "float" in repr(f.annotation)]


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize("field", FLOAT_FIELDS)
def test_every_float_of_a_request_is_finite(field, value):
    base = {"flops": 1e21} if field not in ("flops", "gpu_hours") else {}
    with pytest.raises(ValidationError) as err:
        PlanRequest(**base, **{field: value})
    assert err.value.errors()[0]["loc"] == (field,)


@pytest.mark.parametrize("field", PRIOR_FLOATS)
def test_every_float_prior_is_finite(field):
    with pytest.raises(ValidationError) as err:
        Priors(**{field: math.inf})
    assert err.value.errors()[0]["loc"] == (field,)


def test_the_float_fields_are_all_found():  # the tests above cannot pass vacuously
    assert {"flops", "gpu_hours", "gpu_flops", "mfu", "max_params", "memory_gb", "bytes_per_param", "max_tokens",
            "tolerance"} <= set(FLOAT_FIELDS)
    assert {"min_aspect", "max_aspect", "min_expert_ratio", "max_expert_ratio", "dense_ffn_ratio",
            "min_tokens_per_param"} <= set(PRIOR_FLOATS)


def test_every_number_has_an_upper_limit():
    """Unbounded sizes run without bound: each numeric input states its limit."""
    for model in (PlanRequest, Priors):
        for name, f in model.model_fields.items():
            if any(kind in repr(f.annotation) for kind in ("int", "float")):
                assert any(type(m).__name__ in ("Le", "Lt") for m in f.metadata), f"{model.__name__}.{name}"


@pytest.mark.parametrize("flags", [["--flops", "inf"], ["--flops", "nan"], ["--flops", "1e21", "--max-params", "inf"],
                                   ["--flops", "1e21", "--tolerance", "inf"], ["--gpu-hours", "inf", "--gpu", "h100"],
                                   ["--flops", "1e21", "--min-tokens-per-param", "nan"],
                                   ["--flops", str(MAX_FLOPS * 10)], ["--flops", "1e21", "--max-experts", "1000000000"],
                                   ["--flops", "1e21", "--max-layers", "1000000000"],
                                   ["--flops", "1e21", "--dense-layers", "1000000000"],
                                   ["--flops", "1e21", "--seed", "-5"], ["--flops", "1e21", "--trials", "10000000000"]])
def test_bad_numbers_exit_2_in_one_line_and_leave_no_store(flags, cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("plan", *flags)
    assert result.code == 2, result.err
    assert len(result.err.strip().splitlines()) == 1 and result.out == ""
    assert list(tmp_path.iterdir()) == []  # no moeplan.db


@pytest.mark.parametrize("tp", [2, 4, 8])
@pytest.mark.parametrize("gqa", [1, 2, 4, 8])
def test_tensor_parallelism_divides_the_kv_heads(tp, gqa):
    request = PlanRequest(flops=1e21, tensor_parallel=tp, gqa_group=gqa)
    heads = request.d_hidden_step // request.d_head
    assert heads % gqa == 0 and (heads // gqa) % tp == 0


def test_tp_8_plans_kv_heads_megatron_accepts():
    """The issue's case: --tp 8 planned 56 query / 14 kv heads; Megatron-Core needs kv heads % TP == 0."""
    a = plan(PlanRequest(flops=1e22, tensor_parallel=8, storage=":memory:")).architecture
    assert a.n_kv_heads % 8 == 0 and a.n_heads == 4 * a.n_kv_heads


def test_dense_layers_leave_at_least_one_moe_layer():
    with pytest.raises(ValidationError, match="leaves no MoE layer"):
        Priors(dense_layers=128)
    planned = plan(PlanRequest(flops=1e21, priors=Priors(dense_layers=10, max_d_hidden=2048, max_experts=64),
                               storage=":memory:"))
    assert planned.architecture.n_layers > 10


def test_a_valid_plan_prints_no_numpy_warning(tmp_path):
    """--dense-layers 10 used to evaluate models with fewer layers than dense ones (negative counts)."""
    result = subprocess.run([*MOEPLAN, "plan", "--flops", "1e22", "--dense-layers", "10", "--storage", ":memory:",
                             "--trials", "40", "--json"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert json.loads(result.stdout)["architecture"]["n_layers"] > 10


def test_bytes_per_param_sets_the_weight_memory():
    one = plan(PlanRequest(flops=1e21, bytes_per_param=1, storage=":memory:"))
    two = plan(PlanRequest(flops=1e21, bytes_per_param=2, storage=":memory:"))
    assert one.counts.total.all == two.counts.total.all
    assert one.counts.weight_memory_gb == pytest.approx(one.counts.total.all / 1e9)
    assert two.counts.weight_memory_gb == pytest.approx(2 * two.counts.total.all / 1e9)


HY = {"e": 0.1577, "f": 7.2446, "m": 5.1395, "n": -3.2363, "k": 0.0013, "h": 0.0450, "a": 38.0510, "alpha": 0.2383,
      "b": 27129.0488, "beta": 0.4694, "c": 31.0958, "epsilon": 1.8182}  # [HY] Table 2


@pytest.mark.parametrize(("constants", "message"), [
    ({"alpha": 0.3}, "fitted constants must replace all of law 'hy''s constants; it lacks e, f, m, n, k, h, a, b, "
                     "beta, c, epsilon"),
    (HY | {"alpha": -0.2}, "exponent alpha=-0.2 is outside [0.0001, 5], the range moeplan fit allows"),
    (HY | {"beta": 0.0}, "exponent beta=0 is outside [0.0001, 5], the range moeplan fit allows"),
    (HY | {"a": "lots"}, "constant a must be a finite number, not 'lots'"),
    (HY | {"a": True}, "constant a must be a finite number, not True"),
    (HY | {"zeta": 1.0}, "fitted constants must replace all of law 'hy''s constants; it has constants law 'hy' does "
                         "not: zeta"),
])
def test_partial_or_unphysical_fitted_constants_are_refused(constants, message, tmp_path):
    from moeplan.errors import MoeplanError

    path = tmp_path / "fit.json"
    path.write_text(json.dumps({"law": "hy", "constants": constants}))
    with pytest.raises(MoeplanError) as err:
        plan(PlanRequest(flops=1e21, law_params=str(path), storage=":memory:"))
    assert str(err.value) == f"{path}: {message}"


def test_nan_constants_in_json_are_refused(tmp_path):
    from moeplan.errors import MoeplanError

    path = tmp_path / "fit.json"
    path.write_text(json.dumps({"law": "hy", "constants": HY | {"epsilon": math.nan}}))  # JSON's NaN extension
    with pytest.raises(MoeplanError, match="constant epsilon must be a finite number, not nan"):
        plan(PlanRequest(flops=1e21, law_params=str(path), storage=":memory:"))


def test_published_constants_given_as_a_fit_plan_as_the_published_law(tmp_path):
    path = tmp_path / "fit.json"
    path.write_text(json.dumps({"law": "hy", "constants": HY}))
    small = Priors(max_d_hidden=2048, max_experts=64)
    fitted = plan(PlanRequest(flops=1e21, law_params=str(path), priors=small, storage=":memory:"))
    published = plan(PlanRequest(flops=1e21, priors=small, storage=":memory:"))
    assert fitted.architecture == published.architecture and fitted.law.loss == pytest.approx(published.law.loss)
