"""`moeplan count` as a user meets it: JSON equals the API, bad input gets one line and the right exit code."""

from __future__ import annotations

import json

import pytest

from moeplan import Architecture, count

GOOD = {"n_layers": 2, "d_hidden": 64, "n_heads": 4, "d_expert": 32, "n_experts": 8, "top_k": 2, "vocab_size": 100}


def test_json_equals_python_api(cli, tmp_path):
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(GOOD))
    out = cli("count", path, "--json", "--convention", "deepseek")
    assert out.code == 0 and out.err == ""
    assert out.json() == json.loads(count(Architecture(**GOOD), "deepseek").model_dump_json())


def test_table_on_terminal(cli, tmp_path):
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(GOOD))
    out = cli("count", path)
    assert out.code == 0 and "routed_experts" in out.out and "training FLOPs per token" in out.out


def test_version(cli):
    out = cli("--version")
    assert out.code == 0 and out.out.startswith("moeplan ")


BAD_ARCH = [
    ({"d_hidden": 0}, "d_hidden: Input should be greater than 0"),
    ({"n_layers": -2}, "n_layers: Input should be greater than 0"),
    ({"top_k": 9}, "top_k=9 exceeds n_experts=8"),
    ({"n_kv_heads": 3}, "n_kv_heads=3 does not divide n_heads=4"),
    ({"n_heads": 5}, "d_head not given and n_heads=5 does not divide d_hidden=64"),
    ({"dense_layers": [5], "d_dense_ffn": 10}, "dense_layers [5] outside 0..1"),
    ({"colour": "red"}, "colour: Extra inputs are not permitted"),
]


@pytest.mark.parametrize(("change", "message"), BAD_ARCH, ids=[m for _, m in BAD_ARCH])
def test_bad_architecture_one_line_exit_1(cli, tmp_path, change, message):
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(GOOD | change))
    out = cli("count", path)
    assert out.code == 1
    assert out.err.strip() == f"moeplan: error: invalid architecture: {message}"
    assert out.out == ""


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--convention", "flops"), 2, "unknown convention 'flops'; choose one of: exact, 6n, torchtitan"),
        (("--seq-len", "0"), 2, "Invalid value for '--seq-len'"),
        (("--frobnicate",), 2, "No such option: --frobnicate"),
    ],
)
def test_usage_errors_exit_2(cli, tmp_path, args, code, message):
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(GOOD))
    out = cli("count", path, *args)
    assert out.code == code and message in out.err and len(out.err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("content", "code", "message"),
    [
        (None, 2, "no such file"),
        ("not json at all", 1, "not JSON (Expecting value at line 1)"),
        ("[1, 2]", 1, "expected a JSON object"),
        ('{"model_type": "llama", "hidden_size": 8}', 1, "unsupported model_type 'llama'; supported: deepseek_v2"),
        ('{"vocab_size": 10}', 1, "neither a moeplan architecture"),
        ('{"model_type": "mixtral", "hidden_size": 64}', 1, "mixtral: missing field 'num_attention_heads'"),
    ],
)
def test_bad_files(cli, tmp_path, content, code, message):
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    out = cli("count", path)
    assert out.code == code, out.err
    assert message in out.err and len(out.err.strip().splitlines()) == 1 and "Traceback" not in out.err
