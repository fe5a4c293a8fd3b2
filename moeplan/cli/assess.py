"""`moeplan assess`: a model that exists, scored by each law against the best design of its family."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from moeplan.cli.common import ConventionOpt, JsonOpt, SeqLenOpt, emit_json, human, stdout
from moeplan.cli.options import convention_option
from moeplan.errors import UsageError


def assess_command(
    config: Annotated[Path, typer.Argument(help="HF config.json, moeplan architecture JSON or plan JSON.")],
    tokens: Annotated[float, typer.Option("--tokens", help="Tokens the model was (or will be) trained on.")],
    laws: Annotated[str, typer.Option("--laws", help="Laws: names or fitted JSON files, comma-separated.")] = "hy",
    convention: ConventionOpt = "exact",
    seq_len: SeqLenOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """How far an existing model is from each law's optimum at its compute, and which choices differ."""
    from moeplan.flops.hf import load_architecture
    from moeplan.planner.assess import assess
    from moeplan.planner.request import PlanRequest
    from moeplan.planner.robust import law_from_entry

    if not tokens > 0:
        raise UsageError(f"--tokens must be positive, got {tokens:g}")
    entries = [e.strip() for e in laws.split(",") if e.strip()]
    if not entries:
        raise UsageError("--laws takes law names or fitted JSON files separated by commas")
    arch = load_architecture(config, seq_len)
    carrier = PlanRequest(flops=1.0)  # law loading reads only the law fields of a request
    result = assess(arch, tokens, [law_from_entry(carrier, e) for e in entries], str(config),
                    convention_option(convention))
    if json_out:
        emit_json(result)
        return
    m = result.model
    stdout.print(f"[bold]{config}[/bold]: {m.shape()}, {human(m.total_params)} total, {human(m.active_params)} "
                 f"active; {human(result.tokens)} tokens = {result.compute:.3g} training FLOPs "
                 f"({result.convention.value}); searched {result.space_size:,} designs of its family")
    t = Table(title="each law: the model against its optimum at the same compute", title_justify="left")
    for col in ("law", "model loss", "optimum loss", "regret", "optimum design", "active", "tokens"):
        t.add_column(col, justify="left" if col in ("law", "optimum design") else "right",
                     overflow="fold", no_wrap=col not in ("law", "optimum design"))
    for a in result.laws:
        o = a.optimum
        t.add_row(a.law, f"{a.loss:.4f}", f"{o.loss:.4f}", f"{a.regret:.4f}", o.shape(), human(o.active_params),
                  human(o.tokens))
    stdout.print(t)
    for a in result.laws:
        for words in a.disagreements or ["agrees with every choice"]:
            stdout.print(f"  {a.law}: {words}")
