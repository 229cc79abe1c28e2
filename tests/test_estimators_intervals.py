"""Wilson score intervals and endpoint-class fractions, checked against SciPy's
`binomtest(...).proportion_ci(method="wilson")`."""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings, strategies as st
from jaxflow.estimators import (
    class_fractions,
    ClassFractions,
    classify_endpoints,
    EndpointClass,
    wilson_interval,
)


def scipy_wilson(k, n, confidence):
    ci = scipy.stats.binomtest(int(k), int(n)).proportion_ci(confidence, method="wilson")
    return ci.low, ci.high


def test_wilson_matches_scipy_on_a_grid_including_zero_and_all_successes():
    cases = [(k, n) for n in (1, 2, 5, 17, 100, 10_000) for k in sorted({0, 1, n // 2, n - 1, n})]
    k, n = (np.array(column) for column in zip(*cases))
    for confidence in (0.8, 0.95, 0.99):
        lower, upper = wilson_interval(k, n, confidence)
        expected = np.array([scipy_wilson(*case, confidence) for case in cases])
        np.testing.assert_allclose(np.asarray(lower), expected[:, 0], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(np.asarray(upper), expected[:, 1], rtol=1e-12, atol=1e-15)
    # The ends are exact where the interval touches them.
    lower, upper = wilson_interval(k, n)
    assert np.all(np.asarray(lower)[k == 0] == 0.0) and np.all(np.asarray(upper)[k == n] == 1.0)
    assert np.all(np.asarray(lower)[k > 0] > 0.0) and np.all(np.asarray(upper)[k < n] < 1.0)


@settings(max_examples=50, deadline=None)
@given(
    n=st.integers(1, 10**7),
    fraction=st.floats(0.0, 1.0),
    confidence=st.floats(0.5, 0.999),
)
def test_wilson_matches_scipy_for_any_count(n, fraction, confidence):
    k = int(round(fraction * n))
    lower, upper = wilson_interval(k, n, confidence)
    expected = scipy_wilson(k, n, confidence)
    np.testing.assert_allclose([float(lower), float(upper)], expected, rtol=1e-9, atol=1e-15)
    assert 0.0 <= float(lower) <= k / n <= float(upper) <= 1.0


def test_wilson_broadcasts_and_keeps_scalars_scalar():
    k = jnp.arange(3)[:, None]
    n = jnp.array([[2, 4, 8, 16]])
    lower, upper = wilson_interval(k, n)
    assert lower.shape == upper.shape == (3, 4)
    np.testing.assert_allclose(np.asarray(lower[2, 1]), scipy_wilson(2, 4, 0.95)[0], rtol=1e-12)
    one = wilson_interval(3, 10)
    assert one[0].shape == () and one[1].shape == ()


def test_wilson_with_no_trials_is_the_whole_unit_interval():
    lower, upper = wilson_interval(0, 0)
    assert float(lower) == 0.0 and float(upper) == 1.0


def test_wilson_refuses_bad_input():
    with pytest.raises(ValueError, match="`successes` must lie between 0 and `trials`"):
        wilson_interval(5, 4)
    with pytest.raises(eqx.EquinoxRuntimeError, match="successes <= trials"):
        eqx.filter_jit(wilson_interval)(jnp.asarray(5), jnp.asarray(4))
    with pytest.raises(ValueError, match="`confidence`"):
        wilson_interval(1, 4, confidence=1.0)
    with pytest.raises(TypeError, match="`successes`"):
        wilson_interval(1.5, 4)


def test_class_fractions_count_labels_and_match_scipy_intervals():
    labels = np.array([0] * 7 + [1] * 3 + [3] * 12 + [4] * 2)  # no ORIGIN endpoint
    fractions = class_fractions(jnp.asarray(labels), confidence=0.9)

    assert isinstance(fractions, ClassFractions)
    np.testing.assert_array_equal(np.asarray(fractions.counts), [7, 3, 0, 12, 2])
    assert int(fractions.total) == 24
    np.testing.assert_allclose(np.asarray(fractions.fraction), np.array([7, 3, 0, 12, 2]) / 24)
    for c in EndpointClass:
        expected = scipy_wilson(np.sum(labels == c), 24, 0.9)
        got = (float(fractions.lower[c]), float(fractions.upper[c]))
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    assert float(fractions.memorization_rate) == pytest.approx(7 / 24, rel=1e-15)
    rows = fractions.rows()
    assert [row["class"] for row in rows] == ["training", "virtual", "origin", "manifold", "other"]
    assert rows[2]["count"] == 0 and rows[2]["lower"] == 0.0 and rows[2]["confidence"] == 0.9


def test_class_fractions_of_a_classification_equal_those_of_its_labels():
    points = jnp.eye(3, 4)
    endpoints = jnp.array(
        [[1.0, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0.5, 1, 0, 0], [0.5, 0.5, 0.5, 0]]
    )
    classes = classify_endpoints(endpoints, points)
    from_classes = class_fractions(classes)
    from_labels = class_fractions(classes.label)
    for field in ("counts", "total", "fraction", "lower", "upper"):
        np.testing.assert_array_equal(
            np.asarray(getattr(from_classes, field)), np.asarray(getattr(from_labels, field))
        )
    np.testing.assert_array_equal(np.asarray(from_classes.counts), [1, 1, 1, 1, 1])


def test_class_fractions_refuse_labels_that_are_not_classes():
    with pytest.raises(ValueError, match="`classes` must be values of `EndpointClass`"):
        class_fractions(jnp.array([0, 5]))
    with pytest.raises(eqx.EquinoxRuntimeError, match="EndpointClass"):
        eqx.filter_jit(lambda labels: class_fractions(labels).counts)(jnp.array([0, 5]))
    with pytest.raises(ValueError, match="`classes`"):
        class_fractions(jnp.array([0.0, 1.0]))
