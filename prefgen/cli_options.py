"""Click options whose default, help text, type and allowed range come from a config model's field.

A config model is the one source of every default and every rule (as TRL's config dataclasses are for
their `HfArgumentParser`); the command line only names the flag. Use it on any config:

    class LabelConfig(BaseModel):
        concurrency: int = Field(default=16, ge=1, description="Judge calls in flight at once.")

    @cli.command()
    @option_from_field(LabelConfig, "concurrency", "--concurrency")
    def label(**options):
        config = config_from_options(LabelConfig, **options)

What a field gives the option:
- default: the field's default (`required=True` when it has none); shown in `--help` unless it is None;
- help: a pydantic `Field(description=...)`, or `field(metadata={"help": ...})` on a dataclass (TRL's way);
- type: `bool` becomes a flag (`--x/--no-x` when the default is True), a `Literal[...]` a `click.Choice`,
  `int` / `float` / `str` / `Path` the matching click type; `X | None` is treated as X;
- range: pydantic constraints (`ge`, `gt`, `le`, `lt`) are checked by pydantic when the option is parsed;
  a value outside them is click's usage error (exit code 2) naming the option and the range, e.g.
  `Invalid value for '--concurrency': must be >= 1 (got 0)`.
Keyword arguments override any of these (`type=click.Path(exists=True)`, `help=...`), and the parameter
name defaults to the field's name, so `config_from_options(Model, **options)` takes the command's kwargs.

`config_from_options` builds the model from the options the user gave (the model's own defaults fill the
rest, so `model_fields_set` says what was chosen), and turns rules that span several fields (model
validators) into the same usage error, naming the option the error belongs to. Every option made here is a
`FieldOption`: `literal_defaults` finds the options of a command line whose default came from anywhere else.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import annotated_types
import click
from click.core import ParameterSource
from pydantic import BaseModel, TypeAdapter, ValidationError

__all__ = ["FieldOption", "FieldSpec", "config_from_options", "field_spec", "given_flags", "literal_defaults",
           "option_from_field", "options_from_fields", "range_text"]

try:
    from click._utils import UNSET  # how click >= 8.3 marks a flag's "no default"
except ImportError:  # older click: a flag's default is False
    UNSET = None

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M")

_CLICK_TYPES: dict[Any, click.ParamType] = {int: click.INT, float: click.FLOAT, str: click.STRING}


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """What an option needs to know about one field of a config model."""

    name: str
    annotation: Any  # with `X | None` reduced to X
    default: Any  # `REQUIRED` when the field has no default
    help: str | None
    constraints: tuple[Any, ...]  # annotated_types bounds (Ge, Gt, Le, Lt) and other pydantic metadata


REQUIRED = object()


def _without_none(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def field_spec(model: type, name: str) -> FieldSpec:
    """The default, help, type and constraints of field `name` of a pydantic model or a dataclass."""
    if isinstance(model, type) and issubclass(model, BaseModel):
        info = model.model_fields[name]
        default = REQUIRED if info.is_required() else info.get_default(call_default_factory=True)
        return FieldSpec(name, _without_none(info.annotation), default, info.description, tuple(info.metadata))
    if dataclasses.is_dataclass(model):
        field = next(f for f in dataclasses.fields(model) if f.name == name)
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = REQUIRED
        annotation = typing.get_type_hints(model)[name]  # resolves `from __future__ import annotations`
        return FieldSpec(name, _without_none(annotation), default, field.metadata.get("help"), ())
    raise TypeError(f"{model!r} is neither a pydantic model nor a dataclass")


def range_text(constraints: tuple[Any, ...]) -> str | None:
    """`>= 1`, `> 0`, `in [0, 1]` ... from pydantic's bound constraints; None when there are none."""
    low = high = None
    for c in constraints:
        if isinstance(c, annotated_types.Ge):
            low = ("[", c.ge)
        elif isinstance(c, annotated_types.Gt):
            low = ("(", c.gt)
        elif isinstance(c, annotated_types.Le):
            high = ("]", c.le)
        elif isinstance(c, annotated_types.Lt):
            high = (")", c.lt)
    if low and high:
        return f"in {low[0]}{low[1]:g}, {high[1]:g}{high[0]}"
    if low:
        return f"{'>=' if low[0] == '[' else '>'} {low[1]:g}"
    if high:
        return f"{'<=' if high[0] == ']' else '<'} {high[1]:g}"
    return None


def _validator(spec: FieldSpec) -> Callable[[click.Context, click.Parameter, Any], Any] | None:
    """A click callback that checks a parsed value against the field's pydantic constraints."""
    if not spec.constraints:
        return None
    adapter = TypeAdapter(typing.Annotated[spec.annotation, *spec.constraints])

    def check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None:
            return value
        try:
            return adapter.validate_python(value)
        except ValidationError as exc:
            error = _plain_error(exc)
        raise click.BadParameter(_complaint(spec.constraints, error), ctx=ctx, param=param)

    return check


def _click_type(annotation: Any) -> click.ParamType | None:
    if typing.get_origin(annotation) is Literal:
        return click.Choice([str(a) for a in typing.get_args(annotation)])
    if annotation is Path:
        return click.Path(path_type=Path)
    return _CLICK_TYPES.get(annotation)


class FieldOption(click.Option):
    """An option made by `option_from_field`: it knows the config field its default and help come from."""

    def __init__(self, *args: Any, field: FieldSpec, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.field = field


def option_from_field(model: type, name: str, *param_decls: str, **overrides: Any) -> Callable[[F], F]:
    """`click.option(*param_decls, ...)` with default, help, type and range taken from `model.name`.

    `param_decls` are the flags (`"--concurrency"`, `"-c"`); the parameter is passed to the command as
    `name`. For a bool field give one flag: `--x` is a flag when the default is False, and
    `--x/--no-x` is built when it is True.
    """
    spec = field_spec(model, name)
    kwargs: dict[str, Any] = {"help": spec.help}
    if spec.default is REQUIRED:
        kwargs["required"] = True
    else:
        kwargs["default"] = spec.default
        kwargs["show_default"] = spec.default is not None and spec.annotation is not bool
    decls = list(param_decls)
    if spec.annotation is bool:
        if spec.default is True:
            flag = decls[0].lstrip("-")
            decls[0] = f"--{flag}/--no-{flag}"
        else:
            kwargs["is_flag"] = True
    else:
        click_type = _click_type(spec.annotation)
        if click_type is not None:
            kwargs["type"] = click_type
        callback = _validator(spec)
        if callback is not None:
            kwargs["callback"] = callback
    if overrides.get("multiple") and not spec.default and spec.default is not REQUIRED:
        kwargs["default"] = None  # an empty list or dict: the option given no times
    kwargs.update(overrides)
    return click.option(*decls, name, cls=FieldOption, field=spec, **kwargs)


def options_from_fields(model: type[BaseModel], flag: Callable[[str], str]) -> Callable[[F], F]:
    """`option_from_field` for every field of `model`, in field order, the flag of each named by `flag(name)`
    (e.g. a nested config's fields as `--weight-<name>`)."""

    def decorate(command: F) -> F:
        for name in reversed(list(model.model_fields)):
            command = option_from_field(model, name, flag(name))(command)
        return command

    return decorate


def _plain_error(exc: ValidationError) -> dict[str, Any]:
    """The first error as plain data, so the usage error can be raised after the `except` block: chained
    to pydantic's error (and the frames its traceback holds), it kept duckdb objects alive until exit,
    where duckdb's bindings reported them as leaks."""
    return dict(exc.errors(include_url=False, include_context=False)[0])


def _complaint(constraints: tuple[Any, ...], error: Any) -> str:
    """`must be >= 1 (got 0)` for a bound; pydantic's own message for any other rule."""
    rule = range_text(constraints)
    if rule is not None and error["type"] in _BOUND_ERRORS:
        return f"must be {rule} (got {error['input']})"
    return f"{error['msg'].removeprefix('Value error, ')} (got {error['input']!r})"


_BOUND_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def _option_name(field: str) -> str:
    """The flag that sets `field` in the command being run (the field's name when no option sets it)."""
    ctx = click.get_current_context(silent=True)
    for param in ctx.command.params if ctx else ():
        if param.name == field and param.opts:
            return max(param.opts, key=len)
    return field


def config_from_options(model: type[M], **options: Any) -> M:
    """`model(**options)`, with a validation error turned into one usage error line (exit code 2).

    Options built by `option_from_field` are checked as they are parsed; this catches the rest: options
    declared by hand, and rules over several fields (a model validator's message is shown as it is).
    Options left at their default are not passed: the model's default is the same value, and the model then
    knows which fields the user set (`model_fields_set`), e.g. to tell a chosen setting from a default.
    """
    options = _given(model, options)
    try:
        return model(**options)
    except ValidationError as exc:
        error = _plain_error(exc)
    if not error["loc"]:
        raise click.UsageError(error["msg"].removeprefix("Value error, "))
    field = str(error["loc"][0])
    fields = getattr(model, "model_fields", {})
    constraints = tuple(fields[field].metadata) if field in fields else ()
    raise click.BadParameter(_complaint(constraints, error), param_hint=f"'{_option_name(field)}'")


def _given(model: type, options: dict[str, Any]) -> dict[str, Any]:
    """`options` less those click filled from a default equal to the field's own (outside a click command: all)."""
    ctx = click.get_current_context(silent=True)
    fields = getattr(model, "model_fields", None)
    if ctx is None or fields is None:
        return options
    kept = {}
    for name, value in options.items():
        info = fields.get(name)
        defaulted = ctx.get_parameter_source(name) is ParameterSource.DEFAULT
        if defaulted and info is not None and not info.is_required() and \
                value == info.get_default(call_default_factory=True):
            continue
        kept[name] = value
    return kept


def given_flags(ctx: click.Context, *names: str) -> list[str]:
    """The flags of the parameters `names` that the user gave (on the command line or from the environment)."""
    params = {p.name: p for p in ctx.command.params}
    return [max(params[n].opts, key=len) for n in names
            if ctx.get_parameter_source(n) not in (None, ParameterSource.DEFAULT)]


def _neutral(option: click.Option) -> bool:
    """A default that is no value: none at all, a flag left off, a count at 0."""
    default = option.default
    if default is None or default is UNSET:  # click marks a flag's "no default" with a sentinel
        return True
    if option.count:
        return default == 0
    return option.is_flag and not option.secondary_opts and default is False


def literal_defaults(command: click.Command, path: str = "") -> list[str]:
    """Options of `command` (and of its subcommands) with a default that no config field gave: each is
    `"COMMAND --flag: default"`. An option from a field must keep the field's default (or be required)."""
    found = []
    name = f"{path} {command.name}".strip()
    for param in command.params:
        if not isinstance(param, click.Option) or _neutral(param):
            continue
        if isinstance(param, FieldOption) and (param.required or param.default == param.field.default):
            continue
        found.append(f"{name} {max(param.opts, key=len)}: {param.default!r}")
    for sub in getattr(command, "commands", {}).values():
        found += literal_defaults(sub, name)
    return found
