"""Preset parameters: declared once with a type, a default, a help text and a rule, from
which the validation, the `--set` and `--config` parsing, the help of `jaxflow run` and
the catalogue test's bad values all follow."""

import abc
import dataclasses
import math
import re
import textwrap
import types
import typing
from typing import Any


class ConfigError(ValueError):
    """A parameter that names no field, does not parse, or breaks its rule: one line that
    names the parameter and says what to do, never a traceback."""


# --------------------------------------------------------------------------------------
# Rules on a parameter's value.


class AbstractRule(abc.ABC):
    """A rule that a parameter's value (each item of a tuple) must obey."""

    @abc.abstractmethod
    def holds(self, value: Any) -> bool:
        """Whether `value` obeys the rule."""

    @abc.abstractmethod
    def describe(self) -> str:
        """The rule in words, completing "must be ...": `positive`, `in (0, 1)`."""

    @abc.abstractmethod
    def violations(self) -> tuple[Any, ...]:
        """Values of the parameter's type that break the rule (for the catalogue test)."""


@dataclasses.dataclass(frozen=True)
class Interval(AbstractRule):
    """A number in an interval: `low` and `high` (either may be `None`), each end open or
    closed."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def holds(self, value):
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return False
        return True

    def describe(self):
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {left}{self.low:g}, {self.high:g}{right}"

    def violations(self):
        bad = []
        if self.low is not None:
            bad.append(self.low if self.low_open else self.low - 1)
        if self.high is not None:
            bad.append(self.high if self.high_open else self.high + 1)
        return tuple(bad)


positive = Interval(0.0, None, low_open=True)
non_negative = Interval(0.0, None)
unit_open = Interval(0.0, 1.0, low_open=True, high_open=True)


def at_least(k: int | float) -> Interval:
    return Interval(float(k), None)


def between(low: float, high: float) -> Interval:
    return Interval(float(low), float(high))


@dataclasses.dataclass(frozen=True)
class _Spec:
    """What `param` stores in a field's metadata."""

    help: str
    rule: AbstractRule | None
    # For tuples: may the tuple be empty? must its items be distinct?
    nonempty: bool
    distinct: bool


def param(
    default: Any,
    help: str,
    *,
    rule: AbstractRule | None = None,
    nonempty: bool = True,
    distinct: bool = False,
) -> Any:
    """A preset parameter: its default, the help text `jaxflow run --help` shows, and the
    `rule` its value (each item, for a tuple) obeys.

    The field's type annotation decides the parsing: `int` (an exact integer: `2.5` and
    `1e400` are refused), `float` (finite), `bool`, a `Literal` of choices, a tuple of
    one of these (`nonempty` by default, `distinct` on request), or any of these
    `| None`.
    """
    if isinstance(default, list | dict | set):
        raise TypeError("Preset defaults must be immutable; use a tuple.")
    spec = _Spec(help, rule, nonempty, distinct)
    return dataclasses.field(default=default, metadata={"jaxflow": spec})


def spec_of(field: dataclasses.Field) -> _Spec:
    return field.metadata.get("jaxflow", _Spec(field.metadata.get("help", ""), None, True, False))


# --------------------------------------------------------------------------------------
# Values: from text (`--set`), from JSON (`--config`) and from Python.

_INTEGER = re.compile(r"[+-]?\d+")


def _number(value: Any, kind: type, name: str) -> Any:
    """`value` as an exact `int` or a finite `float`, or a `ConfigError` naming `name`."""
    shown = value.strip() if isinstance(value, str) else value
    if isinstance(value, bool):
        raise ConfigError(f"{name}={value}: expected a number.")
    if isinstance(value, str) and kind is int and _INTEGER.fullmatch(shown):
        return int(shown)
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{name}={shown}: expected {_article(kind)}.") from None
    if not math.isfinite(number):
        raise ConfigError(f"{name}={shown}: expected a finite number.")
    if kind is float:
        return number
    if isinstance(value, int):
        return int(value)
    if not number.is_integer():
        raise ConfigError(f"{name}={shown}: expected an integer, not a fraction.")
    return int(number)


def _article(kind: type) -> str:
    return "an integer" if kind is int else "a number"


def unwrap_optional(kind: Any) -> tuple[Any, bool]:
    """The type inside an optional and whether `None` is allowed."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        options = [k for k in typing.get_args(kind) if k is not type(None)]
        return options[0], len(options) < len(typing.get_args(kind))
    return kind, False


def convert(value: Any, kind: Any, name: str) -> Any:
    """`value` (text, JSON or Python) as the field type `kind`, or a `ConfigError`."""
    inner, optional = unwrap_optional(kind)
    if optional and (value is None or (isinstance(value, str) and value.lower() == "none")):
        return None
    if value is None:
        raise ConfigError(f"{name}=none: a value is required.")
    origin = typing.get_origin(inner)
    if origin is tuple:
        (item, *_) = typing.get_args(inner)
        if isinstance(value, str):
            value = [t for t in value.split(",") if t.strip()]
        elif not isinstance(value, list | tuple):
            value = [value]
        return tuple(convert(v, item, name) for v in value)
    if origin is typing.Literal:
        choices = typing.get_args(inner)
        if value not in choices:
            raise ConfigError(f"{name}={value}: choose one of {', '.join(map(str, choices))}.")
        return value
    if inner is bool:
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in ("true", "yes", "on", "1"):
            return True
        if text in ("false", "no", "off", "0"):
            return False
        raise ConfigError(f"{name}={value}: expected true or false.")
    if inner in (int, float):
        return _number(value, inner, name)
    if inner is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}={value!r}: expected text.")
        return value
    raise TypeError(f"parameter {name} has an unsupported type {kind}.")


def check_field(preset: Any, field: dataclasses.Field, kind: Any) -> Any:
    """The value of `field` in `preset` converted to the field's type (`30.0` for an
    integer becomes `30`, a list a tuple), or a `ConfigError` naming the field when it
    has the wrong type or breaks its rule."""
    name = field.name
    converted = convert(getattr(preset, name), kind, name)
    spec = spec_of(field)
    items = converted if isinstance(converted, tuple) else (converted,)
    if isinstance(converted, tuple):
        if spec.nonempty and not items:
            raise ConfigError(f"{name}: give at least one value.")
        if spec.distinct and len(set(items)) != len(items):
            raise ConfigError(f"{name}={show(converted)}: the values must be distinct.")
    if converted is not None and spec.rule is not None:
        for item in items:
            if not spec.rule.holds(item):
                raise ConfigError(f"{name}={show(item)}: must be {spec.rule.describe()}.")
    return converted


def bad_values(field: dataclasses.Field, kind: Any) -> tuple[str, ...]:
    """Command-line values that `field` must refuse: unparseable text, a fraction for an
    integer, non-finite numbers, a choice outside the allowed ones, an empty tuple, and
    every violation of the field's rule."""
    inner, optional = unwrap_optional(kind)
    spec = spec_of(field)
    origin = typing.get_origin(inner)
    bad = ["@"]
    item = typing.get_args(inner)[0] if origin is tuple else inner
    if origin is tuple and spec.nonempty:
        bad.append(",")
    if typing.get_origin(item) is typing.Literal:
        bad.append("not-a-choice")
    elif item is bool:
        bad.append("maybe")
    elif item in (int, float):
        bad += ["nan", "inf", "1e400"]
        if item is int:
            bad.append("2.5")
    if spec.rule is not None:
        bad += [show(v) for v in spec.rule.violations()]
    literal_none = typing.get_origin(item) is typing.Literal and "none" in typing.get_args(item)
    if not optional and not literal_none:
        bad.append("none")
    return tuple(bad)


def type_name(kind: Any) -> str:
    """A field type as `--set` reads it: `float`, `a|b` for a choice, `float,...` for a
    comma-separated tuple, `float or none` for an optional value."""
    inner, optional = unwrap_optional(kind)
    if optional:
        return f"{type_name(inner)} or none"
    origin = typing.get_origin(inner)
    if origin is tuple:
        return f"{type_name(typing.get_args(inner)[0])},..."
    if origin is typing.Literal:
        return "|".join(map(str, typing.get_args(inner)))
    return getattr(inner, "__name__", str(inner).replace("typing.", ""))


def describe(preset_cls: type, width: int = 88) -> str:
    """The preset's parameters with their types, defaults, rules and help, one per
    (wrapped) line."""
    hints = typing.get_type_hints(preset_cls)
    lines = []
    for f in dataclasses.fields(preset_cls):
        spec = spec_of(f)
        rule = f"; must be {spec.rule.describe()}" if spec.rule is not None else ""
        head = f"  {f.name} ({type_name(hints[f.name])}, default {show(f.default)}{rule}): "
        lines.append(
            textwrap.fill(
                head + spec.help, width, subsequent_indent=" " * 6, break_on_hyphens=False
            )
        )
    return "\n".join(lines)


def show(value: Any) -> str:
    # As the user would type it after --set.
    if isinstance(value, tuple):
        return ",".join(map(show, value))
    if isinstance(value, float):
        return f"{value:g}" if math.isfinite(value) else str(value)
    return "none" if value is None else str(value)
