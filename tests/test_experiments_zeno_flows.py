"""The score-flow and probability-flow presets of [Z] on orthogonal data at their quick
sizes: the claims their rows carry, against the oracles of `helpers.py`; their blocks,
reproducibility and resumption."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from helpers import exact_probability_flow, nearest_vertex, Stop, tables_equal
from jaxflow.estimators import EndpointClass
from jaxflow.experiments import ConfigError, get_preset, read_config, run
from jaxflow.experiments._runner import check_fits
from jaxflow.experiments.zeno import (
    _orthogonal_flows as orthogonal_flows,
    OrthogonalProbabilityFlow,
    OrthogonalScoreFlow,
)
from jaxflow.flows import exact_probability_flow as flow_oracle


CLASSES = [c.name.lower() for c in EndpointClass]
VERTICES = ("training", "virtual", "origin")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """A quick run, shared between tests (the presets are deterministic)."""
    cache = {}

    def get(name: str, **changes):
        preset = dataclasses.replace(get_preset(name)().quick(), **changes)
        if preset not in cache:
            cache[preset] = run(preset, tmp_path_factory.mktemp("run"), progress=False)
        return preset, cache[preset]

    return get


def by_class(rows):
    return {r["class"]: r for r in rows}


def test_score_flow_ends_at_virtual_points(quick):
    preset, result = quick("orthogonal-score-flow")
    rows = result.table.to_pylist()
    assert [r["class"] for r in rows] == CLASSES
    assert sum(r["count"] for r in rows) == preset.num_starts
    assert sum(r["fraction"] for r in rows) == pytest.approx(1.0)
    for r in rows:
        assert 0 <= r["lower"] <= r["fraction"] <= r["upper"] <= 1
    classes = by_class(rows)
    # [Z], Section 6: the score flow ends almost always at virtual points.
    assert classes["virtual"]["lower"] > 0.99
    assert classes["training"]["upper"] < 0.01
    # [Z], Section 4: every endpoint is in the class of the vertex nearest its start.
    for r in rows:
        assert r["agreement"] == 1.0 and r["fraction"] == r["exact_fraction"]
        assert r["count"] == r["exact_count"]
    # Every endpoint is a vertex, so the vertex sizes count every start.
    assert result.arrays["vertex_sizes"].sum() == preset.num_starts


def test_score_flow_trajectories_reach_the_nearest_vertex(quick):
    preset, result = quick("orthogonal-score-flow")
    arrays = result.arrays
    _, vertex = nearest_vertex(arrays["sample_starts"], arrays["points"])
    assert np.max(np.abs(np.asarray(arrays["sample_endpoints"]) - vertex)) < 0.05
    path = np.asarray(arrays["sample_trajectories"])
    assert path.shape == (preset.trajectories, len(arrays["sample_ts"]), preset.d)
    np.testing.assert_allclose(path[:, 0], arrays["sample_starts"])
    np.testing.assert_array_equal(arrays["sample_labels"], arrays["labels"][: preset.trajectories])


def test_starts_are_recomputed_from_the_saved_key(quick):
    _, result = quick("orthogonal-score-flow")
    arrays = result.arrays
    key = jr.wrap_key_data(jnp.asarray(arrays["key"]))
    count = len(arrays["sample_starts"])
    noise = jax.vmap(
        lambda i: jr.normal(jr.fold_in(key, i), (arrays["points"].shape[1],), jnp.float64)
    )(jnp.arange(count))
    expected = np.asarray(arrays["start_centre"]) + float(arrays["start_scale"]) * np.asarray(noise)
    np.testing.assert_allclose(arrays["sample_starts"], expected, rtol=0, atol=1e-12)


def test_probability_flow_matches_the_exact_solution(quick):
    preset, result = quick("orthogonal-probability-flow")
    rows = result.table.to_pylist()
    assert len(rows) == len(CLASSES) * len(preset.sigma_max)
    arrays = result.arrays
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
            alpha=np.sqrt(preset.d),
            sigma_max=sigma_max,
            sigma_min=preset.sigma_min,
        )
        np.testing.assert_allclose(arrays["sample_endpoints"][k], exact, atol=1e-8)


def test_probability_flow_started_early_ends_at_vertices(quick):
    # [Z], Section 4: vertices when started early (large sigma_max), manifold points late.
    preset, result = quick("orthogonal-probability-flow")
    rows = result.table.to_pylist()
    vertex = [
        sum(r["fraction"] for r in rows if r["sigma_max"] == s and r["class"] in VERTICES)
        for s in preset.sigma_max
    ]
    assert np.all(np.diff(vertex) >= -0.02)
    assert vertex[0] < 0.01 < 0.5 < vertex[-1]
    first = by_class(r for r in rows if r["sigma_max"] == preset.sigma_max[0])
    assert first["manifold"]["fraction"] > 0.99


def test_probability_flow_from_the_default_starts_memorizes_nothing(quick):
    # Each coordinate keeps the region it starts in: from the box centre no start has one
    # coordinate flat at L and all others flat at 0, so no endpoint is a training point,
    # and the vertices it reaches are virtual points.
    preset, result = quick("orthogonal-probability-flow")
    training = [r for r in result.table.to_pylist() if r["class"] == "training"]
    assert len(training) == len(preset.sigma_max)
    assert all(r["count"] == 0 == r["exact_count"] for r in training)
    assert not np.any(result.arrays["vertex_sizes"][:, 1])


def test_blocks_do_not_change_the_numbers():
    # The last block is padded and trimmed: the tallies of 2000 starts in blocks of 800
    # (the quick run's) and in blocks of 700 agree exactly. (The exact solution stands in
    # for the flow, whose own chunking is tested with the flows.)
    preset = OrthogonalProbabilityFlow().quick()
    setup = orthogonal_flows.setup(preset)
    sigma_max, sigma_min = jnp.asarray(0.085), jnp.asarray(preset.sigma_min)
    exact = lambda y0: flow_oracle(setup.denoiser, y0, sigma_max=sigma_max, sigma_min=sigma_min)

    def tally(size):
        blocks = [
            orthogonal_flows.tally_block(exact, exact, setup, first, size)
            for first in range(0, preset.num_starts, size)
        ]
        return orthogonal_flows.combine(blocks)

    whole, blocks = tally(preset.chunk_size), tally(700)
    for a, b in zip(whole, blocks):
        np.testing.assert_array_equal(a, b)
    assert len(blocks.labels) == preset.num_starts and blocks.coordinates.sum() > 0


def test_same_seed_same_numbers_other_seed_other_starts(quick, tmp_path):
    preset, result = quick("orthogonal-score-flow")
    again = run(preset, tmp_path, progress=False)  # a fresh folder: no finished cells
    assert tables_equal(again.table, result.table)
    for key in ("labels", "sample_starts", "sample_endpoints"):
        np.testing.assert_array_equal(again.arrays[key], result.arrays[key])
    _, other = quick("orthogonal-score-flow", seed=1)
    assert not np.allclose(other.arrays["sample_starts"], result.arrays["sample_starts"])


@pytest.mark.parametrize(
    "cls, changes",
    [
        (OrthogonalScoreFlow, dict(confidence=0.9, projection=(2, 3))),
        (OrthogonalProbabilityFlow, dict(confidence=0.99, trajectories=0)),
    ],
)
def test_changed_cell_independent_parameters_reuse_the_cells(
    cls, changes, quick, tmp_path, monkeypatch
):
    preset = cls().quick()
    assert set(changes) <= cls.cell_independent
    compute, computed = cls.compute, []

    def stopping(self, cell, context):
        computed.append(cell)
        if len(computed) == 3:
            raise Stop
        return compute(self, cell, context)

    monkeypatch.setattr(cls, "compute", stopping)
    with pytest.raises(Stop, match="part-way"):
        run(preset, tmp_path / "stopped", progress=False)
    monkeypatch.undo()

    changed = dataclasses.replace(preset, **changes)
    resumed = run(changed, tmp_path / "stopped", progress=False)
    assert resumed.resumed == tuple(preset.cell_name(c) for c in computed[:2])
    _, fresh = quick(cls.name, **changes)
    assert tables_equal(resumed.table, fresh.table)
    assert resumed.arrays.keys() == fresh.arrays.keys()
    for key in fresh.arrays:
        np.testing.assert_array_equal(resumed.arrays[key], fresh.arrays[key])


def test_config_round_trips(quick):
    # Shapes as in the quick run, so that nothing compiles again.
    lengths = (1.0,) * 29 + (1.5,)
    preset, result = quick(
        "orthogonal-score-flow",
        lengths=lengths,
        start_centre="origin",
        trajectories=0,
        seed=2,
    )
    again = read_config(result.out)
    assert again == preset and hash(again) == hash(preset)
    assert isinstance(again.lengths, tuple) and again.alpha is None
    assert again.lengths[-1] == 1.5 and again.start_centre == "origin"
    np.testing.assert_allclose(np.linalg.norm(result.arrays["points"], axis=1), lengths)


@pytest.mark.parametrize(
    "cls, changes",
    [
        (OrthogonalProbabilityFlow, dict(sigma_max=(0.05, 0.1))),
        (OrthogonalProbabilityFlow, dict(sigma_min=0.05)),
        (OrthogonalProbabilityFlow, dict(sigma_max=(0.05, 0.05))),
        (OrthogonalProbabilityFlow, dict(projection=(0, 30))),
        (OrthogonalProbabilityFlow, dict(projection=(0, 1, 2))),
        (OrthogonalProbabilityFlow, dict(projection=(1, 1))),
        (OrthogonalProbabilityFlow, dict(lengths=(1.0, 2.0))),
        (OrthogonalProbabilityFlow, dict(n=31)),
        (OrthogonalProbabilityFlow, dict(trajectories=200_000)),
        (OrthogonalProbabilityFlow, dict(tol=0.0)),
        (OrthogonalProbabilityFlow, dict(lengths=(0.1,))),
        (OrthogonalScoreFlow, dict(sigma=0.1)),
        (OrthogonalScoreFlow, dict(alpha=20.0)),
    ],
)
def test_invalid_configs_are_refused(cls, changes):
    with pytest.raises(ConfigError, match=re.escape(next(iter(changes)))):
        dataclasses.replace(cls(), **changes)


@pytest.mark.parametrize("cls", [OrthogonalScoreFlow, OrthogonalProbabilityFlow])
def test_a_run_too_large_is_refused_before_it_starts(cls, tmp_path):
    preset = dataclasses.replace(cls(), num_starts=10**13)
    with pytest.raises(ConfigError, match="num_starts"):
        check_fits(preset, tmp_path)


@pytest.mark.slow
def test_full_probability_flow(tmp_path):
    """The default preset: 10^5 starts for each of six sigma_max."""
    preset = OrthogonalProbabilityFlow()
    rows = run(preset, tmp_path, progress=False).table.to_pylist()
    assert all(r["agreement"] == 1.0 and r["max_error"] < 1e-8 for r in rows)
    vertex = [
        sum(r["fraction"] for r in rows if r["sigma_max"] == s and r["class"] in VERTICES)
        for s in preset.sigma_max
    ]
    assert vertex == sorted(vertex) and vertex[-1] > 0.6
    assert all(r["count"] == 0 for r in rows if r["class"] == "training")
