"""Step time of a training job: roofline GEMMs, exposed communication, pipeline bubble, a fitted efficiency.

Per micro-batch and pipeline stage (the slowest, which holds ceil(L/PP) layers and the LM head):
- every GEMM costs max(FLOPs / peak, bytes / HBM bandwidth) (Williams et al. 2009, roofline), so
  fine-grained experts that receive few tokens each are bound by reading their weights; forward + backward
  = 3 forward GEMMs; fp8 GEMMs run at the fp8 peak; attention scores run at the bf16 peak;
- MoE all-to-all: dispatch and combine, forward and backward, each (tokens / TP) x top-k x d_hidden x 2
  bytes leaving the device with probability (EP-1)/EP, over the scale-up links while the EP group
  (EP x ETP devices) fits in one domain, and over the inter-node links for the share beyond it;
- TP collectives under sequence parallelism: all-gather and reduce-scatter around attention and the FFN,
  forward and backward, (TP-1)/TP of tokens x d_hidden x 2 bytes; CP's K/V exchange likewise;
- elementwise and permutation traffic: the activation bytes of `memory` read and written once each;
- recompute: full adds one forward; selective adds the attention scores' forward;
- step = t_micro x (micro-batches + (PP-1)/VP): 1F1B's bubble (Narayanan et al. 2021).
The efficiencies `compute` and `memory` divide GEMM and elementwise time, `network` is the exposed
(not overlapped) share of communication, `overhead` a fixed time per layer and micro-batch; they are fitted to
published MoE throughput (data/published.json) by `fit_efficiency` (docs/cluster.md: table and
leave-one-out error). Data-parallel gradient traffic is assumed overlapped with the backward pass.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat

from moeplan.cluster.hardware import Accelerator
from moeplan.cluster.memory import MemoryOptions, _layer_activation_bytes, layout_arrays


class Efficiency(BaseModel):
    """Fractions of peak reached: GEMM FLOP/s, network bandwidth, HBM bandwidth for elementwise traffic."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    compute: PositiveFloat = Field(description="achieved / peak GEMM FLOP/s")
    network: float = Field(ge=0, le=1, description="share of the communication time not hidden behind compute")
    memory: PositiveFloat = Field(description="achieved / peak HBM bandwidth for elementwise and permutation kernels")
    overhead: float = Field(0.0, ge=0, description="seconds per layer and micro-batch, forward and backward: kernel "
                            "launches and host work, which do not shrink with the layer's size")
    source: str = "fitted to data/published.json (docs/cluster.md)"


def _gemm_terms(m, k, n, count, in_bytes):
    """(FLOPs, bytes growing with m, fixed bytes) of `count` forward GEMMs (m x k) @ (k x n): inputs of
    `in_bytes`, bf16 outputs; the fixed bytes are the weights, read whatever the number of rows."""
    return count * 2.0 * m * k * n, count * (in_bytes * m * k + 2.0 * m * n), count * in_bytes * k * n


def _roofline(terms, scale, peak, hbm):
    """Roofline time (Williams et al. 2009) of GEMMs whose rows are `scale` times those of `terms`."""
    flops, moving, fixed = terms
    return np.maximum(scale * flops / peak, (scale * moving + fixed) / hbm)


def _gemm(m, k, n, count, peak, hbm, in_bytes):
    """Roofline time of `count` forward GEMMs (m x k) @ (k x n): max(FLOPs / peak, bytes / bandwidth)."""
    return _roofline(_gemm_terms(m, k, n, count, in_bytes), 1, peak, hbm)


def _link_time(volume, group, dev: Accelerator):
    """Seconds to move `volume` bytes from each device to peers spread over a group of `group` devices."""
    inside = np.minimum(group, dev.domain) / group
    return np.maximum(volume * inside / (dev.scaleup_gbps * 1e9), volume * (1 - inside) / (dev.internode_gbps * 1e9))


def _pieces(s, L, dev: Accelerator, o: MemoryOptions) -> dict:
    """Everything of a step that is linear in the micro-batch, for one sequence per micro-batch."""
    tp, cp, pp, ep, etp = L.tp, L.cp, L.pp, L.ep, L.etp
    dp = L.world // (tp * cp * pp)
    tokens = s.seq / cp  # per sequence of the micro-batch
    x = 1 if o.fp8 and dev.fp8_flops else 2
    h = s.d_hidden
    layers = -(-s.n_layers // pp)
    dense_frac = np.minimum(s.n_dense, layers) / layers  # the first stage holds the dense layers
    moe_layers, dense_layers = layers * (1 - dense_frac), layers * dense_frac
    local = s.n_experts / ep
    copies = tokens / tp * s.top_k * o.capacity_factor
    gemms = {  # forward GEMMs of one layer (the head: once), one device
        "attn": _gemm_terms(tokens, h, s.attn_matmul / h / tp, 1, x),
        "dense_ffn": _gemm_terms(tokens, h, 3 * s.d_dense / tp, 1, x),
        "shared": _gemm_terms(tokens, h, 3 * s.shared_width / tp, 1, x),
        "router": _gemm_terms(tokens / tp, h, s.n_experts, 1, 2),
        "experts": _gemm_terms(copies * etp / local, h, 3 * s.d_expert / etp, local, x),
        "head": _gemm_terms(tokens, h, s.vocab / tp, 1, x),
    }
    a2a = 4 * _link_time(copies * h * 2 * (ep - 1) / ep, ep * etp, dev)
    etp_gather = 4 * _link_time(copies * h * 2 * (etp - 1), etp, dev)
    tp_coll = 8 * _link_time(tokens * h * 2 * (tp - 1) / tp, tp, dev)
    cp_kv = 3 * _link_time(tokens / tp * s.kv_dim * 2 * (cp - 1) / cp, cp * tp, dev)
    # stage boundaries: one send forward and one backward per virtual stage; PP is Megatron's outermost rank
    p2p = np.where(pp > 1, 2 * L.vp * tokens / tp * h * 2 / (dev.internode_gbps * 1e9), 0)
    # elementwise kernels: every activation byte written in forward, read in backward, twice over;
    # flash attention keeps no scores; attention sinks had no fused kernel, so scores go through HBM (5as)
    traffic = MemoryOptions(fp8=o.fp8, recompute="none" if s.sinks else "selective")
    att_b, dense_b, moe_b = _layer_activation_bytes(s, L, traffic)
    # once per step: the distributed optimizer's gradient reduce-scatter and parameter all-gather (bf16)
    edp = L.world // (etp * ep * pp)
    dense_params = (layers * s.attn_params + moe_layers * s.moe_dense_params + dense_layers * s.dense_ffn_params
                    + s.embedding) / tp
    expert_params = moe_layers * s.expert_params / (ep * etp)
    grads = (_link_time(4 * dense_params * (dp - 1) / dp, tp * cp * dp, dev)
             + _link_time(4 * expert_params * (edp - 1) / edp, etp * ep * edp, dev))
    return {"gemms": gemms, "scores": tokens * s.scores / tp / dev.bf16_flops, "layers": layers,
            "dense_layers": dense_layers, "moe_layers": moe_layers,
            "network": moe_layers * (a2a + etp_gather) + layers * (tp_coll + cp_kv) + p2p,
            "memory": 4 * tokens * (layers * att_b + dense_layers * dense_b + moe_layers * moe_b)
            / (dev.hbm_tbps * 1e12),
            "network_step": grads, "dp": dp, "peak": dev.peak_flops(o.fp8), "hbm": dev.hbm_tbps * 1e12}


def _times(p: dict) -> dict:
    """Each GEMM family's (seconds of FLOPs, seconds of rows' bytes, seconds of weight bytes) per sequence,
    weighted by how many layers of the stage run it: a roofline is then max(mb a, mb b + c)."""
    weights = {"attn": p["layers"], "dense_ffn": p["dense_layers"], "shared": p["moe_layers"],
               "router": p["moe_layers"], "experts": p["moe_layers"], "head": 3.0}
    return {k: (weights[k] * f / p["peak"], weights[k] * m / p["hbm"], weights[k] * w / p["hbm"])
            for k, (f, m, w) in p["gemms"].items()}


def _parts(p: dict, L, micro_batch, seq, recompute: str, times: dict | None = None) -> dict[str, np.ndarray]:
    """The step's parts for `micro_batch` sequences per micro-batch from the linear pieces `p`."""
    times = times or _times(p)
    g = {k: np.maximum(micro_batch * a, micro_batch * b + c) for k, (a, b, c) in times.items()}
    scores = micro_batch * p["scores"]
    forward = p["layers"] * scores + g["attn"] + g["dense_ffn"] + g["shared"] + g["router"] + g["experts"]
    extra = {"none": 0.0, "selective": p["layers"] * scores, "full": forward}[recompute]
    micro_batches = L.batch // (micro_batch * p["dp"])
    return {"compute": 3 * forward + extra + g["head"], "network": micro_batch * p["network"],
            "memory": micro_batch * p["memory"], "layers": p["layers"] * 1.0,
            "slots": micro_batches + (L.pp - 1) / L.vp, "network_step": p["network_step"],
            "tokens_per_step": L.batch * seq * 1.0, "forward": forward, "scores_forward": p["layers"] * scores}


def step_parts(shape, layouts, dev: Accelerator, options: MemoryOptions = MemoryOptions()) -> dict[str, np.ndarray]:
    """Seconds per micro-batch on the slowest stage, by kind (compute, network, memory), before efficiency,
    and the step's micro-batch count with the bubble (`slots`)."""
    L = layout_arrays(layouts)
    return _parts(_pieces(shape, L, dev, options), L, L.micro_batch, shape.seq, options.recompute)


def step_time_variants(shape, layout, dev: Accelerator, options: MemoryOptions, micro_batches, recomputes,
                       eff: Efficiency) -> dict:
    """Seconds per step of one layout for each (micro-batch, recompute) pair, the linear pieces computed once
    (the planner's fast path; equal to `step_time` pair by pair)."""
    L = layout_arrays(layout)
    pieces = _pieces(shape, L, dev, options)
    times = _times(pieces)
    out = {}
    for mb in micro_batches:
        parts = _parts(pieces, L, mb, shape.seq, "none", times)
        for rc in recomputes:
            extra = {"none": 0.0, "selective": parts["scores_forward"], "full": parts["forward"]}[rc]
            out[(mb, rc)] = step_time(parts | {"compute": parts["compute"] + extra}, eff)
    return out


def step_time(parts: dict, eff: Efficiency) -> np.ndarray:
    """Seconds per optimizer step."""
    micro = (parts["compute"] / eff.compute + parts["network"] * eff.network + parts["memory"] / eff.memory
             + parts["layers"] * eff.overhead)
    return micro * parts["slots"] + parts["network_step"] * eff.network


def throughput(shape, layouts, dev: Accelerator, options: MemoryOptions = MemoryOptions(),
               eff: Efficiency | None = None) -> dict[str, np.ndarray]:
    """Step time (s), tokens/s for the whole job and per device."""
    L = layout_arrays(layouts)
    parts = step_parts(shape, L, dev, options)
    t = step_time(parts, eff or calibrated())
    tokens_s = parts["tokens_per_step"] / t
    return {"step_time": t, "tokens_per_s": tokens_s, "tokens_per_s_device": tokens_s / L.world}


# -- calibration --------------------------------------------------------------------------------------

@cache
def published() -> dict:
    return json.loads(resources.files("moeplan.cluster").joinpath("data/published.json").read_text())


def calibration_rows() -> list[dict]:
    """Published throughput rows with their architecture, layout, accelerator and options resolved."""
    from moeplan.cluster.hardware import accelerator
    from moeplan.cluster.layout import Layout
    from moeplan.cluster.memory import model_shape
    from moeplan.flops.architecture import Architecture

    data = published()
    rows = []
    for r in data["throughput"]:
        arch = Architecture(**(data["models"][r["model"]]["architecture"] | {"seq_len": r["seq_len"]}))
        layout = Layout(world=r["gpus"], tp=r["tp"], pp=r["pp"], vp=r["vp"], ep=r["ep"],
                        micro_batch=r["micro_batch"], global_batch=r["global_batch"])
        options = MemoryOptions(fp8=r["precision"] == "fp8")
        dev = accelerator(r["gpu"])
        rows.append(r | {"arch": arch, "layout": layout, "options": options, "device": dev,
                         "parts": step_parts(model_shape(arch), layout, dev, options),
                         "source_text": data["throughput_sources"][r["source"]]})
    return rows


def _predicted_tokens(rows, values) -> np.ndarray:
    eff = Efficiency(compute=values[0], network=values[1], memory=values[2], overhead=values[3])
    return np.array([np.ravel(r["parts"]["tokens_per_step"] / step_time(r["parts"], eff))[0] / r["gpus"]
                     for r in rows])


def fit_efficiency(rows) -> Efficiency:
    """Least squares on log(predicted / published tokens/s per device) over `rows`."""
    published_tokens = np.array([r["tokens_per_s_gpu"] for r in rows], dtype=float)

    def residual(logv):
        return np.log(_predicted_tokens(rows, np.exp(logv))) - np.log(published_tokens)

    lower, upper = np.log([1e-3, 1e-3, 1e-3, 1e-7]), np.log([1.0, 1.0, 1.0, 1e-1])
    from scipy.optimize import least_squares  # ~0.5 s to import: only when calibrating, never when planning

    fit = least_squares(residual, x0=np.log([0.5, 0.5, 0.5, 1e-3]), bounds=(lower, upper))
    c, n, m, o = np.exp(fit.x)
    return Efficiency(compute=float(c), network=float(n), memory=float(m), overhead=float(o))


def leave_one_out(rows=None) -> list[dict]:
    """Each row predicted by efficiencies fitted to all the others: predicted and published TFLOP/s per GPU
    (predicted tokens/s times the row's own published FLOPs per token, so both share its convention)."""
    rows = rows if rows is not None else calibration_rows()
    out = []
    for i, r in enumerate(rows):
        eff = fit_efficiency(rows[:i] + rows[i + 1:])
        tokens = _predicted_tokens([r], [eff.compute, eff.network, eff.memory, eff.overhead])[0]
        flops_per_token = r["tflops_gpu"] / r["tokens_per_s_gpu"]
        out.append({"model": r["model"], "gpu": r["gpu"], "precision": r["precision"], "gpus": r["gpus"],
                    "layout": r["layout"].describe(), "source": r["source"],
                    "published_tflops": r["tflops_gpu"], "predicted_tflops": tokens * flops_per_token,
                    "error": tokens / r["tokens_per_s_gpu"] - 1})
    return out


EFFICIENCY_FILE = "data/efficiency.json"


@cache
def calibrated() -> Efficiency:
    """The efficiencies fitted to every published row, as shipped (data/efficiency.json; a test refits them)."""
    text = resources.files("moeplan.cluster").joinpath(EFFICIENCY_FILE).read_text()
    return Efficiency(**json.loads(text))


def calibration_markdown(loo: list[dict]) -> str:
    """The calibration table of docs/cluster.md: every row, its source, predicted vs published TFLOP/s."""
    lines = ["| model | GPUs | precision | layout | published TFLOP/s/GPU | predicted (LOO) | error | source |",
             "|---|---|---|---|---:|---:|---:|---|"]
    for r in loo:
        lines.append(f"| {r['model']} | {r['gpus']} x {r['gpu']} | {r['precision']} | {r['layout']} | "
                     f"{r['published_tflops']:.0f} | {r['predicted_tflops']:.0f} | {r['error']:+.1%} | {r['source']} |")
    errors = np.abs([r["error"] for r in loo])
    lines.append("")
    lines.append(f"Median absolute leave-one-out error: {np.median(errors):.1%} over {len(loo)} rows "
                 f"(mean {np.mean(errors):.1%}, max {np.max(errors):.1%}).")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m moeplan.cluster.throughput: refit, write data/efficiency.json, print the table
    from pathlib import Path

    from moeplan.files import write_text_atomic

    eff = fit_efficiency(calibration_rows())
    write_text_atomic(Path(__file__).parent / EFFICIENCY_FILE, eff.model_dump_json(indent=2) + "\n")
    print(eff)
    print(calibration_markdown(leave_one_out()))
