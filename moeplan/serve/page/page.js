// The calculator: a form -> POST api/plan -> the plan, its figures (SVG) and downloads. No build step, no
// network beyond this service: everything here is plain DOM code over the JSON API (OpenAPI at docs).
"use strict";

const $ = (id) => document.getElementById(id);
let current = null; // {request, plan}

function headers() {
  const h = { "Content-Type": "application/json" };
  const token = $("token").value || localStorage.getItem("moeplan-token");
  if (token) h.Authorization = "Bearer " + token;
  return h;
}

async function call(path, body, as = "json") {
  const response = await fetch(path, body === undefined ? { headers: headers() }
    : { method: "POST", headers: headers(), body: JSON.stringify(body) });
  if (response.status === 401) $("auth").hidden = false;
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail; } catch (e) { /* not JSON */ }
    throw new Error(`${response.status}: ${detail}`);
  }
  return as === "json" ? response.json() : response.text();
}

function human(x) {
  for (const [f, s] of [[1e12, "T"], [1e9, "B"], [1e6, "M"], [1e3, "K"]]) {
    if (Math.abs(x) >= f) return (x / f).toPrecision(3) + s;
  }
  return x.toPrecision(3);
}

function number(id) {
  const text = $(id).value.trim();
  if (text === "") return null;
  const x = Number(text);
  if (!Number.isFinite(x)) throw new Error(`${id}: ${JSON.stringify(text)} is not a number`);
  return x;
}

function request() {
  const mode = document.querySelector("input[name=mode]:checked").value;
  const r = { objective: $("objective").value };
  if (mode === "flops") r.flops = number("flops");
  else if (mode === "days") r.cluster = { gpus: number("gpus"), gpu: $("cluster-gpu").value, days: number("days") };
  else Object.assign(r, { gpu_hours: number("gpu-hours"), gpu: $("gpu").value, mfu: number("mfu") });
  const maxParams = number("max-params"), maxTokens = number("max-tokens");
  if (maxParams !== null) r.max_params = maxParams;
  if (maxTokens !== null) r.max_tokens = maxTokens;
  return r;
}

function row(table, key, value) {
  const tr = table.insertRow();
  const th = document.createElement("th");
  th.textContent = key;
  tr.appendChild(th);
  tr.insertCell().textContent = value;
}

function list(ul, items) {
  ul.replaceChildren(...items.map((text) => { const li = document.createElement("li"); li.textContent = text; return li; }));
}

function render(p) {
  const a = p.architecture, n = p.counts, train = p.training, law = p.law, s = p.search, r = p.request;
  $("headline").textContent = `Plan for ${train.compute.toPrecision(3)} FLOPs: predicted loss ${law.loss.toFixed(4)}`;
  const t = $("summary");
  t.replaceChildren();
  const shared = a.n_shared_experts ? ` + ${a.n_shared_experts} shared` : "";
  row(t, "architecture", `${a.n_layers} layers x d_hidden ${a.d_hidden} (${a.n_heads} heads of ${a.d_head}, ` +
      `${a.n_kv_heads} kv); ${a.n_experts} experts of width ${a.d_expert}, top-${a.top_k}${shared}`);
  row(t, "parameters", `${human(n.total.all)} total (${human(n.total.without_embeddings)} non-embedding), ` +
      `${human(n.active.all)} active; N/N_a ${n.total_over_active.toFixed(1)}`);
  row(t, "training", `${human(train.tokens)} tokens (${train.tokens_per_param.toFixed(1)} per parameter), ` +
      `${human(n.train_flops_per_token)} FLOPs/token (${r.convention})`);
  row(t, "predicted loss", `${law.loss.toFixed(4)} (${law.name}, ${law.constants_source.join(", ")}); ` +
      `${s.band_size} configurations within ${r.tolerance}`);
  row(t, "memory", `${Math.round(n.weight_memory_gb)} GB bf16 weights, ${Math.round(n.training_memory_gb)} GB training state`);
  row(t, "[LING]", `EL ${law.efficiency_leverage.toFixed(2)}; lr ${train.ling_learning_rate.toExponential(2)}, ` +
      `batch ${human(train.ling_batch_tokens)} tokens`);
  row(t, "allocation", train.allocations.map(a => `${a.source} ${human(a.tokens)} tokens`).join("; ") +
      `; the plan ${human(train.tokens)}`);
  if (p.cluster) {
    const c = p.cluster, L = c.layout, m = c.memory;
    row(t, "cluster", `${c.gpus} x ${c.accelerator.name}; TP ${L.tp}, PP ${L.pp}, EP ${L.ep}, DP ` +
        `${L.world / (L.tp * L.pp * L.cp)}; micro-batch ${L.micro_batch}, global batch ${L.global_batch}; ` +
        `recompute ${c.recompute}`);
    row(t, "memory/device", `${m.total.toFixed(1)} of ${m.capacity} GiB (weights ${m.weights.toFixed(1)}, ` +
        `gradients ${m.gradients.toFixed(1)}, optimizer ${m.optimizer.toFixed(1)}, activations ${m.activations.toFixed(1)})`);
    row(t, "speed", `${human(c.tokens_per_s)} tokens/s, MFU ${(100 * c.mfu).toFixed(1)}%, step ${c.step_time_s.toPrecision(3)} s`);
    row(t, "calendar", `${c.days.toFixed(1)} days, ${human(c.gpu_hours)} GPU-hours`);
  }
  if (s.verified) row(t, "verified", `regret ${s.regret} over ${s.certificate_points.toLocaleString()} configurations`);
  row(t, "search", `${s.points_evaluated.toLocaleString()} of ${s.space_size.toLocaleString()} configurations ` +
      `evaluated; study ${s.study_name} (${s.trials} trials)`);
  list($("binding"), s.binding.length ? s.binding.map((b) =>
    `${b.constraint}: ${b.neighbour} would lower the loss by ${b.loss_gain.toFixed(4)}` +
    (b.also && b.also.length ? ` (also breaking ${b.also.join("; ")})` : ""))
    : ["none: an interior optimum"]);
  $("warnings").hidden = law.extrapolation.length === 0;
  list($("extrapolation"), law.extrapolation.map((e) =>
    `${e.variable} = ${e.value.toPrecision(3)} lies ${e.factor.toPrecision(3)}x outside the law's fitted ` +
    `range [${e.low.toPrecision(3)}, ${e.high.toPrecision(3)}]`));
  list($("assumptions"), s.assumptions);
  const rows = p.pareto ? p.pareto.points.map((f) => f.design) : s.alternatives;
  $("alternatives-title").textContent = p.pareto ? "Pareto front" : "Near-optimal alternatives";
  const g = $("alternatives");
  g.replaceChildren();
  const head = g.createTHead().insertRow();
  for (const c of ["layers", "d_hidden", "d_expert", "experts", "top-k", "shared", "total", "active", "tokens", "loss"]) {
    const th = document.createElement("th"); th.textContent = c; head.appendChild(th);
  }
  const body = g.createTBody();
  for (const c of rows.slice(0, 10)) {
    const tr = body.insertRow();
    for (const v of [c.n_layers, c.d_hidden, c.d_expert, c.n_experts, c.top_k, c.n_shared_experts,
                     human(c.total_params), human(c.active_params), human(c.tokens), c.loss.toFixed(4)]) {
      tr.insertCell().textContent = v;
    }
  }
  $("result").hidden = false;
}

async function plots(r) {
  for (const kind of ["isoflop", "band", "pareto"]) {
    const img = $("plot-" + kind);
    img.removeAttribute("src");
    try {
      const svg = await call("api/plot/" + kind, r, "text");
      img.src = URL.createObjectURL(new Blob([svg], { type: "image/svg+xml" }));
    } catch (e) {
      img.alt = `${kind}: ${e.message}`;
    }
  }
}

async function study(name) {
  const span = $("study");
  try {
    const s = await call("api/studies/" + encodeURIComponent(name));
    span.replaceChildren();
    if (s.dashboard_url) {
      const link = document.createElement("a");
      link.href = s.dashboard_url;
      link.textContent = `study ${s.study_name} in optuna-dashboard`;
      span.appendChild(link);
    } else {
      span.textContent = `study ${s.study_name} (id ${s.study_id}, ${s.trials} trials); ` +
        "serve with --dashboard-url for a link";
    }
  } catch (e) {
    span.textContent = e.message;
  }
}

function save(name, text, type) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], { type }));
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
}

async function download(format) {
  const text = await call("api/export", { architecture: current.plan.architecture, format }, "text");
  if (format === "hf") return save("config.json", text, "application/json");
  const script = "#!/usr/bin/env bash\n" +
    `# Megatron-LM model arguments for moeplan's plan ${current.plan.search.study_name} ` +
    `(${current.plan.training.compute.toPrecision(3)} FLOPs, ${human(current.plan.training.tokens)} tokens).\n` +
    "# Usage: bash megatron.sh torchrun --nproc-per-node 8 pretrain_gpt.py [data, batch and schedule arguments]\n" +
    "set -euo pipefail\n" + `MODEL_ARGS=(${text.trim()})\n` + 'exec "$@" "${MODEL_ARGS[@]}"\n';
  save("megatron.sh", script, "text/x-shellscript");
}

$("plan-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const status = $("status");
  status.className = "";
  if ($("token").value) localStorage.setItem("moeplan-token", $("token").value);
  let r;
  try {
    r = request();
  } catch (e) {
    status.className = "error"; status.textContent = e.message; return;
  }
  status.textContent = "planning...";
  $("submit").disabled = true;
  try {
    const plan = await call("api/plan" + ($("verify").checked ? "?verify=true" : ""), r);
    current = { request: r, plan };
    render(plan);
    status.textContent = "";
    study(plan.search.study_name);
    await plots(r);
  } catch (e) {
    status.className = "error";
    status.textContent = e.message;
  } finally {
    $("submit").disabled = false;
  }
});

for (const [id, format] of [["download-hf", "hf"], ["download-megatron", "megatron"]]) {
  $(id).addEventListener("click", () => download(format).catch((e) => { $("status").textContent = e.message; }));
}
$("download-plan").addEventListener("click", () => save("plan.json", JSON.stringify(current.plan, null, 2), "application/json"));
