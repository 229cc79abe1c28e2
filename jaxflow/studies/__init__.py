"""Studies: library pipelines that draw data, fit denoisers, generate and estimate over
independent repetitions, callable without the command line. Each returns arrays and
the estimators' results; the presets of [`jaxflow.experiments`][] run them."""

from ._relative_distance import (
    relative_distance_arrays as relative_distance_arrays,
    relative_distance_sweep as relative_distance_sweep,
    RelativeDistanceSweep as RelativeDistanceSweep,
    sweep_inputs as sweep_inputs,
)
