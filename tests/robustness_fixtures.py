"""Files the robustness table (docs/robustness.md) refers to as {name}: made fresh in a temporary folder."""

from __future__ import annotations

import json
from pathlib import Path

ARCH = {"n_layers": 2, "d_hidden": 64, "n_heads": 4, "d_expert": 32, "n_experts": 8, "top_k": 2, "vocab_size": 100}
MLA_ARCH = ARCH | {"mla": {"kv_lora_rank": 16, "qk_rope_head_dim": 8, "qk_nope_head_dim": 8, "v_head_dim": 8}}
RUNS_HEADER = "N,N_a,D,G,S,loss\n"
MIXTRAL = {"model_type": "mixtral", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "vocab_size": 100, "intermediate_size": 32, "num_local_experts": 8,
           "num_experts_per_tok": 2}
HY = {"e": 0.1577, "f": 7.2446, "m": 5.1395, "n": -3.2363, "k": 0.0013, "h": 0.0450, "a": 38.0510, "alpha": 0.2383,
      "b": 27129.0488, "beta": 0.4694, "c": 31.0958, "epsilon": 1.8182}  # [HY] Table 2
TORN_JOURNAL = ('{"op_code": 0, "worker_id": "x", "study_name": "a", "directions": [1]}\n'
                '{"op_code": 0, "worker_id": "x", "study_nam')
SMALL_PLAN = dict(flops=1e21, max_d_hidden=2048, max_experts=64)


def _expensive(folder: Path, command: str) -> dict[str, str]:
    """Files that take a second to make, made only for the commands that name them."""
    names = {}
    if "{study.db}" in command:  # a store holding study 'mine', planned for 1e21 FLOPs
        from moeplan.planner import PlanRequest, Priors, plan

        url = f"sqlite:///{folder / 'study.db'}"
        plan(PlanRequest(flops=1e21, priors=Priors(max_d_hidden=2048, max_experts=64), storage=url,
                         study_name="mine"))
        names["study.db"] = str(folder / "study.db")
    return names


def make(folder: Path, command: str = "") -> dict[str, str]:
    """The files of the table in `folder` (those a second or more to make only if `command` names them)."""
    import os
    import sqlite3

    with sqlite3.connect(folder / "app.db") as db:  # another application's database
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    os.mkfifo(folder / "fifo.json")
    files = {
        "float-experts.json": json.dumps(MIXTRAL | {"num_local_experts": 128.7}),
        "string-bool.json": json.dumps(MIXTRAL | {"tie_word_embeddings": "false"}),
        "zero-kv.json": json.dumps(MIXTRAL | {"num_key_value_heads": 0}),
        "mlp-bias.json": json.dumps(MIXTRAL | {"mlp_bias": True}),
        "per-layer-topk.json": json.dumps(MIXTRAL | {"num_experts_per_tok": [2, 3]}),
        "type-list.json": json.dumps(MIXTRAL | {"model_type": ["mixtral"]}),
        "string-layers.json": json.dumps(MIXTRAL | {"num_hidden_layers": "2"}),
        "deep.json": "[" * 100_000 + "]" * 100_000,
        "partial-fit.json": json.dumps({"law": "hy", "constants": {"alpha": 0.3}}),
        "negative-exponent.json": json.dumps({"law": "hy", "constants": HY | {"beta": -0.4694}}),
        "nan-fit.json": json.dumps({"law": "hy", "constants": HY | {"epsilon": float("nan")}}),
        "text-fit.json": json.dumps({"law": "hy", "constants": HY | {"a": "lots"}}),
        "extra-fit.json": json.dumps({"law": "hy", "constants": HY | {"zeta": 1.0}}),
        "torn.journal": TORN_JOURNAL,
        "notes.db": "my notes\n" * 100,
        "runs.csv": RUNS_HEADER + "1e9,1e8,1e10,8,0.2,2.5\n" * 20,
        "garbage.json": "this is not json",
        "array.json": "[1, 2, 3]",
        "llama.json": json.dumps({"model_type": "llama", "hidden_size": 64}),
        "hybrid.json": json.dumps({"model_type": "qwen3_next", "hidden_size": 64}),
        "mixtral-partial.json": json.dumps({"model_type": "mixtral", "hidden_size": 64}),
        "topk.json": json.dumps(ARCH | {"top_k": 9}),
        "zero.json": json.dumps(ARCH | {"d_hidden": 0}),
        "kvheads.json": json.dumps(ARCH | {"n_kv_heads": 3}),
        "mla.json": json.dumps(MLA_ARCH),
        "fitted-chinchilla.json": json.dumps({"law": "chinchilla", "constants": {"E": 1.7}}),
        "runs-no-loss.csv": "N,N_a,D,G,S\n1e9,1e8,1e10,8,0.2\n",
        "runs-nan.csv": RUNS_HEADER + "1e9,1e8,1e10,8,0.2,nan\n",
        "runs-negative.csv": RUNS_HEADER + "1e9,1e8,1e10,8,0.2,-2\n",
        "runs-text.csv": RUNS_HEADER + "1e9,lots,1e10,8,0.2,2.5\n",
        "runs-few.csv": RUNS_HEADER + "1e9,1e8,1e10,8,0.2,2.5\n" * 5,
        "runs-zero-size.csv": RUNS_HEADER + "0,1e8,1e10,8,0.2,2.5\n",
        "runs-empty.csv": RUNS_HEADER,
    }
    names = {}
    for name, text in files.items():
        (folder / name).write_text(text)
        names[name] = str(folder / name)
    names["missing.json"] = str(folder / "missing.json")
    names["missing.csv"] = str(folder / "missing.csv")
    names["missing.db"] = str(folder / "missing.db")
    names["folder"] = str(folder)
    names["out"] = str(folder / "written")
    names["app.db"] = str(folder / "app.db")
    names["fifo.json"] = str(folder / "fifo.json")
    return names | _expensive(folder, command)


def fill(command: str, files: dict[str, str]) -> str:
    """Replace {name} placeholders (file names only; dict literals in API rows stay as they are)."""
    import re

    return re.sub(r"\{([\w.-]+)\}", lambda m: files.get(m.group(1), m.group(0)), command)


def api_call(expression: str) -> tuple[str, str]:
    """Evaluate a documented API call; returns (exception name, its first line)."""
    from pydantic import ValidationError

    from moeplan import Architecture, PlanRequest, count, plan
    from moeplan.flops.hf import from_hf_config
    from moeplan.flops.vectorised import count_arrays
    from moeplan.laws import get_law
    from moeplan.planner import Priors

    names = {"Architecture": Architecture, "PlanRequest": PlanRequest, "plan": plan, "get_law": get_law,
             "count_arrays": count_arrays, "ARCH": ARCH, "count": count, "from_hf_config": from_hf_config,
             "Priors": Priors, "MIXTRAL": MIXTRAL}
    try:
        eval(expression, names)  # the table's own API examples, nothing else
    except ValidationError as err:
        from moeplan.jsonio import validation_message

        return "ValidationError", validation_message(err)
    except Exception as err:  # noqa: BLE001 - the row names the exception type it expects
        return type(err).__name__, str(err).splitlines()[0]
    return "no error", ""
