"""Files the robustness table (docs/robustness.md) refers to as {name}: made fresh in a temporary folder."""

from __future__ import annotations

import json
from pathlib import Path

ARCH = {"n_layers": 2, "d_hidden": 64, "n_heads": 4, "d_expert": 32, "n_experts": 8, "top_k": 2, "vocab_size": 100}
MLA_ARCH = ARCH | {"mla": {"kv_lora_rank": 16, "qk_rope_head_dim": 8, "qk_nope_head_dim": 8, "v_head_dim": 8}}
RUNS_HEADER = "N,N_a,D,G,S,loss\n"


def make(folder: Path) -> dict[str, str]:
    files = {
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
    return names


def fill(command: str, files: dict[str, str]) -> str:
    """Replace {name} placeholders (file names only; dict literals in API rows stay as they are)."""
    import re

    return re.sub(r"\{([\w.-]+)\}", lambda m: files.get(m.group(1), m.group(0)), command)


def api_call(expression: str) -> tuple[str, str]:
    """Evaluate a documented API call; returns (exception name, its first line)."""
    from pydantic import ValidationError

    from moeplan import Architecture, PlanRequest, plan
    from moeplan.flops.vectorised import count_arrays
    from moeplan.laws import get_law

    names = {"Architecture": Architecture, "PlanRequest": PlanRequest, "plan": plan, "get_law": get_law,
             "count_arrays": count_arrays, "ARCH": ARCH}
    try:
        eval(expression, names)  # the table's own API examples, nothing else
    except ValidationError as err:
        from moeplan.jsonio import validation_message

        return "ValidationError", validation_message(err)
    except Exception as err:  # noqa: BLE001 - the row names the exception type it expects
        return type(err).__name__, str(err).splitlines()[0]
    return "no error", ""
