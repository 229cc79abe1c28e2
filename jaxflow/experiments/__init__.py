"""Reproducible experiments: the preset contract, the runner that owns the cell loop,
resumable pieces and results folders, sweeps over parameter grids, and the catalogue of
presets, one folder per paper ([`jaxflow.experiments.zeno`][],
[`jaxflow.experiments.halder`][])."""

from ._catalogue import get_preset as get_preset, PRESETS as PRESETS  # noqa: I001  (presets import the engine above)
from ._params import (
    AbstractRule as AbstractRule,
    at_least as at_least,
    between as between,
    ConfigError as ConfigError,
    describe as describe,
    Interval as Interval,
    non_negative as non_negative,
    param as param,
    positive as positive,
    unit_open as unit_open,
)
from ._preset import (
    AbstractPreset as AbstractPreset,
    Footprint as Footprint,
    Tabulated as Tabulated,
)
from ._records import (
    config_record as config_record,
    machine_description as machine_description,
    preset_from_params as preset_from_params,
    read_config as read_config,
)
from ._runner import read_arrays as read_arrays, redraw as redraw, Run as Run, run as run
from ._sweep import (
    parse_grid as parse_grid,
    parse_shard as parse_shard,
    run_sweep as run_sweep,
    status as status,
    Sweep as Sweep,
)
