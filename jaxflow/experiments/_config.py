import dataclasses
import textwrap
import types
import typing
from typing import Any

from ._base import AbstractPreset


class ConfigError(ValueError):
    """A `--set key=value` that names no field or does not parse; one line, no traceback."""


def _parse(text: str, kind: Any, key: str) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [k for k in typing.get_args(kind) if k is not type(None)]
        if text.lower() == "none":
            return None
        return _parse(text, options[0], key)
    if origin is tuple:
        (item, *_) = typing.get_args(kind)
        return tuple(_parse(t.strip(), item, key) for t in text.split(",") if t.strip())
    if origin is typing.Literal:
        choices = typing.get_args(kind)
        if text not in choices:
            raise ConfigError(f"--set {key}={text}: choose one of {', '.join(map(str, choices))}.")
        return text
    if kind is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"--set {key}={text}: expected true or false.")
    try:
        return kind(float(text)) if kind is int and "e" in text.lower() else kind(text)
    except ValueError:
        raise ConfigError(f"--set {key}={text}: expected {kind.__name__}.") from None


def apply_overrides(preset: AbstractPreset, assignments: list[str]) -> AbstractPreset:
    """Return `preset` with `key=value` assignments applied, parsed by each field's type.

    **Raises:** `ConfigError` with a one-line message naming the valid keys or values.
    """
    fields = {f.name: f for f in dataclasses.fields(preset)}
    hints = typing.get_type_hints(type(preset))
    changes = {}
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep:
            raise ConfigError(f"--set {assignment!r}: expected key=value.")
        if key not in fields:
            raise ConfigError(
                f"--set {key}: {preset.name} has no parameter {key!r}; "
                f"valid keys: {', '.join(fields)}."
            )
        changes[key] = _parse(text, hints[key], key)
    try:
        return dataclasses.replace(preset, **changes)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{preset.name}: {e}") from None


def type_name(kind: Any) -> str:
    """A field type as `--set` reads it: `float`, `a|b` for a choice, `float,...` for a
    comma-separated tuple, `float or none` for an optional value."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [k for k in typing.get_args(kind) if k is not type(None)]
        return f"{type_name(options[0])} or none"
    if origin is tuple:
        return f"{type_name(typing.get_args(kind)[0])},..."
    if origin is typing.Literal:
        return "|".join(map(str, typing.get_args(kind)))
    return getattr(kind, "__name__", str(kind).replace("typing.", ""))


def describe(preset_cls: type[AbstractPreset], width: int = 88) -> str:
    """The preset's parameters, defaults and help, one per (wrapped) line."""
    hints = typing.get_type_hints(preset_cls)
    lines = []
    for f in dataclasses.fields(preset_cls):
        head = f"  {f.name} ({type_name(hints[f.name])}, default {_show(f.default)}): "
        text = head + f.metadata.get("help", "")
        lines.append(textwrap.fill(text, width, subsequent_indent=" " * 6, break_on_hyphens=False))
    return "\n".join(lines)


def _show(value: Any) -> str:
    # As the user would type it after --set.
    if isinstance(value, tuple):
        return ",".join(map(_show, value))
    return "none" if value is None else str(value)
