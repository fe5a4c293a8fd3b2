"""Every scaling law moeplan knows, each defined once: a sympy expression, its constants and their provenance.

Builders import sympy lazily: the planner evaluates laws through `_generated.py`, numpy code that
`moeplan.laws.codegen` writes from these expressions (a test fails if it is stale).
"""

from __future__ import annotations

from moeplan.laws.model import Constant, Law, Variable

HY_TABLE2 = "[HY] Table 2"


def _hy_domain():
    """[HY] fitted ranges (section 2 of docs/science.md, from the paper's Table 6 runs)."""
    return {
        "N": Variable(name="N", description="total non-embedding parameters", domain=(133e6, 3.4e9)),
        "D": Variable(name="D", description="training tokens", domain=(10e9, 50e9)),
        "N_a": Variable(name="N_a", description="activated non-embedding parameters", domain=(30e6, 2.2e9)),
        "G": Variable(name="G", description="activated experts n_k + n_s", domain=(1.0, 20.0)),
        "S": Variable(name="S", description="shared-expert share n_s / G", domain=(0.0, 0.7)),
    }


def hy_expression(sp, c):
    """[HY] Eq. 1/11/15: L = (eG + f/G + mS² + nS)(N^-α + k N_a^-α + h N_a/N) + aN^-α + bD^-β + cN_a^-α + ε."""
    N, D, N_a, G, S = sp.symbols("N D N_a G S", positive=True)
    A = c.e * G + c.f / G + c.m * S**2 + c.n * S
    return (A * (N**-c.alpha + c.k * N_a**-c.alpha + c.h * N_a / N)
            + c.a * N**-c.alpha + c.b * D**-c.beta + c.c * N_a**-c.alpha + c.epsilon)


def hy_nd_expression(sp, c):
    """[HY] Eq. 4 (reconstructed as the joint law with N_a, G, S absorbed): L = aN^-α + bD^-β + ε."""
    N, D = sp.symbols("N D", positive=True)
    return c.a * N**-c.alpha + c.b * D**-c.beta + c.epsilon


def hy_nda_expression(sp, c):
    """[HY] Eq. 7 (reconstructed, G and S absorbed): L = aN^-α + bD^-β + cN_a^-α + h N_a/N + ε."""
    N, D, N_a = sp.symbols("N D N_a", positive=True)
    return c.a * N**-c.alpha + c.b * D**-c.beta + c.c * N_a**-c.alpha + c.h * N_a / N + c.epsilon


def hy_ndag_expression(sp, c):
    """[HY] Eq. 9 (reconstructed, S absorbed): (eG + f/G)(N^-α + kN_a^-α + hN_a/N) + aN^-α + bD^-β + cN_a^-α + ε."""
    N, D, N_a, G = sp.symbols("N D N_a G", positive=True)
    return ((c.e * G + c.f / G) * (N**-c.alpha + c.k * N_a**-c.alpha + c.h * N_a / N)
            + c.a * N**-c.alpha + c.b * D**-c.beta + c.c * N_a**-c.alpha + c.epsilon)


def chinchilla_expression(sp, c):
    """[CHIN] Approach 3: L = E + A/N^α + B/D^β, N total parameters, C ≈ 6ND."""
    N, D = sp.symbols("N D", positive=True)
    return c.E + c.A / N**c.alpha + c.B / D**c.beta


def krajewski_expression(sp, c):
    """[KRAJ]: L = c + (g/G_K^γ + a) N^-α + b D^-β, N active non-embedding, G_K = d_ff / d_expert."""
    N, D, G_K = sp.symbols("N D G_K", positive=True)
    return c.c + (c.g / G_K**c.gamma + c.a) * N**-c.alpha + c.b * D**-c.beta


def ludziejewski_expression(sp, c):
    """[JOINT] Eq. 1: L = a Ê^δ N_act^(−α − γ ln Ê) + b Ê^ω D^(−β − ζ ln Ê) + c; N_act active non-embedding, Ê = n_e/n_k."""
    N_a, D, E = sp.symbols("N_a D E", positive=True)
    return (c.a * E**c.delta * N_a ** (-c.alpha - c.gamma * sp.log(E))
            + c.b * E**c.omega * D ** (-c.beta - c.zeta * sp.log(E)) + c.c)


def clark_expression(sp, c):
    """[CLARK]: log10 L = a log10 N + b log10 Ê + c log10 N log10 Ê + d, Ê a saturating transform of E."""
    N, E = sp.symbols("N E", positive=True)
    E_hat = 1 / (1 / (E - 1 + 1 / (1 / c.E_start - 1 / c.E_max)) + 1 / c.E_max)
    log_n, log_e = sp.log(N, 10), sp.log(E_hat, 10)
    return 10 ** (c.a * log_n + c.b * log_e + c.c * log_n * log_e + c.d)


def abnar_expression(sp, c):
    """[ABNAR]: L = a/N^α + b/D^β + c/(1−S)^λ + d/((1−S)^δ N^γ) + e, S the share of inactive experts."""
    N, D, S = sp.symbols("N D S_inactive", positive=True)
    return (c.a / N**c.alpha + c.b / D**c.beta + c.c / (1 - S) ** c.lam
            + c.d / ((1 - S) ** c.delta * N**c.gamma) + c.e)


def ling_expression(sp, c):
    """[LING] Eq. 13: EL = Â^(a + d log10 C + γ (log2 G_L)² + β log2 G_L), 1/Â = 1/(A + (1/A_start − 1/A_max)^-1) + 1/A_max."""
    A, G_L, C = sp.symbols("A G_L C", positive=True)
    A_hat = 1 / (1 / (A + 1 / (1 / c.A_start - 1 / c.A_max)) + 1 / c.A_max)
    log_g = sp.log(G_L, 2)
    return A_hat ** (c.a + c.d * sp.log(C, 10) + c.gamma * log_g**2 + c.beta * log_g)


def ling_outputs(sp, c):
    """[LING] hyperparameter and compute-allocation laws, C in FLOPs."""
    C = sp.Symbol("C", positive=True)
    return {
        "learning_rate": c.lr_coef * C**c.lr_exp,
        "batch_tokens": c.bs_coef * C**c.bs_exp,
        "moe_flops_per_token": c.moe_m_coef * C**c.moe_m_exp,
        "moe_tokens": c.moe_d_coef * C**c.moe_d_exp,
        "dense_flops_per_token": c.dense_m_coef * C**c.dense_m_exp,
        "dense_tokens": c.dense_d_coef * C**c.dense_d_exp,
    }


def hol_expression(sp, c):
    """[HOL] Eq. 2: D_opt = 22.8929 C^0.4563 (raw units, C = M·D)."""
    C = sp.Symbol("C", positive=True)
    return c.d_coef * C**c.d_exp


def hol_outputs(sp, c):
    """[HOL] Eq. 2: compute-optimal FLOPs per token M_opt = 0.04368 C^0.5437."""
    C = sp.Symbol("C", positive=True)
    return {"flops_per_token": c.m_coef * C**c.m_exp}


# Physical signs the fitter keeps by default: exponents of decaying power terms > 0; floors, scales and
# coefficients of penalties >= 0 (fit --free-signs lifts them). Constants not listed are free.
POSITIVE = {"alpha", "beta", "gamma", "lam", "delta"}
NONNEGATIVE = {"e", "f", "m", "k", "h", "a", "b", "c", "d", "g", "epsilon", "E", "A", "B"}
FREE = {"ludziejewski": {"gamma", "zeta", "delta", "omega"}, "clark": "all", "hy": {"n"}, "hy-nd": set(),
        "hy-nda": set(), "hy-ndag": set()}


def _k(name, value, source, status="verbatim", note=""):
    return Constant(name=name, value=value, source=source, status=status, note=note)


def _signed(form: str, constants):
    """The constants with their physical signs (POSITIVE, NONNEGATIVE, minus the form's FREE ones)."""
    free = FREE.get(form, set())
    out = []
    for c in constants:
        sign = "free"
        if free != "all" and c.name not in free:
            sign = "positive" if c.name in POSITIVE else "nonnegative" if c.name in NONNEGATIVE else "free"
        out.append(c.model_copy(update={"sign": sign}))
    return tuple(out)


HY_CONSTANTS = (
    _k("e", 0.1577, HY_TABLE2), _k("f", 7.2446, HY_TABLE2), _k("m", 5.1395, HY_TABLE2),
    _k("n", -3.2363, HY_TABLE2), _k("k", 0.0013, HY_TABLE2), _k("h", 0.0450, HY_TABLE2),
    _k("a", 38.0510, HY_TABLE2), _k("alpha", 0.2383, HY_TABLE2), _k("b", 27129.0488, HY_TABLE2),
    _k("beta", 0.4694, HY_TABLE2), _k("c", 31.0958, HY_TABLE2), _k("epsilon", 1.8182, HY_TABLE2),
)


def _form_only(names, source):
    return tuple(_k(n, None, source, "form only", "no published value; fit with `moeplan fit`") for n in names)


CHIN = "[CHIN] Hoffmann et al. 2022, Approach 3"
EPOCH = "[EPOCH] Besiroglu et al. 2024, Eq. 4 refit"
KRAJ = "[KRAJ] Krajewski et al. 2024 (secondary source)"
JOINT = "[JOINT] via a secondary source (occupying-mars.notion.site, 'MOE scaling laws'); signs reconstructed"
CLARK = "[CLARK] Clark et al. 2022, S-BASE (secondary source)"
LING = "[LING] Tian et al. 2025"
HOL = "[HOL] Wan et al. 2026, Eq. 2"

LAWS: dict[str, Law] = {
    spec.name: spec.model_copy(update={"constants": _signed(spec.form, spec.constants)}) if spec.kind == "loss" else spec
    for spec in (
        Law(
            name="hy", title="[HY] joint MoE law", kind="loss", builder=hy_expression,
            citation="Zhao et al. 2025, arXiv 2509.23678, Eq. 1/11/15, Table 2",
            variables=tuple(_hy_domain().values()), constants=HY_CONSTANTS,
            notes=("Always improves as N grows at fixed N_a, G, S, D: total parameters must be capped.",
                   "Sees architecture only through N, N_a, G, S: blind to depth versus width.",
                   "Counts: non-embedding, MHA, no router (Eq. 2-3); fitted on 268 runs, validation MAE 0.0059."),
        ),
        Law(
            name="hy-nd", title="[HY] nested L(N, D)", kind="loss", builder=hy_nd_expression,
            citation="Zhao et al. 2025, Eq. 4 (reconstructed as the joint law with N_a, G, S absorbed)",
            variables=tuple(_hy_domain()[v] for v in ("N", "D")),
            constants=_form_only(("a", "alpha", "b", "beta", "epsilon"), "[HY] Eq. 4"),
        ),
        Law(
            name="hy-nda", title="[HY] nested L(N, D, N_a)", kind="loss", builder=hy_nda_expression,
            citation="Zhao et al. 2025, Eq. 7 (reconstructed, G and S absorbed)",
            variables=tuple(_hy_domain()[v] for v in ("N", "D", "N_a")),
            constants=_form_only(("a", "alpha", "b", "beta", "c", "h", "epsilon"), "[HY] Eq. 7"),
        ),
        Law(
            name="hy-ndag", title="[HY] nested L(N, D, N_a, G)", kind="loss", builder=hy_ndag_expression,
            citation="Zhao et al. 2025, Eq. 9 (reconstructed, S absorbed)",
            variables=tuple(_hy_domain()[v] for v in ("N", "D", "N_a", "G")),
            constants=_form_only(("e", "f", "k", "h", "a", "alpha", "b", "beta", "c", "epsilon"), "[HY] Eq. 9"),
        ),
        Law(
            name="chinchilla", title="[CHIN] Chinchilla Approach 3", kind="loss", builder=chinchilla_expression,
            citation="Hoffmann et al. 2022, Eq. 10 and Approach 3",
            variables=(Variable(name="N", description="total parameters (dense)", domain=(70e6, 16e9)),
                       Variable(name="D", description="training tokens", domain=(5e9, 500e9))),
            constants=(_k("E", 1.69, CHIN), _k("A", 406.4, CHIN), _k("B", 410.7, CHIN),
                       _k("alpha", 0.34, CHIN), _k("beta", 0.28, CHIN)),
        ),
        Law(
            name="chinchilla-active", title="[CHIN] Chinchilla on active parameters (dense baseline)", kind="loss",
            builder=chinchilla_expression, code_name="chinchilla",
            citation="Hoffmann et al. 2022, Approach 3, with N read as an MoE's active non-embedding parameters",
            variables=(Variable(name="N", description="active non-embedding parameters (a dense model of the "
                                "MoE's per-token size)", domain=(70e6, 16e9), quantity="N_a"),
                       Variable(name="D", description="training tokens", domain=(5e9, 500e9))),
            constants=(_k("E", 1.69, CHIN), _k("A", 406.4, CHIN), _k("B", 410.7, CHIN),
                       _k("alpha", 0.34, CHIN), _k("beta", 0.28, CHIN)),
            notes=("The dense baseline: experts beyond the active ones earn nothing, so the planner's optimum is "
                   "what a dense model of the same per-token compute would reach.",),
        ),
        Law(
            name="epoch", title="[EPOCH] Chinchilla refit", kind="loss", builder=chinchilla_expression,
            code_name="chinchilla",
            citation="Besiroglu et al. 2024, arXiv 2404.10102 (Huber δ=1e-3 on log loss, L-BFGS)",
            variables=(Variable(name="N", description="total parameters (dense)", domain=(70e6, 16e9)),
                       Variable(name="D", description="training tokens", domain=(5e9, 500e9))),
            constants=(_k("E", 1.8172, EPOCH), _k("A", 482.01, EPOCH), _k("B", 2085.43, EPOCH),
                       _k("alpha", 0.3478, EPOCH), _k("beta", 0.3658, EPOCH)),
        ),
        Law(
            name="krajewski", title="[KRAJ] fine-grained MoE law", kind="loss", builder=krajewski_expression,
            citation="Krajewski et al. 2024, arXiv 2402.07871",
            variables=(Variable(name="N", description="active non-embedding parameters", quantity="N_a"),
                       Variable(name="D", description="training tokens"),
                       Variable(name="G_K", description="granularity d_ff / d_expert (d_ff = 4 d_hidden)")),
            constants=(_k("c", 0.47, KRAJ), _k("a", 18.1, KRAJ), _k("alpha", 0.115, KRAJ), _k("b", 30.8, KRAJ),
                       _k("beta", 0.147, KRAJ), _k("g", 2.1, KRAJ), _k("gamma", 0.58, KRAJ)),
        ),
        Law(
            name="ludziejewski", title="[JOINT] joint MoE scaling law (memory-efficient MoE)", kind="loss",
            builder=ludziejewski_expression,
            citation="Ludziejewski et al. 2025 (ICML), arXiv 2502.05172, Eq. 1",
            variables=(Variable(name="N_a", description="active non-embedding parameters N_act"),
                       Variable(name="D", description="training tokens"),
                       Variable(name="E", description="expansion rate Ê = routed experts / top-k",
                                quantity="expansion")),
            constants=(_k("a", 35.91, JOINT, "unverified"), _k("delta", 0.2285, JOINT, "unverified"),
                       _k("alpha", 0.1889, JOINT, "unverified"), _k("gamma", 0.0098, JOINT, "unverified"),
                       _k("b", 35.98, JOINT, "unverified"), _k("omega", -0.5529, JOINT, "unverified"),
                       _k("beta", 0.1775, JOINT, "unverified"), _k("zeta", 0.0259, JOINT, "unverified"),
                       _k("c", 1.3637, JOINT, "unverified")),
            notes=("Constants from a secondary source, not read in the paper: 'unverified'. Its inner signs "
                   "disagree between the terms (0.1889 - 0.0098 ln Ê, 0.1775 + 0.0259 ln Ê); moeplan takes "
                   "alpha, gamma, beta, zeta all positive, the only choice under which more experts lower the "
                   "loss at fixed N_act and D at scale, the paper's finding.",
                   "The paper's Ê is a transformed expert count; moeplan feeds Ê = n_e / n_k.",
                   "Fitted on up to 2.7B active and 5B total parameters (the paper's abstract)."),
        ),
        Law(
            name="clark", title="[CLARK] unified routed-LM law (S-BASE)", kind="loss", builder=clark_expression,
            citation="Clark et al. 2022, arXiv 2202.01169",
            variables=(Variable(name="N", description="dense-equivalent (active) parameters", quantity="N_a"),
                       Variable(name="E", description="routed experts n_e", quantity="n_experts")),
            constants=(_k("a", -0.082, CLARK), _k("b", -0.108, CLARK), _k("c", 0.009, CLARK), _k("d", 1.104, CLARK),
                       _k("E_start", 1.847, CLARK), _k("E_max", 314.5, CLARK)),
            notes=("Log base 10 and the E - 1 offset of the saturating transform are reconstructed.",),
        ),
        Law(
            name="abnar", title="[ABNAR] sparsity law", kind="loss", builder=abnar_expression,
            citation="Abnar et al. 2025, arXiv 2501.12370 (form only)",
            variables=(Variable(name="N", description="total parameters"),
                       Variable(name="D", description="training tokens"),
                       Variable(name="S_inactive", description="share of inactive experts 1 - n_k/n_e")),
            constants=_form_only(("a", "alpha", "b", "beta", "c", "lam", "d", "delta", "gamma", "e"), "[ABNAR]"),
        ),
        Law(
            name="ling", title="[LING] efficiency leverage", kind="leverage", builder=ling_expression,
            output_builder=ling_outputs,
            citation="Tian et al. 2025, arXiv 2507.17702, Eq. 13 and Table 2",
            variables=(Variable(name="A", description="activation ratio (E_a + E_s)/(E + E_s)"),
                       Variable(name="G_L", description="granularity 2 d_hidden / d_expert"),
                       Variable(name="C", description="training compute, FLOPs")),
            constants=(_k("a", 1.23, LING), _k("d", -7.61e-2, LING), _k("gamma", 1.67e-2, LING),
                       _k("beta", -1.17e-1, LING), _k("A_start", 1.63e-2, LING), _k("A_max", 5.28e16, LING),
                       _k("lr_coef", 1.1576, LING), _k("lr_exp", -0.1529, LING),
                       _k("bs_coef", 0.0694, LING, "reconstructed", "batch in tokens"), _k("bs_exp", 0.3644, LING),
                       _k("moe_m_coef", 0.1915, LING, note="MoE at A = 7.8 %, G_L = 2"),
                       _k("moe_m_exp", 0.5095, LING), _k("moe_d_coef", 5.2232, LING), _k("moe_d_exp", 0.4905, LING),
                       _k("dense_m_coef", 0.0655, LING), _k("dense_m_exp", 0.5422, LING),
                       _k("dense_d_coef", 15.2582, LING), _k("dense_d_exp", 0.4578, LING)),
            notes=("Log bases reconstructed: log10 for C and log2 for G_L are the only choice found that "
                   "reproduces EL = 7.2 at A = 3.1 %, G_L = 12, C = 1e22 and an optimal G_L near 12.",),
        ),
        Law(
            name="hol", title="[HOL] compute allocation", kind="allocation", builder=hol_expression,
            output_builder=hol_outputs,
            citation="Wan et al. 2026, arXiv 2603.21862, Eq. 2",
            variables=(Variable(name="C", description="training compute M·D, FLOPs", domain=(1e18, 3e20)),),
            constants=(_k("d_coef", 22.8929, HOL), _k("d_exp", 0.4563, HOL),
                       _k("m_coef", 0.04368, HOL), _k("m_exp", 0.5437, HOL)),
        ),
    )
}
ALIASES = {"joint": "ludziejewski"}  # the name the law had before it was planned with
