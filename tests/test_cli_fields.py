"""`plan` and `frontier` take the request's fields as options made from the model (moeplan/cli/fields.py):
one option per field, its help the field's description, its default the field's."""

from __future__ import annotations

import pytest
import typer.main
from pydantic import BaseModel
from rich.markup import escape

from moeplan.cli import frontier as frontier_cli
from moeplan.cli import plan as plan_cli
from moeplan.cli.main import app
from moeplan.planner.request import PlanRequest
from moeplan.store import DEFAULT_STORAGE

COMMANDS = {"plan": plan_cli.request_options(), "frontier": frontier_cli.frontier_options()}


def _command(name: str):
    group = typer.main.get_command(app)
    return group.get_command(None, name)


def _field(path: tuple[str, ...]):
    """The field at `path` of PlanRequest, following its sub-models (priors, cluster, cluster.memory)."""
    model, field = PlanRequest, None
    for key in path:
        field = model.model_fields[key]
        model = next((a for a in (field.annotation, *getattr(field.annotation, "__args__", ()))
                      if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return field


def _leaves(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    out = set()
    for name, field in model.model_fields.items():
        sub = next((a for a in (field.annotation, *getattr(field.annotation, "__args__", ()))
                    if isinstance(a, type) and issubclass(a, BaseModel)), None)
        out |= _leaves(sub, (*prefix, name)) if sub else {(*prefix, name)}
    return out


@pytest.mark.parametrize("name", COMMANDS)
def test_each_request_field_is_one_option_with_its_description_and_default(name):
    params = _command(name).params
    for option in COMMANDS[name]:
        field = _field(option.path)
        matching = [p for p in params if set(p.opts) & set(option.names)]
        assert len(matching) == 1, option.path
        (param,) = matching
        assert param.help == escape(field.description), option.path  # escaped: rich reads [HY] as markup
        if option.path == ("storage",):  # the CLI keeps its studies, as the field's description says
            assert param.default == DEFAULT_STORAGE and DEFAULT_STORAGE in field.description
        elif field.is_required():  # the cluster's devices: no --gpus, no cluster
            assert param.default is None and option.path == ("cluster", "gpus")
        else:
            default = field.get_default(call_default_factory=True)
            assert param.default == getattr(default, "value", default), option.path
    names = [n for p in params for n in p.opts]
    assert len(names) == len(set(names))


def test_plan_reaches_every_request_field_but_the_clusters_catalogue_overrides():
    reached = {o.path for o in plan_cli.request_options()}
    unreached = _leaves(PlanRequest) - reached
    # `moeplan layout`/`memory` take these; `plan --gpu` names the cluster's device
    memory = {("cluster", "memory", f) for f in ("weight_bytes", "grad_bytes", "master_bytes", "moment_bytes",
                                                 "distributed_optimizer", "recompute", "recompute_modules",
                                                 "capacity_factor", "reserve_gib")}
    catalogue = {("cluster", f) for f in ("gpu", "bf16_flops", "fp8_flops", "hbm_tbps", "domain", "scaleup_gbps",
                                          "internode_gbps")}
    assert unreached == memory | catalogue


def test_plan_help_reads_at_80_columns(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    out = cli("plan", "--help")
    assert out.code == 0
    lines = out.out.splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in out.out
    for option in plan_cli.request_options():
        assert any(option.names[0] in line for line in lines), option.names  # never cut
    text = " ".join(line.strip("│ ") for line in lines)  # the help column, unwrapped
    assert "the [HY] law" in text and "[default: sqlite:///moeplan.db]" in text


def test_options_given_at_their_default_still_count_as_given(cli):
    """--mfu 0.4 is the default, and still only for --gpu-hours; --ep 8 with --gpus is kept, not replaced."""
    out = cli("plan", "--flops", "1e21", "--mfu", "0.4")
    assert out.code == 2 and "--mfu: only for --gpu-hours" in out.err
    out = cli("plan", "--gpus", "64", "--days", "3", "--ep", "8", "--max-d-hidden", "2048", "--max-experts", "32",
              "--storage", ":memory:", "--json")
    assert out.code == 0, out.err
    assert out.json()["request"]["expert_parallel"] == 8
