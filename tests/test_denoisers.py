"""Denoisers against NumPy oracles: the closed-form min-norm denoisers of [Z], Section 2
(docs/models.md#closed-forms) and their 2N-unit networks, the empirical optimal denoiser,
the capability classes, and the refusal of every input that breaks the closed form's
assumptions."""

import equinox as eqx
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import jax.random as jr
import jaxflow as jf
import numpy as np
import pytest
from helpers import (
    box_coordinates,
    closed_form_orthogonal,
    closed_form_simplex,
    empirical_denoiser,
    obtuse_simplex_points,
    orthogonal_points,
    without_runtime_typechecks,
)
from hypothesis import given, settings


D = 6
LENGTHS = np.array([1.0, 1.7, 2.4, 3.0])
SIGMAS = np.array([0.0, 0.01, 0.05, 0.1])  # all with 2 alpha sigma < min L for alpha <= 4


# One compiled `(batch, d), sigma -> (batch, d)` per denoiser structure.
_apply = eqx.filter_jit(jax.vmap(lambda m, y, s: m(y, s), in_axes=(None, 0, None)))
_apply_network = eqx.filter_jit(jax.vmap(lambda m, y: m(y), in_axes=(None, 0)))


def _orthogonal_case(seed=0):
    rng = np.random.default_rng(seed)
    points = orthogonal_points(rng, D, LENGTHS)
    units = points / LENGTHS[:, None]
    # Coordinates on both flats and the ramp of every direction, plus an off-span part.
    s = rng.uniform(-0.5, 1.5, size=(512, LENGTHS.size)) * LENGTHS
    y = s @ units + rng.normal(size=(512, D))
    return points, y


def _simplex_case(seed=1, beta=0.5):
    rng = np.random.default_rng(seed)
    points = obtuse_simplex_points(rng, D, LENGTHS, beta=beta, apex=rng.normal(size=D))
    y = points[0] + 2.0 * rng.normal(size=(512, D)) + 0.5 * (points[1:] - points[0]).sum(0)
    return points, y


# ---------------------------------------------------------------------------------------
# Closed forms against the NumPy oracle.
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [None, 2.5])
def test_min_norm_orthogonal_matches_closed_form(alpha):
    points, y = _orthogonal_case()
    denoiser = jf.MinNormOrthogonal(jnp.asarray(points), alpha=alpha)
    # The default of docs/conventions.md#ball-radius.
    alpha_value = np.sqrt(D) if alpha is None else alpha
    assert float(denoiser.alpha) == pytest.approx(alpha_value, rel=1e-15)
    assert float(denoiser.max_sigma) == pytest.approx(LENGTHS.min() / (2 * alpha_value), rel=1e-14)
    for sigma in SIGMAS:
        out = np.asarray(_apply(denoiser, jnp.asarray(y), jnp.asarray(sigma)))
        np.testing.assert_allclose(
            out, closed_form_orthogonal(y, points, alpha_value * sigma), rtol=0, atol=1e-13
        )


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.5])
def test_min_norm_obtuse_simplex_matches_closed_form(beta):
    points, y = _simplex_case(beta=beta)
    denoiser = jf.MinNormObtuseSimplex(jnp.asarray(points), alpha=2.0)
    for sigma in SIGMAS:
        out = np.asarray(_apply(denoiser, jnp.asarray(y), jnp.asarray(sigma)))
        np.testing.assert_allclose(
            out, closed_form_simplex(y, points, 2.0 * sigma), rtol=0, atol=1e-13
        )


def test_min_norm_orthogonal_float32_matches_closed_form():
    points, y = _orthogonal_case(seed=2)
    denoiser = jf.MinNormOrthogonal(jnp.asarray(points, jnp.float32), alpha=2.0)
    out = _apply(denoiser, jnp.asarray(y, jnp.float32), jnp.asarray(0.05, jnp.float32))
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(
        np.asarray(out), closed_form_orthogonal(y, points, 0.1), rtol=0, atol=1e-5
    )


@pytest.mark.parametrize("simplex", [False, True])
def test_min_norm_range_lies_in_hyperbox(simplex):
    points, y = _simplex_case() if simplex else _orthogonal_case()
    y = 3.0 * y  # far outside the box too
    denoiser = (jf.MinNormObtuseSimplex if simplex else jf.MinNormOrthogonal)(
        jnp.asarray(points), alpha=2.0
    )
    apex = points[0] if simplex else np.zeros(D)
    edges = points[1:] - points[0] if simplex else points
    for sigma in (0.0, 0.1):
        out = np.asarray(_apply(denoiser, jnp.asarray(y), jnp.asarray(sigma)))
        coords = box_coordinates(out, apex, edges)
        assert np.all(coords >= -1e-12) and np.all(coords <= 1 + 1e-12)
        np.testing.assert_allclose(apex + coords @ edges, out, atol=1e-12)  # nothing off the span


def test_min_norm_maps_noise_balls_to_their_training_points():
    # The interpolation constraint of [Z], Section 2; docs/models.md#shallow-relu-denoisers:
    # h(B(x_n, rho)) = {x_n}; the ball around the origin (the empty subset sum) maps to the
    # origin.
    points, _ = _orthogonal_case()
    alpha, sigma = 2.0, 0.1
    rho = alpha * sigma
    denoiser = jf.MinNormOrthogonal(jnp.asarray(points), alpha=alpha)
    rng = np.random.default_rng(3)
    directions = rng.normal(size=(200, D))
    balls = (
        rho
        * rng.uniform(size=(200, 1))
        * directions
        / np.linalg.norm(directions, axis=1, keepdims=True)
    )
    for centre in np.concatenate([points, np.zeros((1, D))]):
        out = np.asarray(_apply(denoiser, jnp.asarray(centre + balls), jnp.asarray(sigma)))
        np.testing.assert_allclose(out, np.broadcast_to(centre, out.shape), atol=1e-13)


# ---------------------------------------------------------------------------------------
# The equivalent 2N-unit ReLU network.
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("simplex", [False, True])
def test_network_equals_closed_form_with_min_norm_cost(simplex):
    points, y = _simplex_case() if simplex else _orthogonal_case()
    alpha = 2.0
    denoiser = (jf.MinNormObtuseSimplex if simplex else jf.MinNormOrthogonal)(
        jnp.asarray(points), alpha=alpha
    )
    oracle = closed_form_simplex if simplex else closed_form_orthogonal
    lengths = np.linalg.norm(points[1:] - points[0], axis=1) if simplex else LENGTHS
    n = lengths.size
    for sigma in (0.0, 0.05, 0.1):
        rho = alpha * sigma
        net = denoiser.network(sigma)
        assert isinstance(net, jf.ShallowReLU)
        assert net.width == 2 * n
        assert np.all(np.asarray(net.v) == 0)
        np.testing.assert_array_equal(np.asarray(net.c), points[0] if simplex else np.zeros(D))
        out = np.asarray(_apply_network(net, jnp.asarray(y)))
        np.testing.assert_allclose(out, oracle(y, points, rho), rtol=0, atol=1e-12)
        # Balanced units, |a_k| = |w_k|, and the min-norm cost of [Z], Section 2;
        # docs/models.md#closed-forms.
        np.testing.assert_allclose(
            np.linalg.norm(net.a, axis=1), np.linalg.norm(net.w, axis=1), rtol=1e-13
        )
        assert float(net.cost()) == pytest.approx(
            np.sum(2 * lengths / (lengths - 2 * rho)), rel=1e-13
        )
        # Its own cost, from the weights: 1/2 sum_k |a_k|^2 + |w_k|^2.
        a, w = np.asarray(net.a), np.asarray(net.w)
        assert float(net.cost()) == pytest.approx(0.5 * (np.sum(a**2) + np.sum(w**2)), rel=1e-13)


def test_shallow_relu_matches_numpy_and_checks_shapes(getkey):
    net = jf.ShallowReLU.random(D, 16, key=getkey())
    net = eqx.tree_at(
        lambda m: (m.b, m.v, m.c),
        net,
        (jr.normal(getkey(), (16,)), jr.normal(getkey(), (D, D)), jr.normal(getkey(), (D,))),
    )
    y = np.random.default_rng(4).normal(size=(32, D))
    a, w, b, v, c = (np.asarray(x) for x in (net.a, net.w, net.b, net.v, net.c))
    expected = np.maximum(y @ w.T + b, 0) @ a + y @ v.T + c
    np.testing.assert_allclose(
        np.asarray(_apply_network(net, jnp.asarray(y))), expected, rtol=1e-13, atol=1e-13
    )
    np.testing.assert_allclose(
        np.asarray(net(jnp.asarray(y[0]), 0.3)), expected[0], rtol=1e-13
    )  # sigma ignored
    with without_runtime_typechecks():
        with pytest.raises(ValueError, match=r"field `b` must have shape \(16,\)"):
            jf.ShallowReLU(a=net.a, w=net.w, b=jnp.zeros(15), v=net.v, c=net.c)
        with pytest.raises(ValueError, match=r"field `v` must have shape \(6, 6\)"):
            jf.ShallowReLU(a=net.a, w=net.w, b=net.b, v=jnp.zeros((D, D + 1)), c=net.c)


# ---------------------------------------------------------------------------------------
# Refusal of every input that breaks the closed form's assumptions.
# ---------------------------------------------------------------------------------------

_PROPERTY = settings(max_examples=25, deadline=None, derandomize=True)
_shapes = st.sampled_from([(2, 2), (3, 5), (4, 6)])  # (n, d); few shapes, few compilations


def _ortho(seed, n, d, scale=1.0):
    rng = np.random.default_rng(seed)
    return orthogonal_points(rng, d, scale * rng.uniform(0.5, 2.0, size=n))


@_PROPERTY
@given(
    seed=st.integers(0, 2**16),
    shape=_shapes,
    mix=st.floats(1e-3, 10.0),
    sign=st.sampled_from([-1.0, 1.0]),
)
def test_min_norm_orthogonal_refuses_non_orthogonal_points(seed, shape, mix, sign):
    n, d = shape
    points = _ortho(seed, n, d)
    points[0] += sign * mix * points[1]  # cosine with x_1 is at least ~5e-4 in size
    with pytest.raises(
        ValueError, match="MinNormOrthogonal needs orthogonal angles between edges, but edges"
    ):
        jf.MinNormOrthogonal(jnp.asarray(points))


@_PROPERTY
@given(seed=st.integers(0, 2**16), shape=_shapes, mix=st.floats(1e-3, 10.0))
def test_min_norm_simplex_refuses_acute_angle_at_apex(seed, shape, mix):
    n, d = shape
    rng = np.random.default_rng(seed)
    edges = _ortho(seed, n, d)
    edges[0] += mix * edges[1]  # (x_1 - x_0) . (x_2 - x_0) > 0: acute
    apex = rng.normal(size=d)
    points = np.concatenate([apex[None], apex + edges])
    with pytest.raises(
        ValueError, match="MinNormObtuseSimplex needs obtuse or right angles between edges"
    ):
        jf.MinNormObtuseSimplex(jnp.asarray(points))


def test_min_norm_refuses_negative_sigma():
    denoiser = jf.MinNormOrthogonal(jnp.eye(3, 5))
    with pytest.raises(eqx.EquinoxRuntimeError, match=r"needs 0 <= 2 \* alpha \* sigma"):
        denoiser(jnp.zeros(5), jnp.asarray(-0.01))


def test_empirical_optimal_is_finite_where_squared_distances_overflow_float32():
    points = jnp.array([[0.0, 0.0, 0.0], [1e13, 0.0, 0.0]], jnp.float32)
    denoiser = jf.EmpiricalOptimal(points)
    far = denoiser(jnp.array([1e14, 0.0, 0.0], jnp.float32), jnp.float32(1e-6))
    # |y - x_n|^2 / sigma^2 ~ 1e40 overflows float32; the nearest point still wins.
    np.testing.assert_array_equal(np.asarray(far), np.asarray(points[1]))


@_PROPERTY
@given(
    seed=st.integers(0, 2**16), shape=_shapes, factor=st.floats(1.0, 10.0), simplex=st.booleans()
)
def test_min_norm_refuses_overlapping_noise_balls_at_call_time(seed, shape, factor, simplex):
    n, d = shape
    points = _ortho(seed, n, d)
    if simplex:
        points = np.concatenate([np.zeros((1, d)), points])
    cls = jf.MinNormObtuseSimplex if simplex else jf.MinNormOrthogonal
    denoiser = cls(jnp.asarray(points), alpha=1.0)
    sigma = factor * float(denoiser.max_sigma)  # 2 alpha sigma >= min L
    match = r"needs 0 <= 2 \* alpha \* sigma < min_n L_n"
    with pytest.raises(eqx.EquinoxRuntimeError, match=match):
        denoiser(jnp.zeros(d), sigma)
    with pytest.raises(eqx.EquinoxRuntimeError, match=match):
        denoiser.network(sigma)


def test_min_norm_refuses_overlapping_noise_balls_under_jit():
    denoiser = jf.MinNormOrthogonal(jnp.asarray(_ortho(0, 3, 5)), alpha=1.0)
    ok = float(denoiser.max_sigma) * 0.999
    _apply(denoiser, jnp.zeros((4, 5)), jnp.asarray(ok))  # the largest valid sigma works
    with pytest.raises(eqx.EquinoxRuntimeError, match=r"2 \* alpha \* sigma < min_n L_n"):
        jax.block_until_ready(
            _apply(denoiser, jnp.zeros((4, 5)), jnp.asarray(float(denoiser.max_sigma)))
        )


@_PROPERTY
@given(alpha=st.floats(max_value=0.0) | st.just(float("nan")), simplex=st.booleans())
def test_min_norm_refuses_nonpositive_alpha(alpha, simplex):
    points = _ortho(0, 3, 5)
    if simplex:
        points = np.concatenate([np.zeros((1, 5)), points])
    cls = jf.MinNormObtuseSimplex if simplex else jf.MinNormOrthogonal
    with pytest.raises(ValueError, match="`alpha` must be positive"):
        cls(jnp.asarray(points), alpha=alpha)


@_PROPERTY
@given(
    shape=st.lists(st.integers(1, 4), min_size=0, max_size=4).filter(lambda s: len(s) != 2),
    simplex=st.booleans(),
)
def test_min_norm_refuses_wrong_shapes(shape, simplex):
    cls = jf.MinNormObtuseSimplex if simplex else jf.MinNormOrthogonal
    # The test suite's runtime shape checks would refuse these first; a user sees the
    # library's own message.
    with without_runtime_typechecks():
        with pytest.raises(ValueError, match=r"`points` must have shape \((n|N \+ 1), d\)"):
            cls(np.ones(shape))


def test_min_norm_refuses_degenerate_point_sets():
    with pytest.raises(ValueError, match=r"3 edges cannot be pairwise orthogonal or obtuse in d=2"):
        jf.MinNormOrthogonal(jnp.asarray(np.eye(3, 2) + np.eye(3, 2, k=-1)))
    with pytest.raises(ValueError, match="edge 1 has zero length"):
        jf.MinNormOrthogonal(jnp.asarray([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="edge 0 has zero length"):
        jf.MinNormObtuseSimplex(jnp.asarray([[1.0, 1.0], [1.0, 1.0], [0.0, 1.0]]))
    with without_runtime_typechecks():
        with pytest.raises(ValueError, match=r"N >= 1"):
            jf.MinNormObtuseSimplex(jnp.ones((1, 3)))


def test_min_norm_accepts_data_built_in_float32():
    # QR-built orthogonal data in float32 is orthogonal only to ~1e-7: the tolerance
    # must accept it, and the denoiser then computes in float32, agreeing with the
    # float64 closed form of the same points to float32 accuracy.
    sigma = jnp.float32(0.01)
    data = jf.data.orthogonal(30, 30, key=jr.key(0), rotate=True, dtype=jnp.float32)
    simplex = jf.data.obtuse_simplex(
        30, 30, key=jr.key(1), beta=0.0, rotate=True, dtype=jnp.float32
    )
    cases = [
        (jf.MinNormOrthogonal(data.points), data.points, closed_form_orthogonal),
        (jf.MinNormObtuseSimplex(simplex.points), simplex.points, closed_form_simplex),
    ]
    for denoiser, points, oracle in cases:
        assert denoiser.points.dtype == denoiser.alpha.dtype == jnp.float32
        y = 0.5 * jnp.sum(points, axis=0) + 0.1 * jr.normal(jr.key(2), (30,), jnp.float32)
        out = denoiser(y, sigma)
        assert out.dtype == jnp.float32 and out.shape == (30,)
        rho = float(denoiser.alpha) * float(sigma)
        expected = oracle(np.asarray(y, np.float64)[None], np.asarray(points, np.float64), rho)
        np.testing.assert_allclose(np.asarray(out, np.float64), expected[0], atol=1e-4)


# ---------------------------------------------------------------------------------------
# The empirical optimal denoiser.
# ---------------------------------------------------------------------------------------


def _empirical_case(seed=5, n=7, d=4):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), 1.5 * rng.normal(size=(64, d))


def test_empirical_optimal_matches_numpy_softmax():
    points, y = _empirical_case()
    denoiser = jf.EmpiricalOptimal(jnp.asarray(points))
    for sigma in (0.05, 0.3, 1.0, 5.0):
        out = np.asarray(_apply(denoiser, jnp.asarray(y), jnp.asarray(sigma)))
        np.testing.assert_allclose(
            out, empirical_denoiser(y, points, sigma), rtol=1e-12, atol=1e-13
        )


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_empirical_optimal_is_finite_down_to_tiny_sigma(dtype):
    points, y = _empirical_case()
    far = np.concatenate([1e3 * y[:8], -1e4 * np.ones((1, 4)), 1e4 * points[:1]])
    midpoints = 0.5 * (points[:-1] + points[1:])  # ties between two training points
    queries = np.concatenate([y, far, points, midpoints])
    denoiser = jf.EmpiricalOptimal(jnp.asarray(points, dtype))
    for sigma in (1.0, 1e-2, 1e-4, 1e-6):
        out = np.asarray(_apply(denoiser, jnp.asarray(queries, dtype), jnp.asarray(sigma, dtype)))
        assert out.dtype == dtype
        assert np.all(np.isfinite(out)), sigma
        # A posterior mean lies in the convex hull: here, inside the points' bounding box.
        assert np.all(out >= points.min(0) - 1e-5) and np.all(out <= points.max(0) + 1e-5)
    # At sigma = 1e-6 the posterior mean is the nearest training point (memorization),
    # exactly at a training point that point itself.
    nearest = points[np.argmin(((y[:, None] - points[None]) ** 2).sum(-1), axis=1)]
    tol = 1e-5 if dtype == jnp.float32 else 1e-12
    np.testing.assert_allclose(out[: len(y)], nearest, atol=tol)
    np.testing.assert_allclose(
        out[len(y) + len(far) : len(y) + len(far) + len(points)], points, atol=tol
    )


def test_empirical_optimal_refuses_nonpositive_sigma_and_bad_points():
    points, _ = _empirical_case()
    denoiser = jf.EmpiricalOptimal(jnp.asarray(points))
    for sigma in (0.0, jnp.asarray(-1.0)):  # refused at trace time or at run time
        with pytest.raises(RuntimeError, match="EmpiricalOptimal needs sigma > 0"):
            denoiser(jnp.zeros(4), sigma)
    with without_runtime_typechecks():
        with pytest.raises(ValueError, match=r"`points` must have shape \(n, d\)"):
            jf.EmpiricalOptimal(jnp.ones(4))


def test_capability_classes():
    # The flows test capabilities, not concrete classes.
    d = 4
    affine = jf.denoisers.AffineDenoiser(jnp.eye(d), jnp.zeros(d))
    piecewise = jf.denoisers.PiecewiseAffine(
        jnp.asarray([0.1, 1.0]), jnp.stack([jnp.eye(d), 2 * jnp.eye(d)]), jnp.ones((2, d))
    )
    for denoiser in (affine, piecewise):
        assert isinstance(denoiser, jf.denoisers.AbstractAffineDenoiser)
    y = jnp.arange(d, dtype=float)
    np.testing.assert_array_equal(piecewise(y, 0.9), 2 * y + 1)
    np.testing.assert_array_equal(affine(y, 0.9), y)

    points = jnp.eye(3, d) * jnp.asarray([1.0, 2.0, 3.0])[:, None]
    orthogonal = jf.MinNormOrthogonal(points)
    simplex = jf.MinNormObtuseSimplex(jf.data.obtuse_simplex(3, d).points)
    for denoiser in (orthogonal, simplex):
        assert isinstance(denoiser, jf.denoisers.AbstractClosedFormMinNorm)
        assert not isinstance(denoiser, jf.denoisers.AbstractAffineDenoiser)
        lengths = jnp.linalg.norm(denoiser.edges, axis=1)
        np.testing.assert_allclose(denoiser.max_sigma, jnp.min(lengths) / (2 * denoiser.alpha))
    np.testing.assert_array_equal(orthogonal.apex, jnp.zeros(d))
    np.testing.assert_array_equal(orthogonal.edges, points)
    np.testing.assert_array_equal(simplex.apex, simplex.points[0])
    np.testing.assert_array_equal(simplex.edges, simplex.points[1:] - simplex.points[0])
    assert not isinstance(jf.EmpiricalOptimal(points), jf.denoisers.AbstractClosedFormMinNorm)
