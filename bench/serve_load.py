"""Load on `moeplan serve`: N concurrent plan requests (D distinct, each repeated) against W workers on PostgreSQL.

Checks what a team relies on: zero errors, identical answers for identical requests, and exactly one stored
study per distinct request (the plan cache and study lease across workers). Prints latency percentiles, with
the latency of one cached answer measured in the same run as the floor.

    python bench/serve_load.py                        # starts its own PostgreSQL 15 on loopback
    python bench/serve_load.py --storage postgresql+psycopg://user@host/db
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.loopback import free_port, postgres_cluster  # noqa: E402

MOEPLAN = [sys.executable, "-c", "from moeplan.cli.script import run; run()"]


@contextlib.contextmanager
def postgres():
    """A throwaway PostgreSQL cluster on loopback (tests/loopback.py, as the tests start one)."""
    try:
        with postgres_cluster() as url:
            yield url
    except FileNotFoundError as err:
        raise SystemExit(str(err)) from None


def post(port: int, path: str, body) -> tuple[int, str, float]:
    """(status, body, seconds)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=900) as answer:
            status, text = answer.status, answer.read().decode()
    except urllib.error.HTTPError as err:
        status, text = err.code, err.read().decode()
    except OSError as err:
        status, text = 0, f"{type(err).__name__}: {err}"
    return status, text, time.perf_counter() - started


def cpu_seconds(pgid: int) -> float:
    """User + system CPU of the live processes in the server's process group (the uvicorn workers)."""
    total = 0.0
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # field 5 (pgrp), after pid and comm
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q / 100 * len(ordered) + 0.5)) - 1))]


def requests_for(distinct: int) -> list[dict]:
    """Distinct budgets from 1e20 to 1e23 FLOPs, default priors: what planners ask for."""
    return [{"flops": float(f"{1e20 * 10 ** (3 * k / max(1, distinct - 1)):.4g}")} for k in range(distinct)]


def run(storage: str, total: int = 200, distinct: int = 20, workers: int = 4, seed: int = 0) -> dict:
    import optuna

    folder = Path(tempfile.mkdtemp(prefix="moeplan-load-"))
    port = free_port()
    log = open(folder / "serve.log", "w")
    server = subprocess.Popen([*MOEPLAN, "serve", "--port", str(port), "--storage", storage, "--workers", str(workers)],
                              stdout=subprocess.DEVNULL, stderr=log, start_new_session=True, cwd=folder)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"server did not start: {(folder / 'serve.log').read_text()[-2000:]}")
                time.sleep(0.3)
        time.sleep(2)  # let all workers finish starting
        alone = post(port, "/api/plan", {"flops": 1e21, "seed": 1})  # one plan on an idle service: the floor
        if alone[0] != 200:
            raise SystemExit(f"the probe plan failed: {alone[1][:300]}")
        bodies = requests_for(distinct)
        order = [bodies[i % distinct] for i in range(total)]
        random.Random(seed).shuffle(order)
        cpu_before, started = cpu_seconds(server.pid), time.perf_counter()
        with ThreadPoolExecutor(total) as pool:
            results = list(pool.map(lambda body: (body, *post(port, "/api/plan", body)), order))
        wall, cpu = time.perf_counter() - started, cpu_seconds(server.pid) - cpu_before
        floor = sorted(post(port, "/api/plan", bodies[0])[2] for _ in range(20))[10]  # a cached answer
        errors = [(b, s, t[:200]) for b, s, t, _ in results if s != 200]
        answers: dict[str, set] = {}
        for body, status, text, _ in results:
            if status == 200:
                answers.setdefault(json.dumps(body), set()).add(text)
        studies = [n for n in optuna.get_all_study_names(storage=storage) if n != json.loads(alone[1])["search"]["study_name"]]
        plans = {k: json.loads(next(iter(v))) for k, v in answers.items()}
        searches = [p["search"] for p in plans.values()]
        trials_ok = all(len(optuna.load_study(study_name=s["study_name"], storage=storage).trials) == s["trials"]
                        for s in searches)
        latencies = [t for *_, t in results]
        return {
            "requests": total, "distinct": distinct, "workers": workers, "errors": len(errors),
            "error_samples": errors[:3], "wall_s": wall, "server_cpu_s": cpu,
            "p50_s": percentile(latencies, 50), "p99_s": percentile(latencies, 99), "max_s": max(latencies),
            "cached_answer_s": floor, "alone_s": alone[2],
            "identical_answers": all(len(v) == 1 for v in answers.values()) and len(answers) == distinct,
            "stored_studies": len(studies),
            "studies_match": sorted(studies) == sorted(s["study_name"] for s in searches),
            "trials_match": trials_ok,
        }
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def report(r: dict) -> str:
    return "\n".join([
        f"{r['requests']} concurrent plan requests ({r['distinct']} distinct, default priors, 1e20..1e23 FLOPs) "
        f"against {r['workers']} workers on PostgreSQL",
        f"errors: {r['errors']}; identical answers per request: {r['identical_answers']}; stored studies: "
        f"{r['stored_studies']} for {r['distinct']} distinct requests (names match: {r['studies_match']}, "
        f"trial counts match: {r['trials_match']})",
        f"latency p50 {r['p50_s']:.2f} s, p99 {r['p99_s']:.2f} s, max {r['max_s']:.2f} s; all done in "
        f"{r['wall_s']:.1f} s wall, {r['server_cpu_s']:.1f} s server CPU",
        f"floors in the same run: one plan alone on the idle service {r['alone_s']:.2f} s (p50 = "
        f"{r['p50_s'] / r['alone_s']:.0f}x it, for {r['distinct']} plans on {r['workers']} workers); one cached "
        f"answer {1000 * r['cached_answer_s']:.1f} ms (median of 20)",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", help="a PostgreSQL URL (default: start a throwaway cluster)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--distinct", type=int, default=20)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    with (contextlib.nullcontext(args.storage) if args.storage else postgres()) as storage:  # an empty database
        result = run(storage, args.requests, args.distinct, args.workers)
    print(report(result))
    ok = result["errors"] == 0 and result["stored_studies"] == result["distinct"] and result["identical_answers"] \
        and result["studies_match"] and result["trials_match"]
    print("goal: zero errors, one study per distinct request:", "met" if ok else f"NOT met {result['error_samples']}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
