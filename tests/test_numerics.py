"""The NaN-safe helpers of `jaxflow._numerics`, each tested on its own: a scalar or single
case, a batch, the edge cases each docstring promises (infinities, exact cancellation,
empty sums) and gradients, as optax's numerics tests do."""

import decimal

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxflow._numerics import (
    clip01,
    eigvalsh,
    gaussian_log_weights,
    inf_norm,
    log_diff_exp,
    signed_logsumexp,
)


NINF = -np.inf


def _exact_log_abs_sum(log_abs, signs):
    """log |sum_k s_k e^{a_k}| and its sign to 50 digits, for finite a_k."""
    with decimal.localcontext() as ctx:
        ctx.prec = 50
        total = sum(
            decimal.Decimal(int(s)) * decimal.Decimal(float(a)).exp()
            for a, s in zip(log_abs, signs)
        )
        if total == 0:
            return NINF, 0.0
        return float(abs(total).ln()), float(np.sign(total))


def _no_nan(tree):
    return not any(np.any(np.isnan(np.asarray(x))) for x in jax.tree.leaves(tree))


# ---------------------------------------------------------------------------------------
# log_diff_exp
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "a, b",
    [(1.0, 0.0), (0.0, 1.0), (-700.0, -701.0), (5.0, 5.0 - 1e-12), (3.0, NINF), (NINF, 3.0)],
)
def test_log_diff_exp_matches_exact(a, b):
    log_abs, sign = log_diff_exp(jnp.asarray(a), jnp.asarray(b))
    want_log, want_sign = _exact_log_abs_sum(
        [x for x in (a, b) if np.isfinite(x)], [s for x, s in ((a, 1), (b, -1)) if np.isfinite(x)]
    )
    assert float(sign) == want_sign
    # Relative to the log-magnitude; 1e-12 apart the difference keeps ~4 fewer digits
    # in `a - b` itself, which is the input's own rounding, not the helper's.
    np.testing.assert_allclose(float(log_abs), want_log, rtol=1e-14, atol=1e-14)


def test_log_diff_exp_batch():
    a = jnp.asarray([[1.0, 2.0, 3.0], [NINF, 0.0, 4.0]])
    b = jnp.asarray([[0.0, 2.0, NINF], [0.0, 2.0, NINF]])
    log_abs, sign = log_diff_exp(a, b)
    assert log_abs.shape == sign.shape == (2, 3)
    np.testing.assert_array_equal(np.asarray(sign), [[1, 0, 1], [-1, -1, 1]])
    np.testing.assert_allclose(np.asarray(log_abs)[:, 2], [3.0, 4.0])


def test_log_diff_exp_exact_cancellation_and_infinities_are_not_nan():
    for a, b in [(2.5, 2.5), (NINF, NINF), (-1e300, -1e300)]:
        log_abs, sign = log_diff_exp(jnp.asarray(a), jnp.asarray(b))
        assert float(log_abs) == NINF and float(sign) == 0.0
        # The value is -inf and flat: a zero gradient, not NaN, also for a consumer that
        # maps it back to a finite number.
        for f in (
            lambda a, b: log_diff_exp(a, b)[0],
            lambda a, b: log_diff_exp(a, b)[1] * jnp.exp(log_diff_exp(a, b)[0]),
        ):
            grads = jax.grad(f, argnums=(0, 1))(jnp.asarray(a), jnp.asarray(b))
            assert _no_nan(grads), (a, b, grads)
    ga, gb = jax.grad(lambda a, b: log_diff_exp(a, b)[0], argnums=(0, 1))(2.5, 2.5)
    assert float(ga) == float(gb) == 0.0


def test_log_diff_exp_gradient():
    # d/da ln(e^a - e^b) = e^a / (e^a - e^b), d/db = -e^b / (e^a - e^b).
    a, b = 2.0, 1.0
    ga, gb = jax.grad(lambda a, b: log_diff_exp(a, b)[0], argnums=(0, 1))(a, b)
    diff = np.exp(a) - np.exp(b)
    np.testing.assert_allclose([ga, gb], [np.exp(a) / diff, -np.exp(b) / diff], rtol=1e-14)
    ga, gb = jax.grad(lambda a, b: log_diff_exp(a, b)[0], argnums=(0, 1))(a, NINF)
    assert float(ga) == 1.0 and float(gb) == 0.0


# ---------------------------------------------------------------------------------------
# signed_logsumexp
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "log_abs, signs",
    [
        ([0.3], [1.0]),
        ([1.0, 0.5, -2.0, 0.9], [1.0, -1.0, 1.0, -1.0]),
        ([-1000.0, -1001.0, -1000.5], [1.0, 1.0, -1.0]),  # below every float's range
        ([700.0, 699.0], [-1.0, 1.0]),  # above float64's range
        ([2.0, NINF, 1.0, 5.0], [1.0, -1.0, -1.0, 0.0]),  # -inf and sign-0 terms ignored
    ],
)
def test_signed_logsumexp_matches_exact(log_abs, signs):
    got_log, got_sign = signed_logsumexp(jnp.asarray(log_abs), jnp.asarray(signs))
    live = [(a, s) for a, s in zip(log_abs, signs) if np.isfinite(a) and s != 0]
    want_log, want_sign = _exact_log_abs_sum(*zip(*live))
    assert float(got_sign) == want_sign
    np.testing.assert_allclose(float(got_log), want_log, rtol=1e-14, atol=1e-13)


def test_signed_logsumexp_batch():
    rng = np.random.default_rng(0)
    log_abs = rng.normal(size=(4, 3, 5))
    signs = rng.choice([-1.0, 1.0], size=(4, 3, 5))
    got_log, got_sign = signed_logsumexp(jnp.asarray(log_abs), jnp.asarray(signs))
    assert got_log.shape == got_sign.shape == (4, 3)
    total = np.sum(signs * np.exp(log_abs), axis=-1)
    np.testing.assert_allclose(np.asarray(got_log), np.log(np.abs(total)), rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(got_sign), np.sign(total))


def test_signed_logsumexp_shape_mismatch_raises():
    # The suite's runtime shape checks refuse it first; without them, broadcasting does.
    with pytest.raises(TypeError, match=r"(?i)shape"):
        signed_logsumexp(jnp.zeros(3), jnp.ones(4))


@pytest.mark.parametrize(
    "log_abs, signs",
    [
        ([NINF, NINF, NINF], [1.0, -1.0, 1.0]),  # every term -inf
        ([1.0, 2.0], [0.0, 0.0]),  # every sign 0
        ([1.5, 1.5], [1.0, -1.0]),  # exact cancellation
        ([1.5, NINF, 1.5], [-1.0, 1.0, 1.0]),
        ([], []),  # the empty sum
    ],
)
def test_signed_logsumexp_zero_sum_is_minus_inf_without_nan(log_abs, signs):
    log_abs, signs = jnp.asarray(log_abs, jnp.float64), jnp.asarray(signs, jnp.float64)
    got_log, got_sign = signed_logsumexp(log_abs, signs)
    assert float(got_log) == NINF and float(got_sign) == 0.0
    # Batched, the zero row must not disturb its neighbour.
    both = signed_logsumexp(
        jnp.stack([log_abs, jnp.zeros_like(log_abs)]), jnp.stack([signs, jnp.ones_like(signs)])
    )
    assert float(both[0][0]) == NINF and _no_nan(both)
    for f in (
        lambda x: signed_logsumexp(x, signs)[0],
        lambda x: signed_logsumexp(x, signs)[1] * jnp.exp(signed_logsumexp(x, signs)[0]),
    ):
        grad = jax.grad(f)(log_abs)
        assert _no_nan(grad) and np.all(np.asarray(grad) == 0.0), grad


def test_signed_logsumexp_gradient():
    # d/da_k ln|sum s e^a| = s_k e^{a_k} / sum s e^a; -inf terms get 0.
    log_abs = jnp.asarray([1.0, 0.5, NINF, -0.3])
    signs = jnp.asarray([1.0, -1.0, 1.0, 1.0])
    grad = jax.grad(lambda x: signed_logsumexp(x, signs)[0])(log_abs)
    weights = np.asarray(signs) * np.exp(np.asarray(log_abs))
    np.testing.assert_allclose(np.asarray(grad), weights / weights.sum(), rtol=1e-14)


# ---------------------------------------------------------------------------------------
# eigvalsh
# ---------------------------------------------------------------------------------------


def _with_spectrum(spectrum, seed=0):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(len(spectrum),) * 2))
    return (q * np.asarray(spectrum, float)) @ q.T


def test_eigvalsh_values_single_and_batch():
    a = _with_spectrum([3.0, 1.0, 2.0])
    np.testing.assert_allclose(np.asarray(eigvalsh(jnp.asarray(a))), [1.0, 2.0, 3.0], rtol=1e-14)
    batch = np.stack([_with_spectrum([1.0, 1.0, 4.0], seed=s) for s in range(3)])
    np.testing.assert_allclose(
        np.asarray(jax.vmap(eigvalsh)(jnp.asarray(batch))), np.linalg.eigvalsh(batch), atol=1e-14
    )


@pytest.mark.parametrize(
    "spectrum",
    [
        [2.0, 2.0, 2.0],  # isotropic: every eigenvalue repeated
        [1.0, 1.0, 3.0],  # one repeated pair, in a random basis
        [0.0, 0.0, 0.0, 5.0],  # rank one: the repeated zeros of a degenerate covariance
    ],
)
def test_eigvalsh_gradient_at_repeated_eigenvalues(spectrum):
    a = jnp.asarray(_with_spectrum(spectrum))
    # A symmetric function of the spectrum is smooth at repeated eigenvalues:
    # grad sum(lambda^2) = 2A, grad sum(lambda^3) = 3A^2, grad sum(log lambda) = A^{-1}.
    grad2 = jax.grad(lambda a: jnp.sum(eigvalsh(a) ** 2))(a)
    grad3 = jax.grad(lambda a: jnp.sum(eigvalsh(a) ** 3))(a)
    assert _no_nan((grad2, grad3))
    np.testing.assert_allclose(np.asarray(grad2), 2 * np.asarray(a), atol=1e-13)
    np.testing.assert_allclose(np.asarray(grad3), 3 * np.asarray(a @ a), atol=1e-12)
    if min(spectrum) > 0:
        grad_log = jax.grad(lambda a: jnp.sum(jnp.log(eigvalsh(a))))(a)
        np.testing.assert_allclose(np.asarray(grad_log), np.linalg.inv(a), atol=1e-13)
    # Forward mode along a symmetric direction agrees with central differences.
    rng = np.random.default_rng(1)
    direction = rng.normal(size=a.shape)
    direction = jnp.asarray(direction + direction.T)
    f = lambda a: jnp.sum(jnp.sin(eigvalsh(a)))  # symmetric in the eigenvalues
    _, tangent = jax.jvp(f, (a,), (direction,))
    h = 1e-5
    fd = (f(a + h * direction) - f(a - h * direction)) / (2 * h)
    np.testing.assert_allclose(float(tangent), float(fd), rtol=1e-8, atol=1e-9)
    # Batched as well.
    batched = jax.vmap(jax.grad(lambda a: jnp.sum(eigvalsh(a) ** 2)))(jnp.stack([a, 2 * a]))
    np.testing.assert_allclose(np.asarray(batched), 2 * np.stack([a, 2 * a]), atol=1e-12)


# ---------------------------------------------------------------------------------------
# gaussian_log_weights
# ---------------------------------------------------------------------------------------


def test_gaussian_log_weights_match_naive_formula():
    rng = np.random.default_rng(2)
    y, points, sigma = rng.normal(size=3), rng.normal(size=(6, 3)), 0.7
    sq = np.sum((y - points) ** 2, axis=1)
    want = -(sq - sq.min()) / (2 * sigma**2)
    got = gaussian_log_weights(jnp.asarray(y), jnp.asarray(points), jnp.asarray(sigma))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-13, atol=1e-13)
    assert float(got[np.argmin(sq)]) == 0.0
    # The gradient in y of the same formula.
    g = jax.jacobian(gaussian_log_weights)(jnp.asarray(y), jnp.asarray(points), jnp.asarray(sigma))
    n = np.argmin(sq)
    want_g = -((y - points) - (y - points[n])) / sigma**2
    np.testing.assert_allclose(np.asarray(g), want_g, rtol=1e-12, atol=1e-13)


def test_gaussian_log_weights_extremes_are_finite_or_minus_inf():
    y, one = jnp.zeros(2), jnp.asarray(1.0)
    # Coincident points: every logit 0, gradient finite.
    same = jnp.zeros((3, 2))
    np.testing.assert_array_equal(np.asarray(gaussian_log_weights(y, same, one)), 0.0)
    assert _no_nan(jax.jacobian(gaussian_log_weights)(y, same, one))
    # Overflowing distances: the far logits are -inf, the nearest stays 0, no NaN.
    far = jnp.asarray([[1e-3, 0.0], [1e200, 0.0], [0.0, -1e250]])
    got = np.asarray(gaussian_log_weights(y, far, jnp.asarray(1e-100)))
    np.testing.assert_array_equal(got, [0.0, NINF, NINF])
    # A sigma whose square underflows in float32 still separates the points.
    pts32 = jnp.asarray([[1e-20, 0.0], [2e-20, 0.0]], jnp.float32)
    sigma32 = jnp.asarray(1e-20, jnp.float32)
    got32 = np.asarray(gaussian_log_weights(jnp.zeros(2, jnp.float32), pts32, sigma32))
    np.testing.assert_allclose(got32, [0.0, -1.5], rtol=1e-5)


# ---------------------------------------------------------------------------------------
# inf_norm, clip01
# ---------------------------------------------------------------------------------------


def test_inf_norm_and_clip01():
    x = jnp.asarray([[1.0, -3.0, 2.0], [0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(np.asarray(inf_norm(x)), [3.0, 0.0])
    assert float(inf_norm(x[0])) == 3.0
    np.testing.assert_array_equal(np.asarray(clip01(jnp.asarray([-1.0, 0.3, 2.0]))), [0, 0.3, 1])
