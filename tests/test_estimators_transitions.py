"""The transition estimators of [H] (Section 4): P(Delta > 0) with Wilson intervals and
its coverage, and the crossing point n* on synthetic P curves."""

import jax
import jax.random as jr
import numpy as np
import pytest
from helpers import count_compilations
from jaxflow.estimators import transition_point, transition_probability


@pytest.mark.parametrize("p_true", [0.05, 0.3, 0.5, 0.8])
def test_wilson_coverage(p_true):
    # 2000 independent experiments of R = 300 repetitions each.
    rng = np.random.default_rng(int(p_true * 100))
    positive = rng.random((300, 2000)) < p_true
    prob = transition_probability(positive, confidence=0.95)
    covered = np.mean((np.asarray(prob.lower) <= p_true) & (p_true <= np.asarray(prob.upper)))
    # Nominal 95%; Wilson's actual coverage oscillates within a point or two of it, and
    # the Monte Carlo error is 0.5%.
    assert 0.925 <= covered <= 0.975


def test_transition_point_interpolates_in_log_n():
    ns = (10, 20, 40, 80)
    fractions = np.array([0.0, 0.25, 0.75, 1.0])
    positive = np.arange(4)[:, None] < 4 * fractions[None, :]  # R = 4 repetitions
    point = transition_point(ns, positive, key=jr.key(0), resamples=200)
    np.testing.assert_allclose(point.n_star, 20 * np.sqrt(2), rtol=1e-12)
    assert point.lower <= point.n_star <= point.upper


def test_transition_point_first_last_and_none():
    ns = (1, 2, 4, 8, 16)
    fractions = np.array([0.6, 0.2, 0.7, 0.1, 0.9])
    positive = np.arange(10)[:, None] < 10 * fractions[None, :]
    first = transition_point(ns, positive, key=jr.key(0), resamples=50, which="first")
    last = transition_point(ns, positive, key=jr.key(0), resamples=50, which="last")
    np.testing.assert_allclose(first.n_star, 2 * 2 ** (0.3 / 0.5), rtol=1e-12)
    np.testing.assert_allclose(last.n_star, 8 * 2 ** (0.4 / 0.8), rtol=1e-12)
    never = transition_point(ns, np.zeros((10, 5), bool), key=jr.key(0), resamples=50)
    assert np.isnan(never.n_star) and never.crossing_fraction == 0


def _numpy_crossing(ns, fraction, level, which):
    """The first or last upward crossing of `level`, linear in log n (NaN without one)."""
    up = np.flatnonzero((fraction[:-1] < level) & (fraction[1:] >= level))
    if up.size == 0:
        return np.nan
    g = up[0] if which == "first" else up[-1]
    t = (level - fraction[g]) / (fraction[g + 1] - fraction[g])
    return np.exp(np.log(ns[g]) + t * (np.log(ns[g + 1]) - np.log(ns[g])))


# A curve with two upward crossings of 1/2 (40 repetitions), and the crossings, bootstrap
# intervals and crossing fractions that transition_point gave (key 5, 300 resamples) when
# each crossing had its own program: sharing one must not change a bit.
_TWO_CROSSINGS = ((10, 20, 30, 40, 60, 80), np.array([0.2, 0.6, 0.4, 0.7, 0.3, 0.8]))
_EARLIER = {
    "first": (16.990235884354025, 14.497172063105028, 35.078815946909444, 1.0),
    "last": (65.49016479577422, 61.666624636305315, 68.42110869682696, 1.0),
}


def test_first_and_last_share_one_program_and_match_a_numpy_bootstrap():
    ns, p = _TWO_CROSSINGS
    positive = np.random.default_rng(3).random((40, len(ns))) < p
    key, resamples = jr.key(5), 300  # not a whole number of batches
    # The resampled repetitions, as the bootstrap draws them: one key per resample.
    index = np.asarray(jax.vmap(lambda k: jr.randint(k, (40,), 0, 40))(jr.split(key, resamples)))
    curves = positive[index].mean(axis=1)
    points = {}
    for which in ("last", "first"):
        with count_compilations() as compiled:
            points[which] = transition_point(ns, positive, key=key, which=which, resamples=300)
        if which == "first":  # the program that gave "last" serves it
            assert compiled[0] == 0
        draws = np.array([_numpy_crossing(np.asarray(ns), f, 0.5, which) for f in curves])
        expected = (
            _numpy_crossing(np.asarray(ns), positive.mean(axis=0), 0.5, which),
            *np.nanquantile(draws, [0.025, 0.975]),
            np.mean(~np.isnan(draws)),
        )
        got = [points[which].n_star, points[which].lower, points[which].upper]
        np.testing.assert_allclose(got, expected[:3], rtol=1e-12)
        assert points[which].crossing_fraction == expected[3]
    for which, point in points.items():
        fields = (point.n_star, point.lower, point.upper, point.crossing_fraction)
        np.testing.assert_array_equal(np.array(fields), _EARLIER[which])


def test_transition_point_recovers_a_logistic_curve():
    # P(n) = 1 / (1 + (n0 / n)^3) crosses 1/2 at n0 = 50.
    ns = np.geomspace(10, 250, 8).round().astype(int)
    p = 1 / (1 + (50 / ns) ** 3)
    covered = 0
    for seed in range(5):
        positive = np.random.default_rng(seed).random((400, ns.size)) < p
        point = transition_point(ns, positive, key=jr.key(seed), resamples=1000)
        assert abs(np.log(float(point.n_star) / 50)) < 0.15
        covered += int(point.lower <= 50 <= point.upper)
        assert point.crossing_fraction == 1.0
    assert covered >= 4
    with count_compilations() as n:
        transition_point(ns, positive, key=jr.key(9), resamples=1000)
    assert n[0] == 0


def test_validation():
    with pytest.raises(TypeError, match="boolean"):
        transition_point((1, 2), np.zeros((3, 2)), key=jr.key(0))
    with pytest.raises(ValueError, match="shape"):
        transition_point((1, 2, 3), np.zeros((3, 2), bool), key=jr.key(0))
    with pytest.raises(TypeError, match="positive"):
        transition_probability(np.zeros((3, 2)))


def test_probability_counts_and_uncertain_signs():
    positive = np.array([[True, False], [True, True], [False, False]])
    certain = np.array([[True, True], [False, True], [True, True]])
    prob = transition_probability(positive, certain=certain)
    np.testing.assert_array_equal(prob.positives, [2, 1])
    np.testing.assert_array_equal(prob.trials, [3, 3])
    np.testing.assert_array_equal(prob.uncertain, [1, 0])
    assert np.all((prob.lower <= prob.fraction) & (prob.fraction <= prob.upper))
