"""A scaling law as data: variables with fitted domains, constants with provenance, one sympy expression."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, computed_field

from moeplan.errors import MoeplanError, UsageError

_FROZEN = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)
MAIN_OUTPUT = {"loss": "loss", "leverage": "leverage", "allocation": "tokens"}


class Constant(BaseModel):
    """A law constant: its value and where it comes from."""

    model_config = _FROZEN

    name: str
    value: float | None
    source: str = Field(description="paper and equation or table, e.g. '[HY] Table 2'")
    status: Literal["verbatim", "reconstructed", "unverified", "form only", "fitted"] = "verbatim"
    note: str = ""
    sign: Literal["positive", "nonnegative", "free"] = Field(
        "free", description="physical sign the fitter keeps by default (exponents > 0, floors and scales >= 0)")


class Variable(BaseModel):
    """A law input, with the range the law's constants were fitted on (None: not published)."""

    model_config = _FROZEN

    name: str
    description: str
    domain: tuple[float, float] | None = None
    quantity: str = Field("", description="the quantity of moeplan.laws.inputs that feeds it (default: its name)")

    def model_post_init(self, _context) -> None:
        if not self.quantity:
            object.__setattr__(self, "quantity", self.name)


class Extrapolation(BaseModel):
    """An input outside a law's fitted domain, and by what factor."""

    model_config = ConfigDict(frozen=True)

    variable: str
    value: float
    low: float
    high: float
    factor: float = Field(description="value / high above the range, low / value below it")

    def __str__(self) -> str:
        if self.low == self.high:
            return f"{self.variable} = {self.value:.3g}, but the fit saw only {self.variable} = {self.low:.3g}"
        side = "above" if self.value > self.high else "below"
        return (f"{self.variable} = {self.value:.3g} is {self.factor:.3g}x {side} the fitted range "
                f"[{self.low:.3g}, {self.high:.3g}]")


class Law(BaseModel):
    """A scaling law: `builder(sympy, constant_symbols)` returns its expression; numpy code is generated from it.

    The law protocol (docs/laws.md), the planner's only view of a law, in the spirit of Optuna's
    `BaseSampler`: `inputs(quantities)` picks its variables from the one map (moeplan.laws.inputs);
    `loss(inputs)` scores them; optionally `lower_bound(low, high)` bounds the loss over a box of inputs
    (branch and bound; without it the planner enumerates) and `optima()` names its sympy-derived optima.
    `tests/test_law_conformance.py` runs the same checks on every law.
    """

    model_config = _FROZEN

    name: str = Field(description="short CLI name")
    title: str
    citation: str
    kind: Literal["loss", "leverage", "allocation"]
    variables: tuple[Variable, ...]
    constants: tuple[Constant, ...]
    notes: tuple[str, ...] = ()
    builder: Callable = Field(exclude=True, repr=False)
    output_builder: Callable | None = Field(None, exclude=True, repr=False)
    code_name: str | None = Field(None, description="the generated code to use (laws sharing a form share it)")

    @computed_field
    @property
    def formula(self) -> str:
        """The formula as its builder's docstring states it (source and convention included)."""
        return (self.builder.__doc__ or "").strip().splitlines()[0]

    @property
    def form(self) -> str:
        """The law whose expression (and generated code) this one uses: a refit keeps its form's name."""
        return self.code_name or self.name

    @property
    def main_output(self) -> str:
        return MAIN_OUTPUT[self.kind]

    @property
    def variable_names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variables)

    @property
    def constant_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.constants)

    @property
    def values(self) -> dict[str, float]:
        """Constant values by name; raises if the law is form-only (nothing published, nothing fitted)."""
        missing = [c.name for c in self.constants if c.value is None]
        if missing:
            raise MoeplanError(f"law {self.name!r} has no values for {', '.join(missing)}: fit it first (moeplan fit)")
        return {c.name: c.value for c in self.constants}

    def with_values(self, values: dict[str, float], source: str, status: str = "fitted") -> Law:
        """The same law with some constants replaced (e.g. by a fit), their provenance updated."""
        unknown = set(values) - set(self.constant_names)
        if unknown:
            raise MoeplanError(f"law {self.name!r} has no constants {sorted(unknown)}")
        constants = tuple(
            c.model_copy(update={"value": float(values[c.name]), "source": source, "status": status})
            if c.name in values else c
            for c in self.constants
        )
        return self.model_copy(update={"constants": constants})

    # -- symbolic -------------------------------------------------------------------------------------
    def symbols(self):
        """sympy symbols of the constants, as attributes (`c.alpha`)."""
        import sympy as sp

        return SimpleNamespace(**{name: sp.Symbol(name, real=True) for name in self.constant_names})

    def expression(self, substitute: bool = False):
        """The sympy expression of the main output; with `substitute`, constants replaced by their values."""
        import sympy as sp

        expr = self.builder(sp, self.symbols())
        return expr.subs({sp.Symbol(k, real=True): v for k, v in self.values.items()}) if substitute else expr

    def outputs(self) -> dict:
        """All sympy output expressions by name, the main one first."""
        import sympy as sp

        out = {self.main_output: self.builder(sp, self.symbols())}
        if self.output_builder is not None:
            out |= self.output_builder(sp, self.symbols())
        return out

    # -- numeric --------------------------------------------------------------------------------------
    def evaluate(self, output: str | None = None, **variables) -> np.ndarray:
        """Vectorised evaluation (numpy code generated from the expression); variables broadcast."""
        from moeplan.laws import _generated

        output = output or self.main_output
        if not isinstance(output, str):
            raise UsageError(f"law {self.name!r}: output must be a name, not {output!r}")
        fn = _generated.FUNCTIONS.get((self.form, output))
        if fn is None:
            raise MoeplanError(f"law {self.name!r} has no output {output!r}")
        missing = [v for v in fn.variables if v not in variables]
        if missing:
            raise MoeplanError(f"law {self.name!r} needs {', '.join(missing)}")
        args = [_numbers(v, variables[v]) for v in fn.variables]
        values = self.values
        return fn(*args, *(values[c] for c in fn.constants))

    # -- the law protocol -----------------------------------------------------------------------------
    @property
    def quantities(self) -> tuple[str, ...]:
        """The quantities of moeplan.laws.inputs this law reads, in its variables' order."""
        return tuple(v.quantity for v in self.variables)

    def inputs(self, quantities: dict) -> dict[str, np.ndarray]:
        """The law's variables, by its own names, from the one map's quantities."""
        from moeplan.laws.inputs import for_law

        return for_law(self, quantities)

    def loss(self, inputs: dict) -> np.ndarray:
        """The predicted loss at `inputs` (the law's variables; arrays broadcast)."""
        return self.evaluate(**inputs)

    def can_score(self) -> str | None:
        """Why the planner cannot score architectures with this law (None: it can)."""
        from moeplan.laws.inputs import QUANTITIES

        if self.kind != "loss":
            return f"law {self.name!r} predicts {self.main_output}, not loss"
        missing = [c.name for c in self.constants if c.value is None]
        if missing:
            return f"law {self.name!r} has no values for {', '.join(missing)}: fit it first (moeplan fit)"
        unknown = [q for q in self.quantities if q not in QUANTITIES or q == "C"]
        if unknown:
            return f"law {self.name!r} reads {', '.join(unknown)}, which an architecture does not determine"
        return None

    @property
    def has_bound(self) -> bool:
        """Whether sympy split the law into terms each bounded at the corners of a box (`lower_bound`)."""
        from moeplan.laws import _generated

        return self.kind == "loss" and bool(_generated.BOUNDS.get(self.form))

    def lower_bound(self, low: dict, high: dict) -> np.ndarray:
        """A lower bound of the loss over every box [low, high] of inputs (the law's variables, arrays).

        codegen.py's `bound_terms` writes L = sum_t c_t·phi_t, c_t of the variables fixed within a planner
        box (G, S) and phi_t = exp(multilinear in the logs of the others): each term is smallest at a corner,
        so the sum of the terms' corner minima bounds L, and equals L where low == high. Where a fixed
        variable does vary, the bound is -inf (valid, never prunes).
        """
        return self._corner_bound(low, high, np.minimum, -np.inf)

    def upper_bound(self, low: dict, high: dict) -> np.ndarray:
        """An upper bound of the loss over every box [low, high] of inputs: each term at its largest corner
        (+inf where a fixed variable varies). The planner counts whole boxes of the band with it."""
        return self._corner_bound(low, high, np.maximum, np.inf)

    def _corner_bound(self, low: dict, high: dict, pick, unbounded: float) -> np.ndarray:
        from moeplan.laws import _generated

        groups = _generated.BOUNDS.get(self.form)
        if not groups:
            raise MoeplanError(f"law {self.name!r} has no box bound: the planner enumerates")
        values = self.values
        coefs_fn, terms = groups
        coefs = coefs_fn(*(low[v] for v in coefs_fn.variables), *(values[c] for c in coefs_fn.constants))
        total = 0.0
        for coef, (phi_fn, box) in zip(coefs, terms, strict=True):
            consts = [values[c] for c in phi_fn.constants]
            best = None
            for corner in range(1 << len(box)):
                phi = phi_fn(*((high if (corner >> box.index(v)) & 1 else low)[v] for v in phi_fn.variables), *consts)
                best = coef * phi if best is None else pick(best, coef * phi)
            total = total + best
        for v in coefs_fn.variables:
            if not np.array_equal(low[v], high[v]):
                total = np.where(np.asarray(low[v]) == np.asarray(high[v]), total, unbounded)
        return total

    def optima(self) -> dict[str, str]:
        """Optima derived by sympy for this law's form (name: description); empty if none."""
        from moeplan.laws import _generated

        return {k: _generated.TEXT[k + ":description"][0] for k in _generated.DERIVED
                if _generated.TEXT[k + ":law"][0] == self.form}

    def extrapolation(self, **values: float) -> list[Extrapolation]:
        """Inputs outside the fitted domain, with the factor by which they lie outside."""
        out = []
        for var in self.variables:
            if var.domain is None or var.name not in values:
                continue
            low, high = var.domain
            value = float(values[var.name])
            if value > high:
                factor = value / high if high > 0 else float("inf")
                out.append(Extrapolation(variable=var.name, value=value, low=low, high=high, factor=factor))
            elif value < low:
                factor = low / value if value > 0 else float("inf")
                out.append(Extrapolation(variable=var.name, value=value, low=low, high=high, factor=factor))
        return out


def _numbers(name: str, value) -> np.ndarray:
    """A law input as float64 numbers; None, text and booleans are refused by name (numpy would make NaN or 1)."""
    array = np.asarray(value)
    if array.dtype.kind not in "iuf" or array.size == 0:
        raise UsageError(f"law input {name} must be numbers, not {value!r}")
    return array.astype(np.float64, copy=False)
