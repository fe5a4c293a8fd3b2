"""A plan as a job: a runnable Megatron-LM script (one flag per line) and a torchtitan TOML.

The Megatron script carries the architecture (`moeplan.flops.hf.to_megatron_args`), the layout and the
training flags: parallel sizes, train samples, learning rate, global and micro batch, bf16 or fp8, grouped
GEMM and the all-to-all token dispatcher. Flag names follow megatron/training/arguments.py.
"""

from __future__ import annotations

import shlex

from moeplan.cluster.layout import Layout, stage_layers
from moeplan.cluster.memory import MemoryOptions
from moeplan.flops.architecture import Architecture
from moeplan.flops.hf import to_megatron_args


def megatron_flags(arch: Architecture, layout: Layout, options: MemoryOptions, tokens: float, lr: float,
                   warmup_fraction: float = 0.01) -> list[list[str]]:
    """Megatron-LM flags, one flag and its values per entry."""
    arch_args = to_megatron_args(arch)
    flags: list[list[str]] = []
    for arg in arch_args:
        if arg.startswith("--"):
            flags.append([arg])
        else:
            flags[-1].append(arg)
    samples = max(1, round(tokens / arch.seq_len))
    flags += [["--tensor-model-parallel-size", str(layout.tp)], ["--pipeline-model-parallel-size", str(layout.pp)],
              ["--context-parallel-size", str(layout.cp)], ["--expert-model-parallel-size", str(layout.ep)],
              ["--expert-tensor-parallel-size", str(layout.etp)]]
    if layout.vp > 1:
        flags.append(["--num-virtual-stages-per-pipeline-rank", str(layout.vp)])
    first, last = stage_layers(arch.n_layers, layout.pp)
    if layout.pp > 1 and last != first:
        flags.append(["--decoder-last-pipeline-num-layers", str(last)])
    if layout.tp > 1:
        flags.append(["--sequence-parallel"])
    flags += [["--use-distributed-optimizer"], ["--micro-batch-size", str(layout.micro_batch)],
              ["--global-batch-size", str(layout.batch)], ["--train-samples", str(samples)],
              ["--lr", f"{lr:.4g}"], ["--min-lr", f"{lr / 10:.4g}"], ["--lr-decay-style", "cosine"],
              ["--lr-warmup-samples", str(max(1, round(samples * warmup_fraction)))],
              ["--lr-decay-samples", str(samples)], ["--bf16"]]
    if options.fp8:
        flags += [["--fp8-format", "hybrid"]]
    flags += [["--moe-grouped-gemm"], ["--moe-token-dispatcher-type", "alltoall"], ["--moe-router-dtype", "fp32"],
              ["--moe-permute-fusion"]]
    if options.recompute == "selective":
        flags += [["--recompute-granularity", "selective"], ["--recompute-modules", *options.recompute_modules]]
    elif options.recompute == "full":
        flags += [["--recompute-granularity", "full"], ["--recompute-method", "uniform"],
                  ["--recompute-num-layers", "1"]]
    return flags


def megatron_script(arch: Architecture, layout: Layout, options: MemoryOptions, tokens: float, lr: float,
                    note: str = "") -> str:
    """A bash script that launches Megatron-LM's pretrain_gpt.py with every flag on its own line."""
    lines = ["#!/usr/bin/env bash",
             f"# moeplan: {layout.world} devices; {layout.describe()}",
             *(f"# {n}" for n in note.splitlines() if n),
             "# Data, tokenizer and checkpoint flags are yours to add: pass them after the script's name.",
             "set -euo pipefail",
             'MEGATRON=${MEGATRON:-.}',
             f'GPUS_PER_NODE=${{GPUS_PER_NODE:-{min(8, layout.world)}}}',
             f'NNODES=${{NNODES:-{max(1, layout.world // min(8, layout.world))}}}',
             'torchrun --nproc-per-node "$GPUS_PER_NODE" --nnodes "$NNODES" --node-rank "${NODE_RANK:-0}" \\',
             '    --master-addr "${MASTER_ADDR:-localhost}" --master-port "${MASTER_PORT:-6000}" \\',
             '    "$MEGATRON/pretrain_gpt.py" \\']
    for flag in megatron_flags(arch, layout, options, tokens, lr):
        lines.append("    " + shlex.join(flag) + " \\")
    lines.append('    "$@"')
    return "\n".join(lines) + "\n"


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v) if isinstance(v, float) else str(v)


def torchtitan_toml(arch: Architecture, layout: Layout, options: MemoryOptions, tokens: float, lr: float) -> str:
    """A torchtitan job config (torchtitan/config/job_config.py sections); FSDP shards over DP."""
    steps = max(1, round(tokens / (layout.batch * arch.seq_len)))
    model = "deepseek_v3" if arch.mla is not None else ("qwen3" if arch.qk_norm == "head" else "deepseek_v3")
    sections = {
        "job": {"dump_folder": "./outputs", "description": f"moeplan plan on {layout.world} devices"},
        "model": {"name": model, "flavor": "moeplan",
                  "converters": ["float8"] if options.fp8 else []},
        "optimizer": {"name": "AdamW", "lr": float(f"{lr:.4g}"), "eps": 1e-8},
        "lr_scheduler": {"warmup_steps": max(1, steps // 100), "decay_type": "cosine", "min_lr_factor": 0.1},
        "training": {"local_batch_size": layout.micro_batch * layout.micro_batches, "global_batch_size": layout.batch,
                     "seq_len": arch.seq_len, "steps": steps, "max_norm": 1.0,
                     "mixed_precision_param": "bfloat16", "mixed_precision_reduce": "float32"},
        "parallelism": {"data_parallel_replicate_degree": 1, "data_parallel_shard_degree": layout.dp,
                        "tensor_parallel_degree": layout.tp, "context_parallel_degree": layout.cp,
                        "pipeline_parallel_degree": layout.pp,
                        "pipeline_parallel_schedule": "Interleaved1F1B" if layout.vp > 1 else "1F1B",
                        "pipeline_parallel_microbatch_size": layout.micro_batch,
                        "expert_parallel_degree": layout.ep, "expert_tensor_parallel_degree": layout.etp},
        "activation_checkpoint": {"mode": options.recompute, **({"selective_ac_option": "op"}
                                                                if options.recompute == "selective" else {})},
    }
    lines = [f"# moeplan: {layout.describe()}",
             "# [model] flavor \"moeplan\" is not built into torchtitan: register these dimensions as a flavor",
             f"# (n_layers {arch.n_layers}, dim {arch.d_hidden}, heads {arch.n_heads}, kv heads {arch.n_kv_heads}, "
             f"experts {arch.n_experts} x {arch.d_expert}, top-{arch.top_k}, shared {arch.n_shared_experts}, "
             f"vocab {arch.vocab_size})"]
    for name, body in sections.items():
        lines.append(f"\n[{name}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in body.items()]
    return "\n".join(lines) + "\n"


JOB_FORMATS = ("megatron", "torchtitan")


def suggested_lr(arch: Architecture, tokens: float) -> float:
    """[LING]'s peak learning rate for the run's compute (docs/science.md), the default of the job files."""
    from moeplan.flops.count import count
    from moeplan.laws import get_law

    compute = count(arch).train_flops_per_token * tokens
    return float(get_law("ling").evaluate("learning_rate", C=compute))


def job_text(arch: Architecture, layout: Layout, options: MemoryOptions, tokens: float, fmt: str,
             lr: float | None = None) -> str:
    """The job file of `fmt` (megatron: bash script; torchtitan: TOML) for a cluster plan."""
    lr = lr if lr is not None else suggested_lr(arch, tokens)
    if fmt == "megatron":
        return megatron_script(arch, layout, options, tokens, lr)
    if fmt == "torchtitan":
        return torchtitan_toml(arch, layout, options, tokens, lr)
    raise ValueError(f"unknown job format {fmt!r}; choose one of {', '.join(JOB_FORMATS)}")


def job_from_plan(path, fmt: str, lr: float | None = None) -> str | None:
    """The job file of a plan JSON written with a cluster (`moeplan plan --gpus ... --json`), or None when the
    file is not such a plan: the one-line hook for `moeplan export PLAN.json --format megatron|torchtitan`."""
    from moeplan.jsonio import read_json

    data = read_json(path)
    cluster = data.get("cluster") if isinstance(data, dict) else None
    if not isinstance(cluster, dict) or "layout" not in cluster:
        return None
    arch = Architecture(**data["architecture"])
    options = MemoryOptions(**(data["request"]["cluster"]["memory"] | {"recompute": cluster["recompute"]}))
    training = data["training"]
    return job_text(arch, Layout(**cluster["layout"]), options, float(training["tokens"]), fmt,
                    lr if lr is not None else training.get("ling_learning_rate"))
