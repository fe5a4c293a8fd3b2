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
    status: Literal["verbatim", "reconstructed", "form only", "fitted"] = "verbatim"
    note: str = ""


class Variable(BaseModel):
    """A law input, with the range the law's constants were fitted on (None: not published)."""

    model_config = _FROZEN

    name: str
    description: str
    domain: tuple[float, float] | None = None


class Extrapolation(BaseModel):
    """An input outside a law's fitted domain, and by what factor."""

    model_config = ConfigDict(frozen=True)

    variable: str
    value: float
    low: float
    high: float
    factor: float = Field(description="value / high above the range, low / value below it")

    def __str__(self) -> str:
        side = "above" if self.value > self.high else "below"
        return (f"{self.variable} = {self.value:.3g} is {self.factor:.3g}x {side} the fitted range "
                f"[{self.low:.3g}, {self.high:.3g}]")


class Law(BaseModel):
    """A scaling law: `builder(sympy, constant_symbols)` returns its expression; numpy code is generated from it."""

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

    def extrapolation(self, **values: float) -> list[Extrapolation]:
        """Inputs outside the fitted domain, with the factor by which they lie outside."""
        out = []
        for var in self.variables:
            if var.domain is None or var.name not in values:
                continue
            low, high = var.domain
            value = float(values[var.name])
            if value > high:
                out.append(Extrapolation(variable=var.name, value=value, low=low, high=high, factor=value / high))
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
