"""The cluster inside the planner: memory per device as a hard constraint, tokens from days x throughput.

With a cluster, every candidate architecture of the space runs on the layout the request names (its TP,
EP and PP are the space's alignment, so every candidate admits it; DP = devices / (TP x PP)), with the
micro-batch (1, 2, 4) and recompute (selective, full) that give it the most tokens per second among the
variants that fit memory. Tokens per second never rise and memory never falls as d_expert or n_experts
grow (more weights to read, store and reduce; the same active compute at best), so the planner's corner
bounds stay valid. Tokens are days x 86,400 x tokens/s for a --days budget; a FLOPs or GPU-hours budget
keeps its tokens and --days becomes a cap on the calendar.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
from pydantic import Field, PositiveFloat, PositiveInt

from moeplan.cluster.hardware import Accelerator
from moeplan.cluster.layout import Layout
from moeplan.cluster.memory import GIB, device_memory_variants, model_shape
from moeplan.cluster.report import SECONDS_PER_DAY, Cluster
from moeplan.cluster.throughput import calibrated, step_time_variants

MICRO_BATCHES = (1, 2, 4)
RECOMPUTE = ("selective", "full")
VARIANTS = [(mb, rc) for mb in MICRO_BATCHES for rc in RECOMPUTE]
NOMINAL_MFU_NOTE = "nominal compute: days x devices x bf16 peak x --mfu; it only seeds [LING]'s batch and lr"


class ClusterBudget(Cluster):
    """A cluster for `moeplan plan`: the devices and, as the budget or as a cap, the days."""

    gpus: PositiveInt = Field(description="devices of the cluster: memory per device becomes a hard constraint, "
                              "and with days the budget is the calendar (docs/cluster.md)")
    days: PositiveFloat | None = Field(None, description="days on the cluster: the budget, or a cap with flops")
    global_batch: PositiveInt | None = Field(None, description="sequences per step (default: [LING]'s batch)")


def nominal_compute(budget: ClusterBudget, mfu: float) -> float:
    """FLOPs the cluster does in `days` at `mfu` of the bf16 peak (seeds [LING]'s batch suggestion)."""
    return budget.days * SECONDS_PER_DAY * budget.gpus * budget.device().bf16_flops * mfu


def global_batch(request) -> int:
    """Sequences per step: given, or [LING]'s batch in tokens at the request's compute, rounded up to a
    whole number of DP x 4 (so every micro-batch of MICRO_BATCHES divides it)."""
    c = request.cluster
    if c.global_batch:
        return c.global_batch
    from moeplan.laws import get_law

    dp = c.gpus // (request.tensor_parallel * request.pipeline_parallel)
    step = dp * max(MICRO_BATCHES)
    tokens = float(get_law("ling").evaluate("batch_tokens", C=request.compute))
    return max(step, math.ceil(tokens / request.seq_len / step) * step)


def layout_of(request, micro_batch: int = 1) -> SimpleNamespace:
    c = request.cluster
    i64 = np.int64
    return SimpleNamespace(world=i64(c.gpus), tp=i64(request.tensor_parallel), cp=i64(1),
                           pp=i64(request.pipeline_parallel), vp=i64(1), ep=i64(request.expert_parallel), etp=i64(1),
                           micro_batch=i64(micro_batch), batch=i64(global_batch(request)))


def layout_problem(request) -> str | None:
    """Why the request's layout cannot run on its cluster (None: it can)."""
    c = request.cluster
    for name, group in (("TP x PP", request.tensor_parallel * request.pipeline_parallel),
                        ("EP x PP", request.expert_parallel * request.pipeline_parallel)):
        if c.gpus % group:
            return (f"the cluster of {c.gpus} devices is smaller than, or not a multiple of, one layout: "
                    f"{name} = {group} does not divide it (choose --tp, --ep, --pp accordingly)")
    return None


def evaluate_on_cluster(template, arrays: dict, request, dev: Accelerator | None = None) -> dict[str, np.ndarray]:
    """For architectures given as arrays over the space's template: best tokens/s among the variants that fit
    (the slowest variant when none fits), whether any fits, the least memory per device, and the variant.

    Why the slowest: the branch and bound needs tokens (days x rate) to fall as experts grow, over every
    point of a box, fitting or not. Each variant slows as the model grows and the set of variants that fit
    shrinks, so the best fitting rate falls; a model that fits no variant must not be faster than a smaller
    one that fits, and the slowest variant's rate is at most any smaller model's."""
    c = request.cluster
    dev = dev or c.device()
    fields = dict(template) | arrays
    fields.setdefault("n_dense", np.int64(len(template.dense_layers)))
    fields["n_sliding"] = np.int64(len(template.sliding_layers))
    shape = model_shape(SimpleNamespace(**fields))
    layout = layout_of(request)
    memory = device_memory_variants(shape, layout, c.memory, MICRO_BATCHES, RECOMPUTE)
    times = step_time_variants(shape, layout, dev, c.memory, MICRO_BATCHES, RECOMPUTE, calibrated())
    per_step = float(layout.batch) * shape.seq
    capacity = dev.hbm_gb * GIB
    best_rate = slowest = least = variant = None
    for v, key in enumerate(VARIANTS):
        rate, mem = per_step / times[key], memory[key]
        fit_rate = np.where(mem <= capacity, rate, 0.0)
        if best_rate is None:
            best_rate, slowest, least, variant = fit_rate, rate, mem, np.where(fit_rate > 0, v, -1)
            continue
        variant = np.where(fit_rate > best_rate, v, variant)
        best_rate, slowest, least = np.maximum(best_rate, fit_rate), np.minimum(slowest, rate), np.minimum(least, mem)
    fits = best_rate > 0
    return {"tokens_per_s": np.where(fits, best_rate, slowest), "fits": fits, "least_memory": least,
            "variant": variant}


def days_budget(request) -> bool:
    return request.cluster is not None and request.flops is None and request.gpu_hours is None


def cluster_tokens(space, arrays: dict, flops_per_token) -> dict[str, np.ndarray]:
    """For `Space.evaluate_values`: tokens, days, whether each architecture fits memory (monotone: a box
    whose smallest corner does not fit holds nothing that fits) and whether it meets every cluster
    constraint (memory, and a --days cap under a FLOPs budget, which is not monotone)."""
    r = space.request
    out = evaluate_on_cluster(space.template, arrays, r)
    rate = out["tokens_per_s"]
    shape = np.shape(flops_per_token)
    if days_budget(r):
        tokens = np.broadcast_to(r.cluster.days * SECONDS_PER_DAY * rate, shape)
    else:
        tokens = r.compute / flops_per_token
    days = tokens / rate / SECONDS_PER_DAY
    # Megatron-Core needs TP to divide the kv heads too; the space's d_hidden step only guarantees the query heads
    accepted = (np.asarray(arrays["n_kv_heads"]) % r.tensor_parallel == 0) & (np.asarray(arrays["n_heads"]) % r.tensor_parallel == 0)
    out["fits"] = out["fits"] & accepted
    ok = out["fits"]
    if r.cluster.days is not None and not days_budget(r):
        ok = ok & (days <= r.cluster.days * (1 + 1e-9))
    return {"tokens": tokens, "days": np.broadcast_to(days, shape), "memory_fits": np.broadcast_to(out["fits"], shape),
            "feasible": np.broadcast_to(ok, shape), "least_memory": np.broadcast_to(out["least_memory"], shape)}


def variant(index: int) -> tuple[int, str]:
    """(micro-batch, recompute) of variant `index` of `evaluate_on_cluster`."""
    return VARIANTS[index]


def chosen_layout(request, arch) -> tuple[Layout, str]:
    """The layout and recompute the planner's cluster model gives `arch` (its fastest variant that fits)."""
    fields = {k: np.asarray(getattr(arch, k)) for k in ("n_layers", "d_hidden", "n_heads", "n_kv_heads", "d_head",
                                                         "d_expert", "n_experts", "top_k", "n_shared_experts",
                                                         "d_shared_expert", "vocab_size", "seq_len")}
    fields["n_dense"] = np.int64(len(arch.dense_layers))
    fields["d_dense_ffn"] = arch.d_dense_ffn
    out = evaluate_on_cluster(arch, fields, request)
    v = int(np.ravel(out["variant"])[0])
    mb, rc = VARIANTS[max(v, 0)]
    return Layout(world=request.cluster.gpus, tp=request.tensor_parallel, pp=request.pipeline_parallel,
                  ep=request.expert_parallel, micro_batch=mb, global_batch=global_batch(request)), rc


def cluster_report(space, arch, tokens: float):
    """The `ClusterPlan` of the chosen architecture: its layout, memory per device, speed and calendar."""
    from moeplan.cluster.report import evaluate

    r = space.request
    layout, rc = chosen_layout(r, arch)
    options = r.cluster.memory.model_copy(update={"recompute": rc})
    return evaluate(arch, r.cluster, layout, tokens, options)


def infeasible_on_cluster(space):
    """One line when the cluster rules out every buildable model: TP dividing no kv-head count, or memory per
    device, naming the least memory any buildable model would need."""
    from moeplan.errors import MoeplanError

    r = space.request
    c = r.cluster
    pairs = np.arange(len(space.pairs[0]))
    heads = space.pairs[1] // r.d_head
    accepted = (heads % r.tensor_parallel == 0) & ((heads // r.gqa_group) % r.tensor_parallel == 0)
    if not accepted.any():
        return MoeplanError(f"TP {r.tensor_parallel} divides the kv heads of no buildable model (kv heads = "
                            f"d_hidden / {r.d_head} / {r.gqa_group}, d_hidden <= {r.priors.max_d_hidden}); "
                            "lower --tp or raise --max-d-hidden")
    j_lo, _ = space.expert_index_range
    smallest = space.evaluate(pairs, 0, j_lo, space.min_expert_index(space.combos[0][0]))
    if smallest.cluster is None or smallest.cluster["memory_fits"].any():
        return None
    least = np.where(accepted, smallest.cluster["least_memory"], np.inf)
    k = int(np.argmin(least))
    return MoeplanError(
        f"no buildable model fits {c.gpus} x {c.gpu}: the smallest needs {least[k] / GIB:.1f} "
        f"GiB per device on TP {r.tensor_parallel}, EP {r.expert_parallel}, PP {r.pipeline_parallel} "
        f"(HBM {c.device().hbm_gb:g} GiB); raise --ep or --pp, or add devices")
