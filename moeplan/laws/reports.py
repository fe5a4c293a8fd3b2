"""Result models for `derive`, `predict` and `leverage`: pure functions of a law and its inputs."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from moeplan.errors import MoeplanError
from moeplan.laws import _generated, optima
from moeplan.laws.model import Extrapolation, Law

_FROZEN = ConfigDict(frozen=True)


class Optimum(BaseModel):
    """One derived quantity: its symbolic form (sympy text and LaTeX) and its value(s)."""

    model_config = _FROZEN

    name: str
    description: str
    sympy: list[str]
    latex: list[str]
    value: list[float] | None = None


class Derivation(BaseModel):
    model_config = _FROZEN

    law: str
    constants_source: list[str]
    optima: list[Optimum]
    total_params: float | None = None
    active_params: float | None = None
    tolerance: float | None = None
    theoretical_activation_ratio: float | None = None
    efficiency_aware_activation_ratio: dict[str, float] | None = None
    practical_range_g: tuple[float, float] | None = None
    practical_range_s: tuple[float, float] | None = None


def _optimum(name: str, value=None) -> Optimum:
    return Optimum(
        name=name,
        description=_generated.TEXT[name + ":description"][0],
        sympy=_generated.TEXT[name],
        latex=_generated.LATEX[name],
        value=None if value is None else [float(v) for v in (value if isinstance(value, tuple) else (value,))],
    )


def derive(law: Law, total_params: float | None = None, active_params: float | None = None,
           tolerance: float = 0.001) -> Derivation:
    """The symbolic optima of `law` and, given N (and N_a), the [HY] activation-ratio band and G/S ranges."""
    form = law.form
    sources = sorted({c.source for c in law.constants})
    names = list(law.optima())
    if not names:
        from moeplan.laws.definitions import LAWS

        derivable = [n for n, other in LAWS.items() if other.optima()]
        raise MoeplanError(f"no derivations for law {law.name!r}; derivable: {', '.join(derivable)}")
    valued = all(c.value is not None for c in law.constants)
    # an optimum with no free variable has one value (G*, S*, G_L*); the others are functions (shown symbolically)
    opt = [_optimum(n, optima.derived(n, law) if valued and not _generated.DERIVED[n].variables else None)
           for n in names]
    extra = {}
    if total_params is not None:
        if form != "hy":
            raise MoeplanError("--total-params applies to the hy law")
        extra["theoretical_activation_ratio"] = float(optima.optimal_activation_ratio(law, total_params))
        extra["efficiency_aware_activation_ratio"] = {
            str(t): optima.efficiency_aware_active(law, total_params, t) / total_params for t in (0.001, 0.005)
        }
    if active_params is not None:
        if total_params is None:
            raise MoeplanError("--active-params needs --total-params")
        if active_params > total_params:
            raise MoeplanError("active parameters exceed total parameters")
        extra["practical_range_g"] = optima.practical_range(law, "G", total_params, active_params, tolerance)
        extra["practical_range_s"] = optima.practical_range(law, "S", total_params, active_params, tolerance)
    return Derivation(law=law.name, constants_source=sources, optima=opt, total_params=total_params,
                      active_params=active_params, tolerance=tolerance if active_params is not None else None,
                      **extra)


class Prediction(BaseModel):
    model_config = _FROZEN

    law: str
    constants_source: list[str]
    inputs: dict[str, float]
    loss: float
    extrapolation: list[Extrapolation]


def predict(law: Law, inputs: dict[str, float]) -> Prediction:
    """The law's loss at `inputs`, with every input outside the fitted domain reported."""
    if law.kind != "loss":
        raise MoeplanError(f"law {law.name!r} predicts {law.main_output}, not loss")
    missing = [v for v in law.variable_names if v not in inputs]
    if missing:
        raise MoeplanError(f"law {law.name!r} needs {', '.join(missing)}")
    bad = [k for k, v in inputs.items() if not v > 0 and not (k == "S" and v == 0)]
    if bad:
        raise MoeplanError(f"inputs must be positive: {', '.join(bad)}")
    loss = float(law.evaluate(**inputs))
    return Prediction(law=law.name, constants_source=sorted({c.source for c in law.constants}),
                      inputs=inputs, loss=loss, extrapolation=law.extrapolation(**inputs))


class Leverage(BaseModel):
    model_config = _FROZEN

    activation_ratio: float
    granularity: float
    compute: float
    efficiency_leverage: float
    dense_equivalent_compute: float
    optimal_granularity: float


def leverage(law: Law, activation_ratio: float, granularity: float, compute: float) -> Leverage:
    """[LING] efficiency leverage EL(A, G_L, C) and the dense compute it is worth (EL·C)."""
    if not 0 < activation_ratio <= 1:
        raise MoeplanError(f"activation ratio must be in (0, 1], got {activation_ratio}")
    if granularity <= 0 or compute <= 0:
        raise MoeplanError("granularity and compute must be positive")
    el = float(law.evaluate(A=activation_ratio, G_L=granularity, C=compute))
    return Leverage(activation_ratio=activation_ratio, granularity=granularity, compute=compute,
                    efficiency_leverage=el, dense_equivalent_compute=el * compute,
                    optimal_granularity=optima.ling_optimal_granularity(law))
