"""CLI options made from a pydantic model's fields: each option's type, default and help are its field's,
so `plan` and `frontier` never re-type what `PlanRequest` already says."""

from __future__ import annotations

import functools
import inspect
import operator
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, get_args, get_origin

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from rich.markup import escape


@dataclass(frozen=True)
class FieldOption:
    """One field of a request model as one option: `path` says where its value goes in the request."""

    path: tuple[str, ...]
    field: FieldInfo
    names: tuple[str, ...]
    panel: str
    annotation: Any = None  # what the CLI parses, when not the field's own type (then the command converts)
    default: Any = ...      # the CLI's default, when it differs from the field's (said in the description)

    @property
    def parameter_name(self) -> str:
        return "__".join(self.path)

    @property
    def value_default(self) -> Any:
        """The CLI's default: the field's (an enum's value), or None for a field required in an optional
        sub-model (the cluster's devices: no --gpus, no cluster)."""
        if self.default is not ...:
            return self.default
        if self.field.is_required():
            return None
        default = self.field.get_default(call_default_factory=True)
        return default.value if isinstance(default, Enum) else default

    def parameter(self) -> inspect.Parameter:
        annotation = self.annotation if self.annotation is not None else _parsed(self.field.annotation)
        if self.field.is_required():
            annotation = annotation | None
        # rich help reads [brackets] as markup: "[HY] G = n_k + n_s" must print as written
        option = typer.Option(*self.names, help=escape(self.field.description or ""), rich_help_panel=self.panel)
        return inspect.Parameter(self.parameter_name, inspect.Parameter.KEYWORD_ONLY, default=self.value_default,
                                 annotation=Annotated[annotation, option])


def _parsed(annotation):
    """The type typer parses for a field: pydantic's constraints (PositiveInt, ...) dropped, they are checked
    when the request is built, with the field's own message."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _parsed(get_args(annotation)[0])
    if origin in (types.UnionType, typing.Union):
        return functools.reduce(operator.or_, (_parsed(a) for a in get_args(annotation)))
    return annotation


def options_of(model: type[BaseModel], panels: dict[str, str], names: dict[str, tuple[str, ...]],
               overrides: dict[str, dict] | None = None, prefix: tuple[str, ...] = ()) -> list[FieldOption]:
    """An option per field of `model` that `panels` (field name -> help panel) names, in the model's order.

    `names` maps the fields whose option is not --field-name; `overrides` maps a field to FieldOption's
    `annotation` and `default` where the CLI parses or defaults it differently."""
    overrides = overrides or {}
    return [FieldOption((*prefix, name), field, names.get(name, ("--" + name.replace("_", "-"),)), panels[name],
                        **overrides.get(name, {}))
            for name, field in model.model_fields.items() if name in panels]


class WithOptions:
    """`command`, whose `**fields` receive the options' values, with a signature typer reads them from.

    The options are made when typer first reads the signature, inside moeplan's main (where Ctrl-C and errors
    become one line), not when the CLI is imported: the request's module imports the planner and optuna."""

    def __init__(self, command, options: Callable[[], list[FieldOption]]):
        functools.update_wrapper(self, command)
        self._command, self._options = command, options

    @functools.cached_property
    def __signature__(self) -> inspect.Signature:
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
               for p in inspect.signature(self._command, eval_str=True).parameters.values()
               if p.kind is not inspect.Parameter.VAR_KEYWORD]
        # the fields first: help panels appear in the order of their first option, the request's order
        return inspect.Signature([*(o.parameter() for o in self._options()), *own])

    def __call__(self, *args, **kwargs):
        return self._command(*args, **kwargs)


def nested(options: list[FieldOption], values: dict[str, Any]) -> dict[str, Any]:
    """The options' values as the request's (nested) fields: {"priors": {"max_layers": 64}, ...}."""
    out: dict[str, Any] = {}
    for o in options:
        node = out
        for key in o.path[:-1]:
            node = node.setdefault(key, {})
        node[o.path[-1]] = values[o.parameter_name]
    return out
