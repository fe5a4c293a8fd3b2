"""The law commands as a user runs them: JSON equals the API; bad input gets one line."""

from __future__ import annotations

import json

import pytest

from moeplan.laws import LAWS, get_law
from moeplan.laws.reports import derive, leverage, predict


def test_laws_json_lists_every_law_with_provenance(cli):
    out = cli("laws", "--json")
    assert out.code == 0
    laws = out.json()
    assert [law["name"] for law in laws] == list(LAWS)
    hy = laws[0]
    assert hy["constants"][0] == {"name": "e", "value": 0.1577, "source": "[HY] Table 2", "status": "verbatim",
                                  "note": "", "sign": "nonnegative"}
    assert hy["formula"].startswith("[HY] Eq. 1/11/15")


def test_derive_json_equals_api(cli):
    out = cli("derive", "--law", "hy", "--total-params", "30e9", "--active-params", "6e9", "--json")
    assert out.code == 0
    api = derive(get_law("hy"), 30e9, 6e9, 0.001)
    assert out.json() == json.loads(api.model_dump_json())
    assert out.json()["efficiency_aware_activation_ratio"] == {"0.001": 0.21, "0.005": 0.09}


def test_predict_json_equals_api_with_extrapolation(cli):
    out = cli("predict", "--total-params", "1e10", "--active-params", "2e9", "--tokens", "1e12",
              "--activated-experts", "7", "--shared-ratio", "0.3", "--json")
    api = predict(get_law("hy"), {"N": 1e10, "N_a": 2e9, "D": 1e12, "G": 7, "S": 0.3})
    assert out.code == 0 and out.json() == json.loads(api.model_dump_json())
    assert {e["variable"] for e in out.json()["extrapolation"]} == {"N", "D"}


def test_leverage_json(cli):
    out = cli("leverage", "--activation-ratio", "0.031", "--granularity", "12", "--flops", "1e22", "--json")
    assert out.code == 0
    assert out.json() == json.loads(leverage(get_law("ling"), 0.031, 12, 1e22).model_dump_json())


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("predict", "--law", "gpt"), 2, "unknown law 'gpt'; choose one of: hy,"),
        (("predict", "--total-params", "1e9"), 2, "law 'hy' needs --tokens, --active-params, --activated-experts"),
        (("predict", "--law", "abnar", "--total-params", "1e9", "--tokens", "1e9"), 2, "needs --inactive-share"),
        (("predict", "--law", "hy-nd", "--total-params", "1e9", "--tokens", "1e9"), 1, "fit it first"),
        (("predict", "--law", "chinchilla", "--total-params", "-1e9", "--tokens", "1e9"), 1, "must be positive: N"),
        (("predict", "--law", "ling", "--tokens", "1e9"), 2, "needs"),
        (("derive", "--law", "krajewski"), 1, "no derivations for law 'krajewski'"),
        (("derive", "--active-params", "1e9"), 1, "--active-params needs --total-params"),
        (("derive", "--total-params", "1e9", "--active-params", "2e9"), 1, "active parameters exceed total"),
        (("derive", "--total-params", "0"), 2, "Invalid value for '--total-params'"),
        (("leverage", "--flops", "1e22"), 2, "give --activation-ratio and --granularity"),
        (("leverage", "--flops", "1e22", "--activation-ratio", "1.5", "--granularity", "8"), 1, "in (0, 1]"),
    ],
)
def test_bad_law_input(cli, args, code, message):
    out = cli(*args)
    assert out.code == code, out.err
    assert message in out.err and len(out.err.strip().splitlines()) == 1 and out.out == ""
