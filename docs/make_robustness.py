"""Write docs/robustness.md: run every bad input below and record its exact message and exit code.

    python docs/make_robustness.py

The table is the test: tests/test_robustness.py parses it and checks every row again.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.robustness_fixtures import api_call, fill, make  # noqa: E402

CASES = [
    ("a missing config file", "moeplan count {missing.json}"),
    ("a file that is not JSON", "moeplan count {garbage.json}"),
    ("JSON that is not an object", "moeplan count {array.json}"),
    ("a folder instead of a file", "moeplan count {folder}"),
    ("an unknown model family", "moeplan count {llama.json}"),
    ("a family moeplan cannot hold (hybrid attention)", "moeplan count {hybrid.json}"),
    ("a HF config missing a field", "moeplan count {mixtral-partial.json}"),
    ("top-k above the number of experts", "moeplan count {topk.json}"),
    ("a zero size", "moeplan count {zero.json}"),
    ("kv heads that do not divide the heads", "moeplan count {kvheads.json}"),
    ("an unknown FLOPs convention", "moeplan count {topk.json} --convention flops"),
    ("a zero sequence length", "moeplan count {zero.json} --seq-len 0"),
    ("a negative budget", "moeplan plan --flops -1e22"),
    ("no budget", "moeplan plan"),
    ("two budgets", "moeplan plan --flops 1e22 --gpu-hours 1000 --gpu h100"),
    ("an unknown accelerator", "moeplan plan --gpu-hours 1000 --gpu tpu9"),
    ("an MFU above 1", "moeplan plan --gpu-hours 1000 --gpu h100 --mfu 1.5"),
    ("a budget too small for any buildable model", "moeplan plan --flops 1e15 --storage :memory:"),
    ("a parameter cap below the smallest model", "moeplan plan --flops 1e22 --max-params 1e6 --storage :memory:"),
    ("too little data for the largest model", "moeplan plan --flops 1e24 --max-tokens 1e9 --max-d-hidden 2048 "
                                              "--storage :memory:"),
    ("contradictory priors", "moeplan plan --flops 1e22 --min-aspect 200"),
    ("priors that leave no shape", "moeplan plan --flops 1e22 --max-layers 3 --max-aspect 150 --storage :memory:"),
    ("a law the planner cannot optimise", "moeplan plan --flops 1e22 --law ling --storage :memory:"),
    ("an unknown law", "moeplan plan --flops 1e22 --law gpt"),
    ("a missing fitted-constants file", "moeplan plan --flops 1e22 --law-params {missing.json}"),
    ("fitted constants of another law", "moeplan plan --flops 1e22 --law-params {fitted-chinchilla.json}"),
    ("workers without a shared store", "moeplan plan --flops 1e21 --workers 2 --storage :memory:"),
    ("resuming a study that does not exist", "moeplan plan --flops 1e21 --resume --storage sqlite:///{missing.db}"),
    ("an unreachable storage URL", "moeplan plan --flops 1e21 --storage nosuchdb://somewhere"),
    ("--export without --out", "moeplan plan --flops 1e22 --export hf"),
    ("an unknown objective", "moeplan plan --flops 1e22 --objective speed"),
    ("runs without a loss column", "moeplan fit {runs-no-loss.csv}"),
    ("a NaN loss", "moeplan fit {runs-nan.csv}"),
    ("a negative loss", "moeplan fit {runs-negative.csv}"),
    ("text in a number column", "moeplan fit {runs-text.csv}"),
    ("a zero model size", "moeplan fit {runs-zero-size.csv}"),
    ("fewer runs than constants", "moeplan fit {runs-few.csv} --out {out}"),
    ("a CSV with a header and no runs", "moeplan fit {runs-empty.csv}"),
    ("a missing runs file", "moeplan fit {missing.csv}"),
    ("fitting a law that does not predict loss", "moeplan fit {runs-few.csv} --law ling"),
    ("two holdout rules", "moeplan fit {runs-few.csv} --holdout-column split --holdout-fraction 0.2"),
    ("a law that needs fitting first", "moeplan predict --law hy-nd --total-params 1e9 --tokens 1e10"),
    ("a missing law input", "moeplan predict --total-params 1e9"),
    ("an activation ratio above 1", "moeplan leverage --flops 1e22 --activation-ratio 1.5 --granularity 8"),
    ("active parameters without total", "moeplan derive --active-params 1e9"),
    ("an export the family cannot hold", "moeplan export {mla.json} --family mixtral"),
    ("a reversed frontier range", "moeplan frontier --from 1e20 --to 1e19"),
    ("a plot format that is not PNG or SVG", "moeplan frontier --from 1e20 --to 1e20 --plot {out}.jpg"),
    ("a dashboard on a store that does not exist", "moeplan dashboard --storage sqlite:///{missing.db}"),
    ("API: top-k above the experts", "api: Architecture(**dict(ARCH, top_k=9))"),
    ("API: a negative budget", "api: PlanRequest(flops=-1)"),
    ("API: a budget too small", "api: plan(PlanRequest(flops=1e15, storage=':memory:'))"),
    ("API: an unknown law", "api: get_law('nope')"),
    ("API: a form-only law evaluated", "api: get_law('abnar').evaluate(N=1e9, D=1e10, S_inactive=0.5)"),
    ("API: counts beyond int64 in the vectorised path",
     "api: count_arrays(Architecture(n_layers=1000, d_hidden=65536, n_heads=512, d_expert=65536, n_experts=4096, "
     "top_k=4096, vocab_size=10**6, seq_len=10**7))"),
]


def run(command: str, files: dict[str, str]) -> tuple[str, str]:
    """(exit code or exception name, the one message line)."""
    concrete = fill(command, files)
    if concrete.startswith("api: "):
        return api_call(concrete.removeprefix("api: "))
    result = subprocess.run([sys.executable, "-c", "from moeplan.cli.main import main; main()",
                             *shlex.split(concrete)[1:]], capture_output=True, text=True, cwd=files["folder"])
    return str(result.returncode), result.stderr.strip()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        files = make(Path(tmp))
        rows = []
        for number, (what, command) in enumerate(CASES, start=1):
            code, message = run(command, files)
            message = message.replace(tmp, "{folder}")
            rows.append(f"| {number} | {what} | `{command}` | {code} | `{message}` |")
    header = (ROOT / "docs" / "robustness-intro.md").read_text()
    (ROOT / "docs" / "robustness.md").write_text(header + "\n".join(rows) + "\n")
    print(f"wrote {len(rows)} rows")


if __name__ == "__main__":
    main()
