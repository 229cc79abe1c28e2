"""Reproducible experiments: presets (frozen dataclasses), a registry, and the writing
of tidy result tables, configurations and figures."""

from ._base import AbstractPreset as AbstractPreset, param as param, Results as Results
from ._config import (
    apply_overrides as apply_overrides,
    ConfigError as ConfigError,
    describe as describe,
)
from ._io import (
    config_record as config_record,
    format_table as format_table,
    machine_description as machine_description,
    preset_from_record as preset_from_record,
    read_config as read_config,
    write_results as write_results,
)
from ._pieces import Pieces as Pieces
from ._registry import get_preset as get_preset, PRESETS as PRESETS, register as register


# Importing the preset modules registers them.
from . import _orthogonal as _orthogonal  # noqa: E402  isort: skip
from . import _linear_distance as _linear_distance  # noqa: E402  isort: skip
from . import _linear_steps as _linear_steps  # noqa: E402  isort: skip
from . import _linear_transition as _linear_transition  # noqa: E402  isort: skip
from . import _stability as _stability  # noqa: E402  isort: skip
