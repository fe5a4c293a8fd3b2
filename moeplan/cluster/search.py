"""Every parallel layout Megatron-Core accepts for an architecture on N devices, and the fastest that fits.

Enumerated as numpy arrays: TP divides the query and kv heads and stays inside one scale-up domain;
CP in 1, 2, 4, 8 with seq_len divisible by 2 CP; PP any stage count whose last stage keeps a layer (every
other stage holds ceil(L/PP), see `layout.stage_layers`), with VP dividing the layers of a stage; EP divides
the routed experts; ETP in 1, 2, 4, 8 divides d_expert; TP x CP x PP and ETP x EP x PP both divide the
world (Megatron-Core's folding); micro-batch in 1, 2, 4 with micro-batch x DP dividing the global batch;
recompute selective or full. Memory (`memory.device_memory`) and step time (`throughput`) are evaluated
for all at once.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from moeplan.cluster.hardware import Accelerator
from moeplan.cluster.layout import Layout
from moeplan.cluster.memory import GIB, MemoryOptions, device_memory, model_shape
from moeplan.cluster.throughput import Efficiency, calibrated, step_parts, step_time
from moeplan.errors import MoeplanError
from moeplan.flops.architecture import Architecture

MICRO_BATCHES = (1, 2, 4)
SMALL_DEGREES = (1, 2, 4, 8)
RECOMPUTE = ("selective", "full")


def candidate_layouts(arch: Architecture, world: int, global_batch: int, domain: int) -> SimpleNamespace:
    """Arrays (one element per layout) of every layout the rules above allow; `recompute` indexes RECOMPUTE."""
    heads = np.gcd(arch.n_heads, arch.n_heads if arch.mla is not None else arch.n_kv_heads)
    tps = [t for t in range(1, min(heads, domain, world) + 1) if heads % t == 0 and world % t == 0]
    cps = [c for c in SMALL_DEGREES if arch.seq_len % (2 * c) == 0 or c == 1]
    pps = [p for p in range(1, min(arch.n_layers, world) + 1)
           if world % p == 0 and arch.n_layers - (p - 1) * -(-arch.n_layers // p) >= 1]
    eps = [e for e in range(1, min(arch.n_experts, world) + 1) if arch.n_experts % e == 0 and world % e == 0]
    etps = [e for e in SMALL_DEGREES if arch.d_expert % e == 0 and e <= domain]
    vps = [1, 2, 3, 4, 6, 8]
    grid = np.array(list(itertools.product(tps, cps, pps, eps, etps, vps, MICRO_BATCHES, range(len(RECOMPUTE)))),
                    dtype=np.int64).reshape(-1, 8)
    tp, cp, pp, ep, etp, vp, mb, rc = grid.T
    per_stage = -(-arch.n_layers // pp)
    ok = (world % (tp * cp * pp) == 0) & (world % (etp * ep * pp) == 0)
    ok &= (per_stage % vp == 0) & ((vp == 1) | (pp > 1))
    dp = np.where(ok, world // (tp * cp * pp), 1)
    ok &= global_batch % (mb * dp) == 0
    keep = np.flatnonzero(ok)
    return SimpleNamespace(world=np.full(len(keep), world, dtype=np.int64), tp=tp[keep], cp=cp[keep], pp=pp[keep],
                           vp=vp[keep], ep=ep[keep], etp=etp[keep], micro_batch=mb[keep],
                           batch=np.full(len(keep), global_batch, dtype=np.int64), recompute=rc[keep])


@dataclass(frozen=True)
class Search:
    """All candidate layouts of one architecture with their memory and step time, fastest first."""

    layouts: SimpleNamespace
    memory: dict[str, np.ndarray]
    step_time: np.ndarray
    fits: np.ndarray
    capacity: float  # bytes per device

    def __len__(self) -> int:
        return len(self.step_time)

    def layout(self, k: int) -> Layout:
        L = self.layouts
        return Layout(world=int(L.world[k]), tp=int(L.tp[k]), cp=int(L.cp[k]), pp=int(L.pp[k]), vp=int(L.vp[k]),
                      ep=int(L.ep[k]), etp=int(L.etp[k]), micro_batch=int(L.micro_batch[k]),
                      global_batch=int(L.batch[k]))

    def recompute(self, k: int) -> str:
        return RECOMPUTE[int(self.layouts.recompute[k])]

    def fitting(self) -> np.ndarray:
        """Indices of the layouts that fit, fastest first (ties: less memory)."""
        idx = np.flatnonzero(self.fits)
        return idx[np.lexsort((self.memory["total"][idx], self.step_time[idx]))]


def search(arch: Architecture, world: int, dev: Accelerator, global_batch: int,
           options: MemoryOptions = MemoryOptions(), eff: Efficiency | None = None) -> Search:
    """Memory and step time of every candidate layout of `arch` on `world` devices of `dev`."""
    L = candidate_layouts(arch, world, global_batch, dev.domain)
    shape = model_shape(arch)
    n = len(L.tp)
    total = {k: np.zeros(n) for k in ("weights", "gradients", "optimizer", "activations", "dispatch_buffers",
                                      "reserve", "total", "stage", "in_flight")}
    times = np.zeros(n)
    eff = eff or calibrated()
    for r, name in enumerate(RECOMPUTE):
        sel = L.recompute == r
        if not sel.any():
            continue
        sub = SimpleNamespace(**{k: v[sel] for k, v in vars(L).items()})
        opts = options.model_copy(update={"recompute": name})
        mem = device_memory(shape, sub, opts)
        for k in total:
            total[k][sel] = np.broadcast_to(mem[k], (int(sel.sum()),))
        times[sel] = np.broadcast_to(step_time(step_parts(shape, sub, dev, opts), eff), (int(sel.sum()),))
    capacity = dev.hbm_gb * GIB
    return Search(L, total, times, total["total"] <= capacity, capacity)


def best_layout(arch: Architecture, world: int, dev: Accelerator, global_batch: int,
                options: MemoryOptions = MemoryOptions(), eff: Efficiency | None = None) -> tuple[Search, int]:
    """The search and the index of the fastest layout that fits; one clear error when none does."""
    s = search(arch, world, dev, global_batch, options, eff)
    if len(s) == 0:
        raise MoeplanError(f"no parallel layout of {world} devices suits this model with a global batch of "
                           f"{global_batch} sequences (TP must divide {arch.n_heads} heads and "
                           f"{arch.n_kv_heads} kv heads, EP {arch.n_experts} experts; TP x CP x PP and "
                           f"ETP x EP x PP must divide {world}, micro-batch x DP the global batch)")
    order = s.fitting()
    if len(order) == 0:
        k = int(np.argmin(s.memory["total"]))
        raise MoeplanError(f"the model fits no layout of {world} x {dev.key}: the smallest memory per device any "
                           f"layout needs is {s.memory['total'][k] / GIB:.1f} GiB ({s.layout(k).describe()}, "
                           f"{s.recompute(k)} recompute), above the {dev.hbm_gb:g} GiB of HBM")
    return s, int(order[0])
