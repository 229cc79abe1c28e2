"""The presets of SCIENCE.md Z6.1, Z6.2 and Z6.5 at their quick sizes: the claims their
rows carry, against the oracles of `helpers.py`, and their reproducibility."""

import dataclasses
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import jax.random as jr
import jaxflow as jf
import numpy as np
import pytest
from helpers import exact_probability_flow, nearest_vertex
from jaxflow.estimators import EndpointClass
from jaxflow.experiments import (
    _orthogonal,
    apply_overrides,
    ConfigError,
    get_preset,
    read_config,
    write_results,
)
from tqdm.auto import tqdm


CLASSES = [c.name.lower() for c in EndpointClass]
_CACHE = {}
_RUNS = tempfile.TemporaryDirectory()  # the cached runs' results folders


def quick(name: str, **changes):
    """A quick run, shared between tests (the presets are deterministic)."""
    preset = dataclasses.replace(get_preset(name)().quick(), **changes)
    if preset not in _CACHE:
        out = Path(_RUNS.name) / str(len(_CACHE))
        _CACHE[preset] = preset.run(out, progress=False)
    return preset, _CACHE[preset]


def by_class(rows):
    return {r["class"]: r for r in rows}


def test_score_flow_ends_at_virtual_points():
    preset, results = quick("orthogonal-score-flow")
    rows = results.rows
    assert [r["class"] for r in rows] == CLASSES
    assert sum(r["count"] for r in rows) == preset.num_starts
    assert sum(r["fraction"] for r in rows) == pytest.approx(1.0)
    for r in rows:
        assert 0 <= r["lower"] <= r["fraction"] <= r["upper"] <= 1
    classes = by_class(rows)
    # SCIENCE.md Z6.2: the score flow ends almost always at virtual points.
    assert classes["virtual"]["lower"] > 0.99
    assert classes["training"]["upper"] < 0.01
    # Z3: every endpoint is in the class of the vertex nearest its start.
    assert all(r["agreement"] == 1.0 and r["fraction"] == r["exact_fraction"] for r in rows)


def test_score_flow_trajectories_reach_the_nearest_vertex():
    preset, results = quick("orthogonal-score-flow")
    arrays = results.arrays
    _, vertex = nearest_vertex(arrays["sample_starts"], arrays["points"])
    assert np.max(np.abs(np.asarray(arrays["sample_endpoints"]) - vertex)) < 0.05
    path = np.asarray(arrays["sample_trajectories"])
    assert path.shape == (preset.trajectories, len(arrays["sample_ts"]), preset.d)
    np.testing.assert_allclose(path[:, 0], arrays["sample_starts"])


def test_starts_are_recomputed_from_the_saved_key():
    _, results = quick("orthogonal-score-flow")
    arrays = results.arrays
    key = jr.wrap_key_data(jnp.asarray(arrays["key"]))
    count = len(arrays["sample_starts"])
    noise = jax.vmap(
        lambda i: jr.normal(jr.fold_in(key, i), (arrays["points"].shape[1],), jnp.float64)
    )(jnp.arange(count))
    expected = np.asarray(arrays["start_centre"]) + float(arrays["start_scale"]) * np.asarray(noise)
    np.testing.assert_allclose(arrays["sample_starts"], expected, rtol=0, atol=1e-12)


def test_probability_flow_matches_the_exact_solution():
    preset, results = quick("orthogonal-probability-flow")
    rows = results.rows
    assert len(rows) == 5 * len(preset.sigma_max)
    alpha = np.sqrt(preset.d)
    arrays = results.arrays
    for k, sigma_max in enumerate(preset.sigma_max):
        sub = [r for r in rows if r["sigma_max"] == sigma_max]
        assert [r["class"] for r in sub] == CLASSES
        assert sum(r["fraction"] for r in sub) == pytest.approx(1.0)
        for r in sub:
            assert r["max_error"] < 1e-8 and r["agreement"] == 1.0
            assert r["fraction"] == r["exact_fraction"]
        exact = exact_probability_flow(
            arrays["sample_starts"],
            arrays["points"],
            alpha=alpha,
            sigma_max=sigma_max,
            sigma_min=preset.sigma_min,
        )
        np.testing.assert_allclose(arrays["sample_endpoints"][k], exact, atol=1e-8)


def test_probability_flow_started_early_ends_at_vertices():
    # SCIENCE.md Z4: vertices when started early (large sigma_max), manifold points when late.
    preset, results = quick("orthogonal-probability-flow")
    vertex = [
        sum(
            r["fraction"]
            for r in results.rows
            if r["sigma_max"] == s and r["class"] in ("training", "virtual", "origin")
        )
        for s in preset.sigma_max
    ]
    assert np.all(np.diff(vertex) >= -0.02)
    assert vertex[0] < 0.01 < 0.5 < vertex[-1]
    first = by_class(r for r in results.rows if r["sigma_max"] == preset.sigma_max[0])
    assert first["manifold"]["fraction"] > 0.99


def test_blocks_do_not_change_the_numbers(tmp_path):
    # The block loop pads the last block and trims it: the tallies of 2000 starts in one
    # block and in blocks of 700 agree exactly. (The exact solution stands in for the flow,
    # whose own chunking is tested with the flows.)
    preset = get_preset("orthogonal-probability-flow")().quick()
    setup = _orthogonal._setup(preset)
    sigma_max, sigma_min = jnp.asarray(0.085), jnp.asarray(preset.sigma_min)
    exact = lambda y0: jf.flows.exact_probability_flow(
        setup.denoiser, y0, sigma_max=sigma_max, sigma_min=sigma_min
    )
    pieces = jf.experiments.Pieces(tmp_path, preset)
    with tqdm(disable=True) as bar:
        whole = _orthogonal._tally(exact, exact, setup, preset.num_starts, bar, pieces, "a")
        blocks = _orthogonal._tally(exact, exact, setup, 700, bar, pieces, "b")
    for a, b in zip(whole, blocks):
        np.testing.assert_array_equal(a, b)
    assert len(blocks.labels) == preset.num_starts and blocks.coordinates.sum() > 0


def test_same_seed_same_numbers_other_seed_other_starts(tmp_path):
    preset, results = quick("orthogonal-score-flow")
    again = preset.run(tmp_path, progress=False)  # a fresh folder: no finished pieces
    assert again.rows == results.rows
    for key in ("labels", "sample_starts", "sample_endpoints"):
        np.testing.assert_array_equal(again.arrays[key], results.arrays[key])
    _, other = quick("orthogonal-score-flow", seed=1)
    assert not np.allclose(other.arrays["sample_starts"], results.arrays["sample_starts"])


@pytest.mark.parametrize("name", ["orthogonal-score-flow", "orthogonal-probability-flow"])
def test_config_round_trips(tmp_path, name):
    # Shapes as in the quick run, so that nothing compiles again.
    lengths = ",".join(["1"] * 29 + ["1.5"])
    preset = apply_overrides(
        get_preset(name)().quick(),
        [f"lengths={lengths}", "alpha=none", "start_centre=origin", "trajectories=0", "seed=2"],
    )
    results = preset.run(tmp_path, progress=False)
    write_results(preset, results, tmp_path)
    again = read_config(tmp_path)
    assert again == preset and hash(again) == hash(preset)
    assert isinstance(again.lengths, tuple) and again.alpha is None
    assert again.lengths[-1] == 1.5 and again.start_centre == "origin"


def test_invalid_configs_are_refused():
    preset = get_preset("orthogonal-probability-flow")()
    for assignment in (
        "sigma_max=0.05,0.1",
        "sigma_min=0.05",
        "projection=0,30",
        "lengths=1,2",
        "n=31",
        "trajectories=200000",
        "tol=0",
    ):
        with pytest.raises(ConfigError):
            apply_overrides(preset, [assignment])


@pytest.mark.slow
def test_full_probability_flow(tmp_path):
    """The default preset: 10^5 starts for each of six sigma_max."""
    preset = get_preset("orthogonal-probability-flow")()
    results = preset.run(tmp_path, progress=False)
    assert all(r["agreement"] == 1.0 and r["max_error"] < 1e-8 for r in results.rows)
    vertex = [
        sum(
            r["fraction"]
            for r in results.rows
            if r["sigma_max"] == s and r["class"] in ("training", "virtual", "origin")
        )
        for s in preset.sigma_max
    ]
    assert vertex == sorted(vertex) and vertex[-1] > 0.6
