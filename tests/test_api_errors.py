"""Issue 15 item 17: every public function raises the documented kinds on wrong input (moeplan/errors.py):
MoeplanError (UsageError is one) or pydantic's ValidationError, never AttributeError, TypeError or ValueError."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from moeplan import Architecture, PlanRequest, count, plan
from moeplan.errors import MoeplanError
from moeplan.flops.hf import from_hf_config
from moeplan.laws import LAWS, get_law
from tests.robustness_fixtures import ARCH

DOCUMENTED = (MoeplanError, ValidationError)
WRONG = st.one_of(st.none(), st.booleans(), st.integers(-10, 10), st.floats(allow_nan=True), st.text(max_size=5),
                  st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                  st.just(object()))
CALLS = {
    "count": lambda x: count(x),
    "count convention": lambda x: count(Architecture(**ARCH), x),
    "plan": lambda x: plan(x),
    "Architecture field": lambda x: Architecture(**(ARCH | {"n_experts": x})),
    "PlanRequest field": lambda x: PlanRequest(flops=x),
    "from_hf_config": lambda x: from_hf_config(x),
    "from_hf_config model_type": lambda x: from_hf_config({"model_type": x}),
    "from_hf_config seq_len": lambda x: from_hf_config({"model_type": "mixtral"}, seq_len=x),
    "get_law": lambda x: get_law(x),
    "evaluate": lambda x: get_law("hy").evaluate(N=x, D=1e10, N_a=1e8, G=8, S=0.2),
    "evaluate output": lambda x: get_law("hy").evaluate(x, N=1e9, D=1e10, N_a=1e8, G=8, S=0.2),
}


@pytest.mark.parametrize("name", list(CALLS))
@settings(max_examples=40, deadline=None)
@given(value=WRONG)
def test_wrong_types_raise_the_documented_kinds(name, value):
    try:
        CALLS[name](value)
    except DOCUMENTED:
        pass
    except Exception as err:  # noqa: BLE001 - the point of the test
        pytest.fail(f"{name}({value!r}) raised {type(err).__name__}: {err}")


@pytest.mark.parametrize(("call", "kind", "message"), [
    (lambda: count(ARCH), "UsageError", "count() takes an Architecture, not dict"),
    (lambda: count(Architecture(**ARCH), "flops"), "UsageError",
     "unknown convention 'flops'; choose one of: exact, 6n, torchtitan, deepseek, holistic"),
    (lambda: plan({"flops": 1e21}), "UsageError", "plan() takes a PlanRequest, not dict"),
    (lambda: from_hf_config(None), "UsageError", "from_hf_config() takes a config dict, not NoneType"),
    (lambda: get_law("hy").evaluate(N=None, D=1e10, N_a=1e8, G=8, S=0.2), "UsageError",
     "law input N must be numbers, not None"),
    (lambda: get_law("hy").evaluate(N="1e9", D=1e10, N_a=1e8, G=8, S=0.2), "UsageError",
     "law input N must be numbers, not '1e9'"),
])
def test_the_issues_examples(call, kind, message):
    with pytest.raises(MoeplanError) as err:
        call()
    assert (type(err.value).__name__, str(err.value)) == (kind, message)


def test_valid_calls_still_work():
    assert count(Architecture(**ARCH), "6n").total.all > 0
    assert all(get_law(name) is law for name, law in LAWS.items())
    assert get_law("hy").evaluate(N=[1e9, 2e9], D=1e10, N_a=1e8, G=8, S=0.2).shape == (2,)
