"""Write the backtest table of docs/decisions.md: `moeplan assess` on the public MoEs of the test fixtures
whose training tokens are published, under every law the planner accepts.

    python docs/make_decisions.py

Replaces the lines between the BACKTEST markers of docs/decisions.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from moeplan.errors import MoeplanError  # noqa: E402
from moeplan.flops.hf import from_hf_config  # noqa: E402
from moeplan.laws import get_law  # noqa: E402
from moeplan.planner.assess import assess  # noqa: E402
from moeplan.planner.plan import check_plannable  # noqa: E402
from tests.hf_configs import hf_config  # noqa: E402

# Pre-training tokens as the model's authors state them.
TOKENS = {
    "Qwen3-30B-A3B": (36e12, "Qwen3 Technical Report, arXiv 2505.09388: 36T tokens"),
    "OLMoE-1B-7B-0924": (5e12, "OLMoE, arXiv 2409.02060, abstract: 5 trillion tokens"),
    "DeepSeek-V2-Lite": (5.7e12, "DeepSeek-V2-Lite model card: scratch training with 5.7T tokens"),
    "Moonlight-16B-A3B": (5.7e12, "Moonlight, arXiv 2502.16982 (Moonshot AI): 5.7T tokens"),
}
UNPUBLISHED = {
    "Mixtral-8x7B": "training tokens not published",
    "Qwen1.5-MoE-A2.7B": "upcycled from Qwen-1.8B; tokens not published",
    "gpt-oss-20b": "model card says 'trillions of tokens', no number",
}
CANDIDATE_LAWS = ("hy", "ludziejewski", "krajewski", "chinchilla")


def plannable_laws() -> list:
    out = []
    for name in CANDIDATE_LAWS:
        try:
            law = get_law(name)
            check_plannable(law)
        except MoeplanError:
            continue
        out.append((name, law))
    return out


def table() -> str:
    fixtures = json.loads((ROOT / "tests" / "data" / "real-moe-configs.json").read_text())
    laws = plannable_laws()
    lines = ["| model | tokens | compute (FLOPs) | law | model loss | optimum loss | regret | optimum at the same "
             "compute | first disagreement |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, (tokens, _) in TOKENS.items():
        arch = from_hf_config(hf_config(name, fixtures[name]))
        result = assess(arch, tokens, laws, name)
        for law in result.laws:
            o = law.optimum
            words = law.disagreements[0] if law.disagreements else "none"
            lines.append(f"| {name} | {tokens:.3g} | {result.compute:.3g} | {law.law} | {law.loss:.4f} | "
                         f"{o.loss:.4f} | {law.regret:.4f} | {o.shape()}, {o.active_params / 1e9:.2f}B active, "
                         f"{o.tokens / 1e12:.2f}T tokens | {words} |")
    lines.append("")
    lines.append("Tokens: " + "; ".join(f"{n}: {src}" for n, (_, src) in TOKENS.items()) + ". Not in the table: "
                 + "; ".join(f"{n} ({why})" for n, why in UNPUBLISHED.items()) + ".")
    return "\n".join(lines)


def main() -> None:
    path = ROOT / "docs" / "decisions.md"
    text = path.read_text()
    start, end = "<!-- BACKTEST START -->", "<!-- BACKTEST END -->"
    head, rest = text.split(start)
    _, tail = rest.split(end)
    path.write_text(f"{head}{start}\n{table()}\n{end}{tail}")


if __name__ == "__main__":
    main()
