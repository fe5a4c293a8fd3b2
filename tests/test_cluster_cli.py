"""`moeplan memory` and `moeplan layout` as a user meets them; the job files they export."""

from __future__ import annotations

import json
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest

from moeplan.cluster.hardware import catalogue
from moeplan.cluster.layout import Layout
from moeplan.cluster.memory import MemoryOptions, memory_of
from moeplan.flops.hf import load_architecture

EXAMPLE = Path(__file__).parent.parent / "moeplan" / "examples" / "qwen3-30b-a3b.config.json"


def test_catalogue_has_a_source_for_every_number():
    rows = catalogue()
    assert {"a100-80g", "h100", "h800", "h200", "b200", "gb200", "mi300x", "tpu-v5p"} <= set(rows)
    for row in rows.values():
        for field in ("hbm_gb", "bf16_flops", "fp8_flops", "hbm_tbps", "domain", "scaleup_gbps", "internode_gbps"):
            assert row.sources.get(field), (row.key, field)


def test_memory_json_equals_the_model(cli):
    out = cli("memory", EXAMPLE, "--gpus", "16", "--pp", "2", "--vp", "12", "--ep", "8", "--global-batch", "512",
              "--json")
    assert out.code == 0 and out.err == ""
    data = out.json()
    arch = load_architecture(EXAMPLE)
    want = memory_of(arch, Layout(world=16, pp=2, vp=12, ep=8, global_batch=512), MemoryOptions())
    assert data["memory"]["total"] == pytest.approx(want["total"] / 2**30)
    assert data["memory"]["fits"] is True and data["layout_problems"] == []


def test_memory_human_output_and_overrides(cli):
    out = cli("memory", EXAMPLE, "--gpus", "8", "--ep", "8", "--hbm-gb", "24")
    assert out.code == 0
    assert "does not fit" in out.out and "Megatron-LM" in out.out and "assumptions:" in out.out


@pytest.mark.parametrize("args, code, text", [
    (["--gpus", "16", "--tp", "3"], 2, "TP x CP x PP = 3 does not divide 16 devices"),
    (["--gpus", "16", "--gpu", "x100"], 2, "unknown gpu 'x100'"),
    (["--gpus", "16", "--tp", "8"], 0, ""),
])
def test_memory_bad_input_is_one_line(cli, args, code, text):
    out = cli("memory", EXAMPLE, *args)
    assert out.code == code
    if code:
        assert out.err.count("\n") == 1 and text in out.err


def test_refused_layout_is_named(cli):
    out = cli("memory", EXAMPLE, "--gpus", "16", "--tp", "8")
    assert "Megatron-Core would refuse: TP 8 does not divide 4 kv heads" in out.out


def test_layout_json_and_days(cli):
    out = cli("layout", EXAMPLE, "--gpus", "64", "--tokens", "1e12", "--global-batch", "512", "--json",
              "--price-per-gpu-hour", "2")
    assert out.code == 0
    best = out.json()["best"]
    assert len(best) == 5 and best[0]["step_time_s"] <= best[1]["step_time_s"]
    b = best[0]
    assert b["memory"]["fits"] and b["layout_problems"] == []
    assert b["days"] == pytest.approx(1e12 / b["tokens_per_s"] / 86400)
    assert b["gpu_hours"] == pytest.approx(b["days"] * 24 * 64) and b["cost"] == pytest.approx(2 * b["gpu_hours"])


def test_layout_exports_a_runnable_megatron_script(cli, tmp_path):
    path = tmp_path / "job.sh"
    out = cli("layout", EXAMPLE, "--gpus", "64", "--tokens", "1e12", "--export", "megatron", "--out", path)
    assert out.code == 0
    text = path.read_text()
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    flags = [line.strip().rstrip("\\").strip() for line in text.splitlines() if line.startswith("    --")]
    names = [shlex.split(f)[0] for f in flags]
    assert len(names) == len(set(names))  # one flag per line, none twice
    for needed in ("--tensor-model-parallel-size", "--expert-model-parallel-size", "--train-samples", "--lr",
                   "--global-batch-size", "--bf16", "--moe-grouped-gemm", "--moe-token-dispatcher-type"):
        assert needed in names


def test_layout_exports_torchtitan_toml(cli):
    out = cli("layout", EXAMPLE, "--gpus", "64", "--tokens", "1e12", "--export", "torchtitan")
    assert out.code == 0
    cfg = tomllib.loads(out.out)
    p = cfg["parallelism"]
    assert p["data_parallel_shard_degree"] * p["tensor_parallel_degree"] * p["pipeline_parallel_degree"] \
        * p["context_parallel_degree"] == 64


def test_layout_no_layout_is_one_line(cli):
    out = cli("layout", EXAMPLE, "--gpus", "97", "--tokens", "1e12")
    assert out.code == 1 and out.err.count("\n") == 1 and "no parallel layout of 97 devices" in out.err


def test_plan_json_with_a_cluster_becomes_a_job(cli, tmp_path):
    """The hook for `moeplan export PLAN.json`: a cluster plan carries its layout into the Megatron script."""
    from moeplan.cluster.launch import job_from_plan

    out = cli("plan", "--gpus", "64", "--days", "3", "--max-d-hidden", "3072", "--max-layers", "48",
              "--max-experts", "64", "--ep", "8", "--json", "--storage", f"sqlite:///{tmp_path / 'p.db'}")
    assert out.code == 0, out.err
    path = tmp_path / "plan.json"
    path.write_text(out.out)
    plan = out.json()
    script = job_from_plan(path, "megatron")
    layout = plan["cluster"]["layout"]
    assert f"--expert-model-parallel-size {layout['ep']} \\" in script
    assert f"--global-batch-size {layout['global_batch']} \\" in script
    assert f"--train-samples {round(plan['training']['tokens'] / plan['architecture']['seq_len'])} \\" in script
    toml = tomllib.loads(job_from_plan(path, "torchtitan"))
    assert toml["parallelism"]["expert_parallel_degree"] == layout["ep"]
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(plan["architecture"]))
    assert job_from_plan(arch, "megatron") is None


def test_export_of_a_cluster_plan_is_its_training_job(cli, tmp_path):
    """`moeplan export PLAN --format megatron|torchtitan` on a plan made with --gpus writes the whole job: the
    layout the plan chose and the model; without a cluster, torchtitan is refused in one line."""
    planned = cli("plan", "--gpus", "64", "--gpu", "h100", "--days", "3", "--max-d-hidden", "2048",
                  "--max-experts", "64", "--storage", ":memory:", "--json")
    assert planned.code == 0, planned.err
    plan_json = tmp_path / "plan.json"
    plan_json.write_text(planned.out)
    layout, arch = planned.json()["cluster"]["layout"], planned.json()["architecture"]
    script = cli("export", plan_json, "--format", "megatron")
    assert script.code == 0 and script.out.startswith("#!/usr/bin/env bash"), script.err
    for flag, value in (("--expert-model-parallel-size", layout["ep"]), ("--tensor-model-parallel-size", layout["tp"]),
                        ("--pipeline-model-parallel-size", layout["pp"]), ("--num-layers", arch["n_layers"]),
                        ("--num-experts", arch["n_experts"])):
        assert f"{flag} {value}" in script.out, flag
    toml = cli("export", plan_json, "--format", "torchtitan")
    assert toml.code == 0 and f"expert_parallel_degree = {layout['ep']}" in toml.out, toml.out[:400]
    plain = tmp_path / "plain.json"
    plain.write_text(cli("plan", "--flops", "1e20", "--max-d-hidden", "1024", "--max-experts", "32",
                         "--storage", ":memory:", "--json").out)
    refused = cli("export", plain, "--format", "torchtitan")
    assert refused.code == 2 and "needs a plan made with --gpus" in refused.err
    assert len(refused.err.strip().splitlines()) == 1
