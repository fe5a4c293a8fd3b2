"""Write `_generated.py`: numpy functions for every law output and every derived optimum.

    python -m moeplan.laws.codegen          # rewrite moeplan/laws/_generated.py
    python -m moeplan.laws.codegen --check  # exit 1 if the committed file is stale (regenerates: minutes)

Why generate: importing sympy alone takes ~0.7 s and deriving the optima ~8 s, too slow for a planner that
must answer in about a second; the generated code is what `sympy.lambdify` would build, written once.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import sympy as sp
from sympy.printing.numpy import NumPyPrinter

from moeplan.laws import derive
from moeplan.laws.definitions import LAWS

TARGET = Path(__file__).with_name("_generated.py")
# What the generated code is a function of: these sources and sympy's printer. Their hash heads the file, so
# a quick test can tell a stale file without regenerating it (tests/test_laws.py).
INPUTS = ("codegen.py", "definitions.py", "derive.py", "model.py")
HASH_LINE = "# inputs sha256: "


def inputs_hash() -> str:
    """sha256 over the generator's input files (in INPUTS order) and the sympy version."""
    digest = hashlib.sha256(f"sympy {sp.__version__}\n".encode())
    for name in INPUTS:
        digest.update(f"{name}\n".encode() + Path(__file__).with_name(name).read_bytes())
    return digest.hexdigest()


def recorded_hash(path: Path = TARGET) -> str | None:
    """The inputs hash written in a generated file's header, or None."""
    for line in path.read_text().splitlines()[:5]:
        if line.startswith(HASH_LINE):
            return line.removeprefix(HASH_LINE).strip()
    return None
_ORDER = ("N", "D", "N_a", "G", "S", "G_K", "E", "S_inactive", "A", "G_L", "C", "tol")


def _args(exprs, constant_names):
    names = {s.name for e in exprs for s in e.free_symbols}
    variables = [v for v in _ORDER if v in names and v not in constant_names]
    unknown = names - set(variables) - set(constant_names)
    if unknown:
        raise ValueError(f"unexpected symbols {unknown}")
    return variables, [c for c in constant_names if c in names]


def _function(name: str, exprs, constant_names) -> tuple[str, list[str], list[str]]:
    exprs = list(exprs)
    variables, constants = _args(exprs, constant_names)
    printer = NumPyPrinter({"fully_qualified_modules": True})
    replacements, reduced = sp.cse(exprs, symbols=sp.numbered_symbols("_x"), optimizations="basic")
    lines = [f"def {name}({', '.join(variables + constants)}):"]
    lines += [f"    {sym} = {printer.doprint(sub)}" for sym, sub in replacements]
    body = ", ".join(printer.doprint(e) for e in reduced)
    lines.append(f"    return {body}" + ("," if len(reduced) == 1 and len(exprs) > 1 else ""))
    return "\n".join(lines), variables, constants


def linear_constants(law, expr) -> list[str]:
    """A maximal set of constants that `expr` is jointly linear in (greedy, in declared order): the fitter
    solves for these by linear least squares given the others (variable projection)."""
    c = law.symbols()
    chosen: list = []
    for name in law.constant_names:
        sym = getattr(c, name)
        if all(sp.simplify(sp.diff(expr, sym, other)) == 0 for other in [*chosen, sym]):
            chosen.append(sym)
    return [s.name for s in chosen]


def _fitting_functions(law, expr) -> tuple[list[str], str]:
    """Jacobian of the law in its constants, and the linear basis: expr = phi_0 + sum_i lin_i * phi_i."""
    c = law.symbols()
    name = law.name.replace("-", "_")
    jac_src, jac_vars, jac_consts = _function(
        f"{name}__jacobian", [sp.diff(expr, getattr(c, k)) for k in law.constant_names], law.constant_names)
    linear = linear_constants(law, expr)
    zero = {getattr(c, k): 0 for k in linear}
    basis = [expr.subs(zero)] + [sp.diff(expr, getattr(c, k)) for k in linear]
    basis_src, basis_vars, basis_consts = _function(f"{name}__basis", basis, law.constant_names)
    entry = (f"    {law.name!r}: (_tag({name}__jacobian, {tuple(jac_vars)!r}, {tuple(jac_consts)!r}), "
             f"_tag({name}__basis, {tuple(basis_vars)!r}, {tuple(basis_consts)!r}), {tuple(linear)!r}),")
    return [jac_src, basis_src], entry


def bound_terms(law):
    """L = sum_t c_t·phi_t for `Law.lower_bound`, or None if the law does not split so.

    c_t holds the constants and the variables fixed within a planner box (inputs.FIXED_IN_BOX); phi_t the
    varying variables, and must be exp(multilinear in their logs): a multilinear function on a box is
    extreme at a corner, so each term's minimum over a box is its minimum over the box's corners.
    Returns [(c_t, phi_t, names of the varying variables in phi_t), ...].
    """
    from moeplan.laws.inputs import FIXED_IN_BOX

    expr = sp.expand(law.builder(sp, law.symbols()))
    names = {v.name for v in law.variables}
    symbols = {s for s in expr.free_symbols if s.name in names}
    fixed = {s for s in symbols if next(v for v in law.variables if v.name == s.name).quantity in FIXED_IN_BOX}
    varying = symbols - fixed
    groups: dict = {}
    for term in sp.Add.make_args(expr):
        coef, phi = sp.S.One, sp.S.One
        for factor in sp.Mul.make_args(term):
            if factor.free_symbols & varying:
                phi *= factor
            else:
                coef *= factor
        groups[phi] = groups.get(phi, sp.S.Zero) + coef
    logs = {s: sp.Symbol(f"u_{s.name}", real=True) for s in varying}
    out = []
    for phi, coef in sorted(groups.items(), key=lambda kv: sp.default_sort_key(kv[0])):
        log_phi = sp.expand(sp.expand_log(sp.log(phi.subs({s: sp.exp(u) for s, u in logs.items()})), force=True))
        if not log_phi.free_symbols & set(logs.values()) and phi != 1:
            return None
        try:
            poly = sp.Poly(log_phi, *logs.values()) if logs else None
        except sp.PolynomialError:
            return None
        if poly is not None and any(d > 1 for monomial in poly.monoms() for d in monomial):
            return None
        out.append((sp.factor_terms(coef), phi, sorted(s.name for s in phi.free_symbols & varying)))
    return out


def generate() -> str:
    parts = [
        '"""Generated by `python -m moeplan.laws.codegen` from definitions.py and derive.py: do not edit."""',
        f"{HASH_LINE}{inputs_hash()}",
        "",
        "import numpy",
        "",
        "",
        "def _tag(fn, variables, constants):",
        "    fn.variables, fn.constants = variables, constants",
        "    return fn",
        "",
    ]
    table, derived_table, latex, text, fitting, bounds = [], [], {}, {}, [], []
    for law in LAWS.values():
        if law.code_name:
            continue
        for output, expr in law.outputs().items():
            fname = f"{law.name.replace('-', '_')}__{output}"
            src, variables, constants = _function(fname, [expr], law.constant_names)
            parts += ["", src, ""]
            table.append(f"    ({law.name!r}, {output!r}): _tag({fname}, {tuple(variables)!r}, {tuple(constants)!r}),")
        if law.kind == "loss":
            expr = law.outputs()["loss"]
            sources, entry = _fitting_functions(law, expr)
            parts += ["", *sources, ""]
            fitting.append(entry)
            terms = bound_terms(law)
            if not terms:
                bounds.append(f"    {law.name!r}: None,")
                continue
            stem = law.name.replace("-", "_")
            # one function for every coefficient, so common subexpressions ([HY]'s A(G, S)) are computed once
            src, variables, constants = _function(f"{stem}__bound_coefs", [c for c, _, _ in terms],
                                                  law.constant_names)
            parts += ["", src, ""]
            coefs = f"_tag({stem}__bound_coefs, {tuple(variables)!r}, {tuple(constants)!r})"
            entries = []
            for t, (_, phi, box) in enumerate(terms):
                src, variables, constants = _function(f"{stem}__bound{t}_phi", [phi], law.constant_names)
                parts += ["", src, ""]
                entries.append(f"(_tag({stem}__bound{t}_phi, {tuple(variables)!r}, {tuple(constants)!r}), "
                               f"{tuple(box)!r})")
            bounds.append(f"    {law.name!r}: ({coefs}, ({', '.join(entries)},)),")
    for name, (expr, description, owner) in derive.derived().items():
        law = LAWS[owner]
        exprs = expr if isinstance(expr, tuple) else (expr,)
        src, variables, constants = _function(name, exprs, law.constant_names)
        parts += ["", src, ""]
        derived_table.append(f"    {name!r}: _tag({name}, {tuple(variables)!r}, {tuple(constants)!r}),")
        latex[name] = [sp.latex(e) for e in exprs]
        text[name] = [sp.sstr(e) for e in exprs]
        text[name + ":description"] = [description]
        text[name + ":law"] = [owner]
    parts += ["", "FUNCTIONS = {", *table, "}", "", "DERIVED = {", *derived_table, "}", ""]
    parts += ["# law -> (coefficients c_t, terms (factor phi_t, phi_t's variables)) of its box bound; None: no bound",
              "BOUNDS = {", *bounds, "}", ""]
    parts += ["# law -> (jacobian in every constant, linear basis [phi_0, phi_i...], linear constants)",
              "FITTING = {", *fitting, "}", ""]
    parts += ["LATEX = {"] + [f"    {k!r}: {v!r}," for k, v in latex.items()] + ["}", ""]
    parts += ["TEXT = {"] + [f"    {k!r}: {v!r}," for k, v in text.items()] + ["}", ""]
    return "\n".join(parts)


def main() -> None:
    code = generate()
    if "--check" in sys.argv[1:]:
        stale = not TARGET.exists() or TARGET.read_text() != code
        print("stale: run python -m moeplan.laws.codegen" if stale else "up to date")
        sys.exit(1 if stale else 0)
    TARGET.write_text(code)
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
