"""The virtual-point stability test ([Z], Section 6; docs/models.md#virtual-point-stability):
fixed-point iteration of a denoiser started at every k-subset sum of training points.

Oracles: the closed form keeps every vertex fixed; hand-made and empirical denoisers whose
fixed points are known; a NumPy iteration of the obtuse-simplex closed form; subsets from
`itertools.combinations`.
"""

import itertools
import math

import jax.numpy as jnp
import jax.random as jr
import jaxflow as jf
import numpy as np
import pytest
from helpers import closed_form_simplex, count_compilations, tree_equal
from jaxflow.estimators import StabilityResult, virtual_point_stability, wilson_interval
from jaxflow.estimators._stability import _k_subsets


def test_closed_form_keeps_every_pair_triple_and_quadruple_sum_stable(getkey):
    # [Z], Section 6 (docs/models.md#virtual-point-stability): the min-norm closed form makes
    # every subset sum stable.
    lengths = jnp.linspace(1.0, 2.0, 10)
    data = jf.data.orthogonal(10, 10, key=getkey(), lengths=lengths, rotate=True)
    denoiser = jf.MinNormOrthogonal(data.points)

    result = virtual_point_stability(denoiser, data.points, 0.05)

    assert isinstance(result, StabilityResult) and result.sizes == (2, 3, 4)
    np.testing.assert_array_equal(np.asarray(result.num_subsets), [45, 120, 210])
    np.testing.assert_array_equal(np.asarray(result.num_stable), [45, 120, 210])
    np.testing.assert_array_equal(np.asarray(result.fraction), [1.0, 1.0, 1.0])
    for k, subsets, drift in zip(result.sizes, result.subsets, result.drift):
        np.testing.assert_array_equal(
            np.asarray(subsets), list(itertools.combinations(range(10), k))
        )
        assert float(jnp.max(drift)) < 1e-12
    assert float(result.tol) == pytest.approx(0.2)


def test_a_denoiser_that_drops_one_point_is_unstable_exactly_at_the_sums_containing_it():
    n = 7
    points = jnp.eye(n, 9)

    def drop_first(y, sigma):
        del sigma
        return y - points[0] * (y[0] > 0.5).astype(y.dtype)

    result = virtual_point_stability(drop_first, points, 0.1, sizes=(1, 2, 3, 4))

    expected_stable = [math.comb(n - 1, k) for k in (1, 2, 3, 4)]
    np.testing.assert_array_equal(np.asarray(result.num_stable), expected_stable)
    for k, subsets, stable, drift in zip(result.sizes, result.subsets, result.stable, result.drift):
        has_first = np.array([0 in s for s in itertools.combinations(range(n), k)])
        np.testing.assert_array_equal(np.asarray(stable), ~has_first)
        np.testing.assert_array_equal(np.asarray(drift), has_first.astype(float))
    lower, upper = wilson_interval(result.num_stable, result.num_subsets)
    np.testing.assert_array_equal(np.asarray(result.lower), np.asarray(lower))
    np.testing.assert_array_equal(np.asarray(result.upper), np.asarray(upper))
    assert [row["num_stable"] for row in result.rows()] == expected_stable


def test_a_start_that_leaves_and_comes_back_is_not_stable():
    # Sums containing x_0 hop between y[0] = 1 and y[0] = 2; after an even number of
    # iterations they are back where they started, but they did not stay there.
    points = jnp.eye(4)

    def hop(y, sigma):
        del sigma
        step = jnp.where(y[0] > 1.5, -1.0, jnp.where(y[0] > 0.5, 1.0, 0.0))
        return y.at[0].add(step)

    result = virtual_point_stability(hop, points, 0.1, sizes=(2,), iterations=10)

    has_first = np.array([0 in s for s in itertools.combinations(range(4), 2)])
    np.testing.assert_array_equal(np.asarray(result.stable[0]), ~has_first)
    np.testing.assert_array_equal(np.asarray(result.drift[0]), has_first.astype(float))


def test_empirical_optimal_denoiser_moves_every_pair_and_triple_sum_at_least_halfway():
    # At small sigma the posterior mean at a sum of k unit points weighs those k equally
    # and the rest not at all: the sum moves to their centroid, at least 1/2 away in L-inf
    # (and on to one of the points once rounding breaks the tie). Single points stay.
    points = jnp.eye(6)
    result = virtual_point_stability(jf.EmpiricalOptimal(points), points, 0.05, sizes=(1, 2, 3))

    np.testing.assert_array_equal(np.asarray(result.fraction), [1.0, 0.0, 0.0])
    np.testing.assert_allclose(np.asarray(result.drift[0]), 0.0, atol=1e-12)
    assert np.all(np.asarray(result.drift[1]) >= 0.5 - 1e-12)
    assert np.all(np.asarray(result.drift[2]) >= 2 / 3 - 1e-12)
    assert np.all(np.concatenate(result.drift[1:]) <= 1 + 1e-12)


def test_simplex_stability_matches_a_numpy_iteration_of_the_closed_form():
    dataset = jf.data.obtuse_simplex(5, 6, beta=0.5, lengths=jnp.linspace(1.0, 1.5, 5))
    points = np.asarray(dataset.points)
    denoiser = jf.MinNormObtuseSimplex(dataset.points, alpha=1.0)
    sigma, iterations = 0.1, 30

    result = virtual_point_stability(
        denoiser, dataset, sigma, sizes=(1, 2, 3), iterations=iterations
    )

    for k, subsets, drift, stable in zip(result.sizes, result.subsets, result.drift, result.stable):
        subsets = np.asarray(subsets)
        assert subsets.min() >= 1  # indices of points; the apex is point 0
        y0 = points[0] + np.sum(points[subsets] - points[0], axis=1)
        y, expected = y0, np.zeros(len(y0))
        for _ in range(iterations):
            y = closed_form_simplex(y, points, rho=sigma)
            expected = np.maximum(expected, np.max(np.abs(y - y0), axis=1))
        np.testing.assert_allclose(np.asarray(drift), expected, atol=1e-12)
        np.testing.assert_array_equal(np.asarray(stable), expected <= 0.2)
    # The training points x_1..x_5 (one edge) are fixed; [Z], Section 6
    # (docs/models.md#virtual-point-stability) expects some sums of edges of an obtuse simplex
    # not to be.
    assert float(result.fraction[0]) == 1.0 and float(result.fraction[-1]) < 1.0


def test_chunking_does_not_change_the_drifts():
    # 1140 + 4845 starts: more than one block, so a small chunk size (rounded up to a
    # block) iterates them in two chunks, the second one padded.
    points = jnp.eye(20)
    denoiser = jf.EmpiricalOptimal(points)
    whole = virtual_point_stability(denoiser, points, 0.3, sizes=(3, 4), iterations=5)
    assert sum(len(d) for d in whole.drift) > jf.flows.block_size()
    chunked = virtual_point_stability(
        denoiser, points, 0.3, sizes=(3, 4), iterations=5, chunk_size=7
    )
    assert tree_equal(whole.drift, chunked.drift)


def test_max_subsets_draws_distinct_valid_subsets_reproducibly():
    points = jnp.eye(12)
    denoiser = jf.MinNormOrthogonal(points)
    every = {tuple(s) for s in itertools.combinations(range(12), 3)}

    first = virtual_point_stability(
        denoiser, points, 0.05, sizes=(2, 3), max_subsets=50, key=jr.key(0)
    )
    again = virtual_point_stability(
        denoiser, points, 0.05, sizes=(2, 3), max_subsets=50, key=jr.key(0)
    )
    other = virtual_point_stability(
        denoiser, points, 0.05, sizes=(2, 3), max_subsets=50, key=jr.key(1)
    )

    np.testing.assert_array_equal(np.asarray(first.num_subsets), [50, 50])
    drawn = [tuple(s) for s in np.asarray(first.subsets[1]).tolist()]
    assert len(set(drawn)) == 50 and set(drawn) <= every and drawn == sorted(drawn)
    assert tree_equal(first.subsets, again.subsets)
    assert not tree_equal(first.subsets[1], other.subsets[1])
    with pytest.raises(ValueError, match="`key`"):
        virtual_point_stability(denoiser, points, 0.05, sizes=(3,), max_subsets=50)


@pytest.mark.parametrize("enumerate_limit", [10**6, 0])
def test_sampled_subsets_are_uniform(monkeypatch, enumerate_limit):
    # Both samplers (from the listed subsets, and by rejection when there are too many to
    # list): over 300 keys each of the 15 pairs of range(6) is drawn 300 * 5 / 15 = 100
    # times in expectation, standard deviation about 8.
    monkeypatch.setattr("jaxflow.estimators._stability._ENUMERATE_LIMIT", enumerate_limit)
    counts = dict.fromkeys(itertools.combinations(range(6), 2), 0)
    for seed in range(300):
        rows = _k_subsets(6, 2, 5, jr.key(seed))
        assert len({tuple(r) for r in rows.tolist()}) == 5
        for row in rows.tolist():
            counts[tuple(row)] += 1
    assert all(60 <= c <= 140 for c in counts.values()), counts


def test_second_call_with_a_new_sigma_and_tol_does_not_compile():
    points = jnp.eye(5)
    denoiser = jf.MinNormOrthogonal(points)
    virtual_point_stability(denoiser, points, 0.05, tol=0.2)
    with count_compilations() as compiled:
        result = virtual_point_stability(denoiser, points, 0.1, tol=0.3)
    assert compiled[0] == 0
    assert float(result.tol) == pytest.approx(0.3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sizes": (2, 6)}, "`sizes`"),
        ({"sizes": ()}, "`sizes`"),
        ({"iterations": 0}, "`iterations`"),
        ({"tol": -1.0}, "`tol`"),
        ({"max_subsets": 0, "key": jr.key(0)}, "`max_subsets`"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, match):
    points = jnp.eye(5)
    with pytest.raises(ValueError, match=match):
        virtual_point_stability(jf.MinNormOrthogonal(points), points, 0.05, **kwargs)
    with pytest.raises(ValueError, match="`sigma`"):
        virtual_point_stability(jf.MinNormOrthogonal(points), points, jnp.ones(2))
