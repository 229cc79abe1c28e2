"""Smoke tests of the presets `linear-transition` and `linear-transition-vs-d` on tiny
configurations: they run, write their files, and their rows agree with the estimators."""

import dataclasses

import jax.random as jr
import numpy as np
import pytest
from jaxflow.experiments import apply_overrides, ConfigError, get_preset, write_results
from jaxflow.studies import relative_distance_sweep
from matplotlib.figure import Figure


def test_linear_transition_runs(tmp_path):
    preset = dataclasses.replace(
        get_preset("linear-transition")().quick(),
        d=6,
        ns=(3, 8),
        reference_size=40,
        reps=6,
        resamples=50,
        chunk=4,
    )
    results = preset.run(tmp_path, progress=False)
    assert len(results.rows) == 2 * 2 * 2  # arithmetic x convention x n
    assert isinstance(results.figures["transition"], Figure)
    written = {p.name for p in write_results(preset, results, tmp_path)}
    assert {"transition.png", "results.csv", "config.json", "arrays.npz"} <= written
    exact = [r for r in results.rows if r["arithmetic"] == "exact"]
    reference = [r for r in results.rows if r["arithmetic"] == "reference"]
    for r in results.rows:
        assert 0 <= r["p_lower"] <= r["p_positive"] <= r["p_upper"] <= 1
    # Both arithmetics saw the same draws; at d = 6 rounding decides no sign.
    assert all(r["sign_agrees_with_exact"] == 1.0 for r in reference)
    # The rows are the estimator's numbers.
    sweep = relative_distance_sweep(
        (3, 8),
        key=jr.split(jr.key(preset.seed))[0],
        d=6,
        repetitions=6,
        reference_size=40,
        chunk_size=4,
    )
    np.testing.assert_allclose(
        [r["p_positive"] for r in exact if r["convention"] == "consistent"],
        np.asarray(sweep.probability().fraction)[:, 0],
    )


def test_linear_transition_vs_d_runs(tmp_path):
    preset = dataclasses.replace(
        get_preset("linear-transition-vs-d")().quick(),
        ds=(4,),
        n_over_d=(0.7, 1.0, 2.0, 4.0),
        reference_size=None,
        reps=6,
        resamples=50,
    )
    results = preset.run(tmp_path, progress=False)
    assert len(results.rows) == 2 * 2  # convention x crossing
    assert isinstance(results.figures["transition_vs_d"], Figure)
    for r in results.rows:
        if np.isfinite(r["n_star"]):
            assert 0.75 * r["d"] <= r["n_star"] <= 4.0 * r["d"]
            np.testing.assert_allclose(r["n_star_over_d"], r["n_star"] / r["d"])


def test_reference_per_d_sizes_the_reference_sample_at_each_d(tmp_path):
    preset = dataclasses.replace(
        get_preset("linear-transition-vs-d")().quick(),
        ds=(3, 5),
        n_over_d=(1.0, 3.0),
        reference_per_d=8,
        reps=4,
        resamples=20,
    )
    results = preset.run(tmp_path, progress=False)
    assert {(r["d"], r["reference_size"]) for r in results.rows} == {(3, 24), (5, 40)}
    # The signs are the estimator's at N_O = 8 d, with the preset's key for that d.
    sweep = relative_distance_sweep(
        (5, 15),
        key=jr.split(jr.fold_in(jr.key(preset.seed), 5))[0],
        d=5,
        repetitions=4,
        reference_size=40,
        chunk_size=preset.chunk,
    )
    np.testing.assert_array_equal(results.arrays["d5_exact_sign"], np.asarray(sweep.relative.sign))
    for bad in (dict(reference_per_d=0), dict(reference_size=None)):
        with pytest.raises(ValueError, match="reference_per_d"):
            dataclasses.replace(preset, **bad).run(tmp_path, progress=False)


def test_overrides(tmp_path):
    preset = apply_overrides(
        get_preset("linear-transition")(), ["arithmetic=exact", "reference_size=none", "fine=true"]
    )
    assert preset.arithmetic == ("exact",) and preset.reference_size is None
    assert 10 in preset.grid() and 1000 in preset.grid() and 75 in preset.grid()
    with pytest.raises(ConfigError, match="gram"):
        apply_overrides(preset, ["gram=float16"])
    with pytest.raises(ValueError, match="arithmetic"):
        dataclasses.replace(preset, arithmetic=("float16",)).run(tmp_path, progress=False)
