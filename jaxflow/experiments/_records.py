"""The configuration of a run as stored beside its results, and back."""

import dataclasses
import json
import os
import platform
import typing
from importlib import metadata
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ._params import ConfigError, convert
from ._preset import AbstractPreset


def machine_description() -> dict[str, str]:
    """The machine a result came from: platform, processor count and JAX devices."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": str(os.cpu_count()),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxflow": metadata.version("jaxflow"),
        "backend": jax.default_backend(),
        "devices": ", ".join(d.device_kind for d in jax.devices()),
        "x64": str(jax.config.read("jax_enable_x64")),
    }


def jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def config_record(preset: AbstractPreset) -> dict:
    """The full configuration of a run, with the machine, as stored in `config.json`."""
    params = {k: jsonable(v) for k, v in dataclasses.asdict(preset).items()}
    return {"preset": preset.name, "params": params, "machine": machine_description()}


def preset_from_params(cls: type[AbstractPreset], params: Any, source: str) -> AbstractPreset:
    """`cls` with `params` (a mapping from JSON or TOML) converted field by field.

    **Raises:** `ConfigError`, one line naming `source` and the parameter, for a
    mapping that is not one, an unknown key, a wrong type or a value that breaks a rule.
    """
    if not isinstance(params, dict):
        raise ConfigError(
            f"{source}: expected an object of parameters, got {type(params).__name__}."
        )
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise ConfigError(
            f"{source}: {cls.name} has no parameter {unknown[0]!r}; "
            f"valid keys: {', '.join(fields)}."
        )
    try:
        values = {k: convert(v, hints[k], k) for k, v in params.items()}
        return cls(**values)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def read_config(path: Path, cls: type[AbstractPreset] | None = None) -> AbstractPreset:
    """The preset stored in a results folder's `config.json` (or in the file `path`):
    a preset of the catalogue, or of class `cls` (a preset of one's own).

    **Raises:** `ConfigError` with one line for a file that is missing, unreadable, not
    JSON, not a record, for an unknown preset, or for a bad parameter.
    """
    from ._catalogue import get_preset

    path = Path(path)
    file = path / "config.json" if path.is_dir() else path
    try:
        record = json.loads(file.read_text())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read {file}: {e.strerror}.") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: {file} is not JSON ({e}).") from None
    if not isinstance(record, dict) or "preset" not in record:
        raise ConfigError(f"{path}: {file} is not a jaxflow config (no 'preset' key).")
    if cls is None or cls.name != record["preset"]:
        try:
            cls = get_preset(record["preset"])
        except KeyError as e:
            raise ConfigError(f"{path}: {e.args[0]}") from None
    return preset_from_params(cls, record.get("params", {}), str(file))
