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
    # issue 15: non-finite and unbounded numbers, refused before any work (exit 2, no store made)
    ("an infinite budget", "moeplan plan --flops inf"),
    ("a NaN budget", "moeplan plan --flops nan"),
    ("a budget above the limit", "moeplan plan --flops 1e40"),
    ("infinite GPU-hours", "moeplan plan --gpu-hours inf --gpu h100"),
    ("an infinite parameter cap", "moeplan plan --flops 1e22 --max-params inf"),
    ("a NaN memory cap", "moeplan plan --flops 1e22 --memory-gb nan"),
    ("an infinite token cap", "moeplan plan --flops 1e22 --max-tokens inf"),
    ("an infinite band tolerance", "moeplan plan --flops 1e22 --tolerance inf"),
    ("a band tolerance above the limit", "moeplan plan --flops 1e22 --tolerance 5"),
    ("an infinite tokens-per-parameter floor", "moeplan plan --flops 1e22 --min-tokens-per-param inf"),
    ("an infinite aspect ratio", "moeplan plan --flops 1e22 --max-aspect inf"),
    ("a NaN expert ratio", "moeplan plan --flops 1e22 --max-expert-ratio nan"),
    ("zero bytes per parameter", "moeplan plan --flops 1e22 --bytes-per-param 0"),
    ("a negative seed", "moeplan plan --flops 1e22 --seed -5"),
    ("a billion layers", "moeplan plan --flops 1e22 --max-layers 1000000000"),
    ("a billion experts", "moeplan plan --flops 1e22 --max-experts 1000000000"),
    ("a billion dense layers", "moeplan plan --flops 1e22 --dense-layers 1000000000"),
    ("dense layers that leave no MoE layer", "moeplan plan --flops 1e22 --dense-layers 128"),
    ("ten billion trials", "moeplan plan --flops 1e22 --trials 10000000000"),
    ("a hundred thousand workers", "moeplan plan --flops 1e22 --workers 100000"),
    ("a sequence of a hundred million tokens", "moeplan plan --flops 1e22 --seq-len 100000000"),
    ("a zero vocabulary", "moeplan plan --flops 1e22 --vocab 0"),
    ("tensor parallelism above the limit", "moeplan plan --flops 1e22 --tp 100000"),
    ("an MFU of NaN", "moeplan plan --gpu-hours 1000 --gpu h100 --mfu nan"),
    # fitted constants: whole and physical
    ("fitted constants with one constant", "moeplan plan --flops 1e22 --law-params {partial-fit.json}"),
    ("a negative fitted exponent", "moeplan plan --flops 1e22 --law-params {negative-exponent.json}"),
    ("a NaN fitted constant", "moeplan plan --flops 1e22 --law-params {nan-fit.json}"),
    ("text for a fitted constant", "moeplan plan --flops 1e22 --law-params {text-fit.json}"),
    ("a fitted constant the law does not have", "moeplan plan --flops 1e22 --law-params {extra-fit.json}"),
    ("fitted constants from a device", "moeplan plan --flops 1e22 --law-params /dev/zero"),
    ("fitted constants from a folder", "moeplan plan --flops 1e22 --law-params {folder}"),
    # stores: nothing a user has is touched
    ("a journal whose last record a crash cut off", "moeplan plan --flops 1e21 --storage journal:{torn.journal}"),
    ("another application's SQLite database", "moeplan plan --flops 1e21 --storage sqlite:///{app.db}"),
    ("a file that is not a database", "moeplan plan --flops 1e21 --storage sqlite:///{notes.db}"),
    ("a folder as an SQLite store", "moeplan plan --flops 1e21 --storage sqlite:///{folder}"),
    ("a folder as a journal", "moeplan plan --flops 1e21 --storage journal:{folder}"),
    ("a PostgreSQL server that refuses", "moeplan plan --flops 1e21 --storage postgresql+psycopg://u@127.0.0.1:1/db"),
    ("a study made for another budget", "moeplan plan --flops 1e22 --max-d-hidden 2048 --max-experts 64 "
                                        "--storage sqlite:///{study.db} --study mine"),
    ("resuming a study made for another budget", "moeplan plan --flops 1e22 --max-d-hidden 2048 --max-experts 64 "
                                                 "--storage sqlite:///{study.db} --study mine --resume"),
    ("resuming a study name the store lacks", "moeplan plan --flops 1e21 --max-d-hidden 2048 --max-experts 64 "
                                              "--storage sqlite:///{study.db} --study other --resume"),
    ("a dashboard on another application's database", "moeplan dashboard --storage sqlite:///{app.db}"),
    ("a dashboard on a torn journal", "moeplan dashboard --storage journal:{torn.journal}"),
    ("a dashboard on port 0", "moeplan dashboard --port 0"),
    # HF configs: wrong types and impossible values name the field
    ("a float for an integer in a HF config", "moeplan count {float-experts.json}"),
    ("a string for a boolean in a HF config", "moeplan count {string-bool.json}"),
    ("a string for an integer in a HF config", "moeplan count {string-layers.json}"),
    ("zero kv heads in a HF config", "moeplan count {zero-kv.json}"),
    ("MLP biases moeplan does not count", "moeplan count {mlp-bias.json}"),
    ("per-layer top-k that differs", "moeplan count {per-layer-topk.json}"),
    ("a model_type that is a list", "moeplan count {type-list.json}"),
    ("JSON nested too deeply", "moeplan count {deep.json}"),
    ("a config from a device", "moeplan count /dev/zero"),
    ("a config from a FIFO", "moeplan count {fifo.json}"),
    ("exporting a config with a float for an integer", "moeplan export {float-experts.json}"),
    # fits and frontiers: bounded
    ("runs from a device", "moeplan fit /dev/zero"),
    ("runs from a FIFO", "moeplan fit {fifo.json}"),
    ("a hundred thousand bootstrap resamples", "moeplan fit {runs.csv} --bootstrap 100000"),
    ("a hundred thousand fit starts", "moeplan fit {runs.csv} --starts 100000"),
    ("an infinite frontier end", "moeplan frontier --to inf"),
    ("a NaN frontier start", "moeplan frontier --from nan"),
    ("a thousand budgets per decade", "moeplan frontier --per-decade 1000"),
    ("API: top-k above the experts", "api: Architecture(**dict(ARCH, top_k=9))"),
    ("API: a negative budget", "api: PlanRequest(flops=-1)"),
    ("API: a budget too small", "api: plan(PlanRequest(flops=1e15, storage=':memory:'))"),
    ("API: an unknown law", "api: get_law('nope')"),
    ("API: a form-only law evaluated", "api: get_law('abnar').evaluate(N=1e9, D=1e10, S_inactive=0.5)"),
    ("API: counts beyond int64 in the vectorised path",
     "api: count_arrays(Architecture(n_layers=1000, d_hidden=65536, n_heads=512, d_expert=65536, n_experts=4096, "
     "top_k=4096, vocab_size=10**6, seq_len=10**7))"),
    ("API: counting a dict", "api: count(ARCH)"),
    ("API: an unknown convention", "api: count(Architecture(**ARCH), 'flops')"),
    ("API: planning a dict", "api: plan({'flops': 1e21})"),
    ("API: an infinite budget", "api: PlanRequest(flops=float('inf'))"),
    ("API: a negative seed", "api: PlanRequest(flops=1e21, seed=-5)"),
    ("API: zero tensor parallelism", "api: PlanRequest(flops=1e21, tensor_parallel=0)"),
    ("API: dense layers that leave no MoE layer", "api: Priors(dense_layers=128)"),
    ("API: a law named by a list", "api: get_law([])"),
    ("API: a law input of None", "api: get_law('hy').evaluate(N=None, D=1e10, N_a=1e8, G=8, S=0.2)"),
    ("API: a law input of text", "api: get_law('hy').evaluate(N='1e9', D=1e10, N_a=1e8, G=8, S=0.2)"),
    ("API: a HF config that is None", "api: from_hf_config(None)"),
    ("API: a float for an integer in a HF config", "api: from_hf_config(dict(MIXTRAL, num_local_experts=128.7))"),
    ("API: a string for a boolean in a HF config", "api: from_hf_config(dict(MIXTRAL, tie_word_embeddings='false'))"),
]


def run(command: str, files: dict[str, str]) -> tuple[str, str]:
    """(exit code or exception name, the one message line)."""
    concrete = fill(command, files)
    if concrete.startswith("api: "):
        return api_call(concrete.removeprefix("api: "))
    result = subprocess.run([sys.executable, "-c", "from moeplan.cli.script import run; run()",
                             *shlex.split(concrete)[1:]], capture_output=True, text=True, cwd=files["folder"])
    return str(result.returncode), result.stderr.strip()


def main() -> None:
    rows = []
    for number, (what, command) in enumerate(CASES, start=1):
        with tempfile.TemporaryDirectory() as tmp:  # a fresh folder per row, as the test makes
            files = make(Path(tmp), command)
            code, message = run(command, files)
            message = message.replace(tmp, "{folder}")
            rows.append(f"| {number} | {what} | `{command}` | {code} | `{message}` |")
    header = (ROOT / "docs" / "robustness-intro.md").read_text()
    (ROOT / "docs" / "robustness.md").write_text(header + "\n".join(rows) + "\n")
    print(f"wrote {len(rows)} rows")


if __name__ == "__main__":
    main()
