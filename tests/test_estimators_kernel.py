"""The exact squared L2 distance between a Gaussian and a Gaussian kernel mixture, and
the relative distance Delta of [H] (Section 4; docs/models.md#relative-distance), against
independent oracles: numerical integration, a 60-digit `decimal` evaluation of every overlap,
and NumPy implementations written from the formulas."""

import math
from decimal import Decimal, localcontext

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.special
import scipy.stats
from helpers import count_compilations
from jaxflow.data import Gaussian
from jaxflow.estimators import (
    KernelMixture,
    l2_distance,
    log_l2_distance,
    pair_sums,
    relative_distance,
)
from jaxflow.estimators._reference import reference_self_term


def gaussian(mean, cov, dtype=jnp.float64):
    return Gaussian(jnp.asarray(mean, dtype), jnp.asarray(cov, dtype))


def random_cov(rng, d, scale=1.0, floor=0.2):
    a = rng.normal(size=(d, d))
    return scale * (a @ a.T / d + floor * np.eye(d))


# ---------------------------------------------------------------------------------------
# D(q, r) against numerical integration.
# ---------------------------------------------------------------------------------------


def np_mixture_pdf(x, points, eps):
    """(1/N) sum_i N(x; x_i, eps^2 I) for x of shape (m, d)."""
    d = points.shape[1]
    sq = ((x[:, None, :] - points[None]) ** 2).sum(-1)
    return np.exp(-sq / (2 * eps**2)).mean(1) / (2 * np.pi * eps**2) ** (d / 2)


def test_l2_distance_1d_quadrature():
    rng = np.random.default_rng(0)
    points, s = rng.normal(size=(3, 1)), 0.8
    eps = s * 3 ** (-1.0)
    mq, sq = 0.3, 0.7
    q = gaussian([mq], [[sq**2]])
    qpdf = lambda x: scipy.stats.norm.pdf(x, mq, sq)
    rpdf = lambda x: np_mixture_pdf(np.array([[x]]), points, eps)[0]
    expected, _ = scipy.integrate.quad(
        lambda x: (qpdf(x) - rpdf(x)) ** 2, -20, 20, points=[mq], epsabs=1e-14, limit=200
    )
    np.testing.assert_allclose(l2_distance(q, KernelMixture(points, s)), expected, rtol=1e-8)
    # ... and against a Gaussian r.
    r = gaussian([-0.2], [[1.3**2]])
    rg = lambda x: scipy.stats.norm.pdf(x, -0.2, 1.3)
    expected, _ = scipy.integrate.quad(lambda x: (qpdf(x) - rg(x)) ** 2, -20, 20, epsabs=1e-14)
    np.testing.assert_allclose(l2_distance(q, r), expected, rtol=1e-8)


def test_l2_distance_2d_grid():
    rng = np.random.default_rng(1)
    points, s, bandwidth = rng.normal(size=(4, 2)), 1.1, 0.7
    eps = bandwidth * s * 4 ** (-1 / 2)
    mean, cov = np.array([0.2, -0.4]), np.array([[0.6, 0.25], [0.25, 0.4]])
    # A fine trapezoid grid: the integrand is smooth and decays like a Gaussian, so the
    # rule converges faster than any power of the step.
    h = 0.02
    g = np.arange(-7, 7 + h / 2, h)
    xx, yy = np.meshgrid(g, g, indexing="ij")
    x = np.stack([xx.ravel(), yy.ravel()], -1)
    qpdf = scipy.stats.multivariate_normal(mean, cov).pdf(x)
    rpdf = np_mixture_pdf(x, points, eps)
    expected = np.sum((qpdf - rpdf) ** 2) * h * h
    got = l2_distance(gaussian(mean, cov), KernelMixture(points, s, bandwidth))
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    np.testing.assert_allclose(
        log_l2_distance(gaussian(mean, cov), KernelMixture(points, s, bandwidth)),
        np.log(expected),
        rtol=1e-9,
    )


def test_l2_distance_degenerate_q_is_infinite():
    q = gaussian([0.0, 0.0], [[1.0, 1.0], [1.0, 1.0]])
    mix = KernelMixture(np.zeros((3, 2)))
    assert np.isposinf(l2_distance(q, mix))
    assert np.isposinf(l2_distance(q, gaussian([0.0, 0.0], np.eye(2))))


# ---------------------------------------------------------------------------------------
# Delta against a 60-digit oracle, in cases where subtracting two float64 distances fails.
# ---------------------------------------------------------------------------------------

_PI = Decimal("3.14159265358979323846264338327950288419716939937510582097494459230781640628")


def _dec(x):
    return [_dec(v) for v in x] if isinstance(x, list | tuple | np.ndarray) else Decimal(float(x))


def _det_inv(m):
    """Determinant and inverse by Gauss-Jordan elimination with partial pivoting."""
    n = len(m)
    a = [row[:] + [Decimal(int(i == j)) for j in range(n)] for i, row in enumerate(m)]
    det = Decimal(1)
    for c in range(n):
        p = max(range(c, n), key=lambda r: abs(a[r][c]))
        if p != c:
            a[c], a[p] = a[p], a[c]
            det = -det
        det *= a[c][c]
        pivot = a[c][c]
        a[c] = [v / pivot for v in a[c]]
        for r in range(n):
            if r != c and a[r][c] != 0:
                f = a[r][c]
                a[r] = [v - f * w for v, w in zip(a[r], a[c])]
    return det, [row[n:] for row in a]


def _dec_gauss(x, mu, cov):
    """N(x; mu, cov) in Decimal, straight from the formula."""
    d = len(x)
    det, inv = _det_inv(cov)
    y = [a - b for a, b in zip(x, mu)]
    quad = sum(y[i] * inv[i][j] * y[j] for i in range(d) for j in range(d))
    return (-quad / 2).exp() / ((2 * _PI) ** d * det).sqrt()


def _dec_distance(mean, cov, points=None, s=1.0, bandwidth=1.0, p=None):
    """D(q, r) = int q^2 - 2 int q r + int r^2, every overlap summed in Decimal."""
    d = len(mean)
    mu, sigma = _dec(mean), _dec(cov)
    eye = [[Decimal(int(i == j)) for j in range(d)] for i in range(d)]
    plus = lambda a, b, k=1: [[a[i][j] + k * b[i][j] for j in range(d)] for i in range(d)]
    zero = [Decimal(0)] * d
    total = _dec_gauss(zero, zero, plus(sigma, sigma))
    if p is not None:
        pm, pc = _dec(p[0]), _dec(p[1])
        return (
            total - 2 * _dec_gauss(mu, pm, plus(sigma, pc)) + _dec_gauss(zero, zero, plus(pc, pc))
        )
    x = _dec(points)
    n = len(x)
    eps2 = (_dec(bandwidth) * _dec(s)) ** 2 * (Decimal(-2) / d * Decimal(n).ln()).exp()
    kernel = [[eps2 * e for e in row] for row in eye]
    cross = sum(_dec_gauss(xi, mu, plus(sigma, kernel)) for xi in x) / n
    self_term = sum(_dec_gauss(xi, xj, plus(kernel, kernel)) for xi in x for xj in x) / (n * n)
    return total - 2 * cross + self_term


def _naive_distance(mean, cov, points, s=1.0):
    """The same three terms in float64 with scipy's densities, then summed."""
    n, d = points.shape
    eps2 = s**2 * n ** (-2 / d)
    mvn = scipy.stats.multivariate_normal
    q2 = mvn(np.zeros(d), 2 * cov).pdf(np.zeros(d))
    cross = mvn(mean, cov + eps2 * np.eye(d)).pdf(points).mean()
    diffs = (points[:, None] - points[None]).reshape(-1, d)
    self_term = mvn(np.zeros(d), 2 * eps2 * np.eye(d)).pdf(diffs).mean()
    return q2 - 2 * cross + self_term


def _spread_case(seed):
    """A concentrated q among far-apart kernels: every term of Delta is some e^-40 or less
    of int q^2, so the two distances agree to more digits than float64 has."""
    rng = np.random.default_rng(seed)
    d = 3
    corners = 9.0 * np.array(list(np.ndindex(2, 2, 2)), float)
    order = rng.permutation(8)
    train = corners[order[:3]] + 0.5 * rng.normal(size=(3, d))
    ref = corners[order[3:]] + 0.5 * rng.normal(size=(5, d))
    mean = 4.5 + 0.3 * rng.normal(size=d)
    cov = random_cov(rng, d, scale=1e-3)
    return mean, cov, train, ref


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_delta_against_decimal_oracle(seed):
    mean, cov, train, ref = _spread_case(seed)
    with localcontext() as ctx:
        ctx.prec = 60
        oracle = _dec_distance(mean, cov, train) - _dec_distance(mean, cov, ref)
    naive = _naive_distance(mean, cov, train) - _naive_distance(mean, cov, ref)
    # The case is hard: subtracting float64 distances gets no digit of Delta right.
    assert abs(naive - float(oracle)) >= 0.5 * abs(float(oracle))
    got = relative_distance(gaussian(mean, cov), KernelMixture(train), KernelMixture(ref))
    assert int(got.sign) == (1 if oracle > 0 else -1)
    assert bool(got.certain)
    np.testing.assert_allclose(float(got.log_abs), float(abs(oracle).ln()), rtol=0, atol=1e-10)
    np.testing.assert_allclose(got.delta, float(oracle), rtol=1e-10)


def test_delta_against_p_decimal_oracle():
    mean, cov, train, _ = _spread_case(3)
    d = len(mean)
    p_mean, s = train.mean(0) + 0.5, 1.3
    p = (p_mean, s**2 * np.eye(d))
    with localcontext() as ctx:
        ctx.prec = 60
        oracle = _dec_distance(mean, cov, train, s=s) - _dec_distance(mean, cov, p=p)
    got = relative_distance(
        gaussian(mean, cov), KernelMixture(train, s), Gaussian.isotropic(d, p_mean, s)
    )
    assert int(got.sign) == (1 if oracle > 0 else -1)
    np.testing.assert_allclose(got.delta, float(oracle), rtol=1e-10)
    # The kernel diagonal and int p^2 are equal analytically and cancel exactly.
    assert got.log_terms[0] == got.log_terms[1]


def test_degenerate_q_gives_finite_delta():
    # int q^2 is infinite while q is degenerate, but it cancels from Delta.
    rng = np.random.default_rng(4)
    d = 3
    a = rng.normal(size=(d, 2))
    cov = a @ a.T  # rank 2
    mean, train, ref = rng.normal(size=d), rng.normal(size=(4, d)), rng.normal(size=(6, d))
    with localcontext() as ctx:
        ctx.prec = 60
        # The oracle on a slightly regularised q converges to the degenerate Delta.
        reg = cov + 1e-30 * np.eye(d)
        oracle = _dec_distance(mean, reg, train) - _dec_distance(mean, reg, ref)
    got = relative_distance(gaussian(mean, cov), KernelMixture(train), KernelMixture(ref))
    assert np.isposinf(l2_distance(gaussian(mean, cov), KernelMixture(train)))
    np.testing.assert_allclose(got.delta, float(oracle), rtol=1e-8)


# ---------------------------------------------------------------------------------------
# d = 100: the terms against an independent NumPy implementation, where the naive
# difference of distances keeps only a few digits.
# ---------------------------------------------------------------------------------------


def _np_terms(mean, cov, points, s=1.0):
    """log 2 int q r and log of the off-diagonal self term, with explicit inverses and
    explicit differences."""
    n, d = points.shape
    eps2 = _np_eps2(n, d, s, 1.0)
    c = cov + eps2 * np.eye(d)
    inv = np.linalg.inv(c)
    _, logdet = np.linalg.slogdet(c)
    y = points - mean
    logs = -0.5 * (d * np.log(2 * np.pi) + logdet + np.einsum("ij,jk,ik->i", y, inv, y))
    cross = np.log(2) + scipy.special.logsumexp(logs) - np.log(n)
    pairs = -2 * np.log(n) - d / 2 * np.log(4 * np.pi * eps2) + _np_log_pairs(points, eps2)
    return cross, pairs


def test_delta_at_d100_against_numpy_terms():
    rng = np.random.default_rng(5)
    d, n = 100, 100
    train, ref = 10 + rng.normal(size=(n, d)), 10 + rng.normal(size=(400, d))
    # A generated-like q near the interpolation threshold: rank n - 1, huge along the data.
    centred = train - train.mean(0)
    cov = 50.0 * centred.T @ centred / n
    mean = train.mean(0) + 0.1 * rng.normal(size=d)
    got = relative_distance(gaussian(mean, cov), KernelMixture(train), KernelMixture(ref))
    cross_s, pairs_s = _np_terms(mean, cov, train)
    cross_o, pairs_o = _np_terms(mean, cov, ref)
    logs = np.array([pairs_s, pairs_o, cross_s, cross_o])
    signs = np.array([1, -1, -1, 1])
    top = logs.max()
    expected = math.fsum(signs * np.exp(logs - top))
    assert int(got.sign) == np.sign(expected)
    np.testing.assert_allclose(float(got.log_abs), top + np.log(abs(expected)), atol=1e-8)
    np.testing.assert_allclose(np.asarray(got.log_terms[2:]), logs, atol=1e-9)
    # The diagonal of each self term, (4 pi)^(-d/2) ~ e^-126.6, dwarfs Delta by ~e^-30:
    # as a difference of two float64 distances Delta would keep about three digits.
    diag = -d / 2 * np.log(4 * np.pi)
    assert float(got.log_abs) - diag < -25


# ---------------------------------------------------------------------------------------
# float32, the reference arithmetic, compilation, validation.
# ---------------------------------------------------------------------------------------


def test_float32_sign_is_right_when_certain():
    # Cells like [H]'s at d = 20, n = d - 1 (q degenerate, large along the data), where
    # Delta is the small difference of the pairwise and cross terms.
    rng = np.random.default_rng(6)
    d, n = 20, 19
    f64 = jax.jit(
        lambda *a: relative_distance(gaussian(a[0], a[1]), KernelMixture(a[2]), KernelMixture(a[3]))
    )
    f32 = jax.jit(
        lambda *a: relative_distance(
            gaussian(a[0], a[1], jnp.float32),
            KernelMixture(a[2].astype(jnp.float32)),
            KernelMixture(a[3].astype(jnp.float32)),
        )
    )
    agree = 0
    for scale in (0.05, 0.5, 5.0, 50.0):
        train, ref = 10 + rng.normal(size=(n, d)), 10 + rng.normal(size=(300, d))
        centred = train - train.mean(0)
        cov = scale * centred.T @ centred / n
        mean = train.mean(0) + 0.3 * rng.normal(size=d)
        exact, single = f64(mean, cov, train, ref), f32(mean, cov, train, ref)
        assert single.log_abs.dtype == jnp.float32
        assert bool(exact.certain)
        if bool(single.certain):
            agree += 1
            assert float(single.sign) == float(exact.sign)  # float32 against float64
            # The error bound bounds the error.
            err = abs(np.expm1(float(single.log_abs) - float(exact.log_abs)))
            assert err <= np.exp(float(single.log_error) - float(single.log_abs))
    assert agree >= 3


_F32 = np.float32
# The reference adds up its kernel self term over squares of this many points.
_SQUARE = 25


def _np_eps2(n, d, s, bandwidth):
    """The bandwidth rule, eps^2 = c^2 s^2 N^(-2/d)."""
    return (bandwidth * s) ** 2 * n ** (-2.0 / d)


def _np_exponents(x, eps2):
    """-|x_i - x_j|^2 / (4 eps^2) from explicit differences, float64."""
    return -((x[:, None] - x[None]) ** 2).sum(-1) / (4 * eps2)


def _np_log_pairs(x, eps2):
    """ln sum_{i != j} exp(-|x_i - x_j|^2 / 4 eps^2) over ordered pairs, float64."""
    return scipy.special.logsumexp(_np_exponents(x, eps2)[~np.eye(len(x), dtype=bool)])


def _np_squares(x, eps):
    """The float32 sums of exp(-|x_i - x_j|^2 / 4 eps^2) over every square of 25 x 25
    points, diagonal included, from explicit float32 differences, as the reference formed
    them."""
    x = np.asarray(x, _F32)
    blocks = math.ceil(len(x) / _SQUARE)
    out = np.zeros((blocks, blocks), _F32)
    for i in range(blocks):
        for j in range(blocks):
            diff = (
                x[i * _SQUARE : (i + 1) * _SQUARE, None] - x[None, j * _SQUARE : (j + 1) * _SQUARE]
            )
            out[i, j] = np.exp(-(diff**2).sum(-1) / _F32(4 * eps * eps)).sum(dtype=_F32)
    return out


def _np_sequential(squares):
    """The reference's float32 total: the squares added one by one, row-major."""
    total = _F32(0)
    for value in np.asarray(squares, _F32).reshape(-1):
        total = _F32(total + value)
    return total


def _np_eps32(n, d, s=1.0, bandwidth=1.0):
    """The reference's float32 bandwidth."""
    return _F32(bandwidth * s) * _F32(n) ** _F32(-1.0 / d)


def _np_reference_distance(mean, cov, points, s=1.0):
    """The reference implementation's arithmetic, written with NumPy: float32, explicit
    differences summed in 25 x 25 blocks, one inverse per point, (2 pi)^(1/2)."""
    f = np.float32
    x, mean, cov = points.astype(f), mean.astype(f), cov.astype(f)
    n, d = x.shape
    eps = _np_eps32(n, d, s)
    total = _np_sequential(_np_squares(x, eps))
    self_term = (
        total / f(n * n) / np.sqrt(f(2 * np.pi) * np.linalg.det(2 * eps * eps * np.eye(d, dtype=f)))
    )
    c = cov + eps * eps * np.eye(d, dtype=f)
    values = []
    for xi in x:
        inv = np.linalg.inv(c)
        y = xi - mean
        values.append(np.exp(-0.5 * y @ inv @ y) / np.sqrt(f(2 * np.pi) * np.linalg.det(c)))
    return self_term, np.sum(np.asarray(values, f)) / f(n)


def test_reference_arithmetic_against_numpy():
    rng = np.random.default_rng(7)
    d = 5
    train, ref = 10 + rng.normal(size=(30, d)), 10 + rng.normal(size=(60, d))
    cov, mean = random_cov(rng, d, 0.5), 10 + 0.2 * rng.normal(size=d)
    got = relative_distance(
        gaussian(mean, cov), KernelMixture(train), KernelMixture(ref), arithmetic="reference"
    )
    assert got.log_abs.dtype == jnp.float32 and got.arithmetic == "reference"
    self_s, cross_s = _np_reference_distance(mean, cov, train)
    self_o, cross_o = _np_reference_distance(mean, cov, ref)
    np.testing.assert_allclose(
        np.exp(np.asarray(got.log_terms)[[0, 1, 4, 5]]),
        [self_s, self_o, 2 * cross_s, 2 * cross_o],
        rtol=2e-5,
    )
    delta = (self_s - 2 * cross_s) - (self_o - 2 * cross_o)
    np.testing.assert_allclose(got.delta, delta, rtol=1e-3)


def test_reference_arithmetic_is_rounding_at_n_equal_d():
    # At d = 60, n = d the kernel diagonals dwarf every other term by ~e^-18, below
    # float32's resolution: the reference Delta is the rounding of two equal numbers.
    rng = np.random.default_rng(8)
    d = 60
    train, ref = 10 + rng.normal(size=(d, d)), 10 + rng.normal(size=(500, d))
    centred = train - train.mean(0)
    q = gaussian(train.mean(0), 50.0 * centred.T @ centred / d)
    ref_arith = relative_distance(
        q, KernelMixture(train), KernelMixture(ref), arithmetic="reference"
    )
    exact = relative_distance(q, KernelMixture(train), KernelMixture(ref))
    assert bool(exact.certain) and not bool(ref_arith.certain)
    assert float(ref_arith.log_terms[0]) - float(exact.log_abs) > 10  # float32, float64


def test_no_recompilation():
    rng = np.random.default_rng(9)
    f = lambda: relative_distance(
        gaussian(rng.normal(size=4), random_cov(rng, 4)),
        KernelMixture(rng.normal(size=(7, 4))),
        KernelMixture(rng.normal(size=(11, 4))),
    )
    jax.block_until_ready(f())
    with count_compilations() as n:
        jax.block_until_ready(f())
        jax.block_until_ready(f())
    assert n[0] == 0


def test_validation():
    q = gaussian(np.zeros(3), np.eye(3))
    mix = KernelMixture(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="dimension"):
        relative_distance(q, KernelMixture(np.zeros((4, 2))), mix)
    with pytest.raises(TypeError, match="reference"):
        relative_distance(q, mix, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="arithmetic"):
        relative_distance(q, mix, mix, arithmetic="float16")
    with pytest.raises(ValueError, match="points"):
        KernelMixture(np.zeros(3))
    with pytest.raises(TypeError, match="points"):
        KernelMixture(np.zeros((3, 2), dtype=np.int32))
    with pytest.raises(ValueError, match="`s` must be positive and finite, got 0.0"):
        KernelMixture(np.zeros((4, 3)), s=0.0)
    # A traced s is checked inside the compiled program.
    traced = eqx.filter_jit(
        lambda s: relative_distance(q, KernelMixture(np.zeros((4, 3)), s=s), mix)
    )
    with pytest.raises(eqx.EquinoxRuntimeError, match="s > 0"):
        traced(0.0)


@pytest.mark.parametrize("arithmetic", ["exact", "reference"])
def test_masked_mixture_is_the_mixture_of_its_kept_points(arithmetic):
    # A training set padded with far-away junk rows and masked: every term, hence Delta
    # and its bound, is that of the unpadded set to rounding, and one compilation serves
    # every count.
    rng = np.random.default_rng(10)
    d, n, rows = 6, 9, 16
    train, ref = 10 + rng.normal(size=(rows, d)), 10 + rng.normal(size=(40, d))
    train[n:] = 1e3 * rng.normal(size=(rows - n, d))
    q = gaussian(10 + 0.2 * rng.normal(size=d), random_cov(rng, d, 0.5))
    mask = np.arange(rows) < n
    got = relative_distance(
        q, KernelMixture(train, mask=mask), KernelMixture(ref), arithmetic=arithmetic
    )
    want = relative_distance(q, KernelMixture(train[:n]), KernelMixture(ref), arithmetic=arithmetic)
    assert got.sign == want.sign
    # Measured here: bitwise equal terms; only the bound's summation term counts the
    # padding rows. Tolerances leave room for another platform's fusions.
    rtol = 1e-13 if arithmetic == "exact" else 2e-6
    finite = np.isfinite(np.asarray(want.log_terms))
    np.testing.assert_allclose(
        np.asarray(got.log_terms)[finite], np.asarray(want.log_terms)[finite], rtol=rtol
    )
    np.testing.assert_allclose(got.log_abs, want.log_abs, rtol=rtol)
    np.testing.assert_allclose(got.log_error, want.log_error, rtol=1e-2)
    if arithmetic == "exact":
        np.testing.assert_allclose(
            log_l2_distance(q, KernelMixture(train, mask=mask)),
            log_l2_distance(q, KernelMixture(train[:n])),
            rtol=1e-13,
        )
    with count_compilations() as compiled:
        relative_distance(
            q,
            KernelMixture(train, mask=np.arange(rows) < n + 3),
            KernelMixture(ref),
            arithmetic=arithmetic,
        )
    assert compiled[0] == 0


# ---------------------------------------------------------------------------------------
# The pair sums of a sample, shared by both arithmetics, against NumPy: the exact
# log-sum, the reference's 25 x 25 squares, and the squares left out as negligible.
# ---------------------------------------------------------------------------------------

# A term below e^_THRESHOLD (2^-25 / 625) is too small to change the reference's
# float32 total.
_THRESHOLD = math.log(2.0**-25 / _SQUARE**2)
# Compiled once per option set (as a sweep calls them): eager, each call retraces a scan.
_pair_sums = eqx.filter_jit(pair_sums)
_reference_self_term = eqx.filter_jit(reference_self_term)


# N = 130 (not a multiple of 25) with block_size 60: three blocks of 50 rows, so that the
# scan, the blocks above the diagonal and their transposes all take part; c = 2 keeps
# most terms well above the negligible ones.
_N, _D, _S, _C, _BLOCK = 130, 3, 1.3, 2.0, 60


@pytest.fixture(scope="module")
def sample():
    rng = np.random.default_rng(11)
    return 5.0 + _S * rng.normal(size=(_N, _D))


def test_pair_sums_log_sum_is_the_off_diagonal_kernel_sum(sample):
    eps2 = _np_eps2(_N, _D, _S, _C)
    want = _np_log_pairs(sample, eps2)
    mix = KernelMixture(sample, _S, _C)
    np.testing.assert_allclose(float(mix.eps2), eps2, rtol=1e-14)
    exact = _pair_sums(mix, gram_dtype=None, block_size=_BLOCK)
    assert exact.squares is None
    assert abs(float(exact.log_sum) - want) <= 1e-12
    assert float(exact.log_error) < math.log(1e-11)
    # A float32 Gram matrix: within its own bound, which is not vacuous.
    single = _pair_sums(mix, gram_dtype=jnp.float32, block_size=_BLOCK, reference_blocks=True)
    error = abs(math.expm1(float(single.log_sum) - want))
    assert 0 < error <= math.exp(float(single.log_error)) < 1e-2
    # One block instead of a scan over three: the same sum.
    whole = _pair_sums(mix, gram_dtype=None, block_size=1024)
    assert abs(float(whole.log_sum) - want) <= 1e-12


def test_pair_sums_squares_are_the_reference_25_by_25_sums(sample):
    mix = KernelMixture(sample, _S, _C)
    got = _pair_sums(mix, gram_dtype=jnp.float32, block_size=_BLOCK, reference_blocks=True)
    want = _np_squares(sample, math.sqrt(_np_eps2(_N, _D, _S, _C)))
    assert got.squares.shape == (6, 6) and got.squares.dtype == jnp.float32
    # Most terms count: the squares are far from their diagonal counts alone.
    assert np.min(want[~np.eye(6, dtype=bool)]) > 1.0
    np.testing.assert_allclose(got.squares, want, rtol=1e-5)
    # The same squares from one block, without a scan.
    whole = _pair_sums(mix, gram_dtype=jnp.float32, block_size=1024, reference_blocks=True)
    np.testing.assert_allclose(whole.squares, want, rtol=1e-5)


def test_pair_sums_of_a_masked_sample_are_those_of_its_kept_rows(sample):
    # 110 kept rows (not a multiple of 25) among 130: the padding rows, far away junk,
    # add exact zeros to the squares they share with kept rows.
    kept = 110
    padded = sample.copy()
    padded[kept:] = 1e3 * np.random.default_rng(12).normal(size=(_N - kept, _D))
    mix = KernelMixture(padded, _S, _C, mask=np.arange(_N) < kept)
    got = _pair_sums(mix, gram_dtype=jnp.float32, block_size=_BLOCK, reference_blocks=True)
    x = sample[:kept]
    eps2 = _np_eps2(kept, _D, _S, _C)
    want = _np_squares(x, math.sqrt(eps2))
    assert got.squares.shape == (6, 6)
    np.testing.assert_allclose(got.squares[:5, :5], want, rtol=1e-5)
    np.testing.assert_array_equal(got.squares[5], 0.0)
    np.testing.assert_array_equal(got.squares[:, 5], 0.0)
    error = abs(math.expm1(float(got.log_sum) - _np_log_pairs(x, eps2)))
    assert error <= math.exp(float(got.log_error))


def _far_sample(rng, n=300, d=80):
    """Points of N(10, I) at d = 80 with bandwidth 0.8: every pair's term lies far below
    e^-24, under the reference's float32 resolution."""
    return 10.0 + rng.normal(size=(n, d)), 0.8


def _reference_total(squares, shape):
    """The reference's sequential float32 total of NumPy `squares`, as the first of
    zero squares of `shape`: added to zeros it stays bitwise itself, and goes through
    `reference_self_term`'s own normalisation."""
    out = np.zeros(shape, _F32)
    out[0, 0] = _np_sequential(squares)
    return out


def test_reference_self_term_unchanged_by_the_negligible_squares():
    x, c = _far_sample(np.random.default_rng(13))
    n, d = x.shape
    mix = KernelMixture(x, 1.0, c)
    exponents = _np_exponents(x, _np_eps2(n, d, 1.0, c))
    assert np.max(exponents[~np.eye(n, dtype=bool)]) < -24
    # Every block (three of 100 points) was skipped: each square holds its diagonal's
    # count alone.
    squares = _pair_sums(mix, gram_dtype=jnp.float32, block_size=100, reference_blocks=True)
    np.testing.assert_array_equal(squares.squares, np.diag([25.0] * 12))
    want = _reference_self_term(
        mix, _reference_total(_np_squares(x, _np_eps32(n, d, 1.0, c)), (12, 12))
    )
    got = _reference_self_term(mix)
    assert got.dtype == jnp.float32 and np.array_equal(np.asarray(got), np.asarray(want))


def test_reference_self_term_with_some_blocks_reduced_and_some_skipped():
    # Three blocks of 100 points. One pair per block placed at a chosen exponent: e^-2 in
    # the first (it moves the total by ~1e-3), just above the threshold in the second
    # (reduced), just below it in the third (skipped); every other term is below e^-30.
    rng = np.random.default_rng(14)
    x, c = _far_sample(rng)
    n, d = x.shape
    eps2 = _np_eps2(n, d, 1.0, c)
    for first, exponent in [(0, -2.0), (100, _THRESHOLD + 0.7), (200, _THRESHOLD - 0.7)]:
        u = rng.normal(size=d)
        x[first + 1] = x[first] + u / np.linalg.norm(u) * math.sqrt(-4 * eps2 * exponent)
    exponents = _np_exponents(x, eps2)
    np.fill_diagonal(exponents, -np.inf)
    top = {
        (i, j): exponents[100 * i : 100 * (i + 1), 100 * j : 100 * (j + 1)].max()
        for i in range(3)
        for j in range(i, 3)
    }
    assert top[1, 1] > _THRESHOLD > top[2, 2]
    assert max(top[0, 1], top[0, 2], top[1, 2]) < -24
    mix = KernelMixture(x, 1.0, c)
    squares = _pair_sums(mix, gram_dtype=jnp.float32, block_size=100, reference_blocks=True)
    squares = np.asarray(squares.squares)
    # The first two diagonal blocks are reduced: their squares off the diagonal hold
    # their tiny terms. The third is skipped, and so is every block off the diagonal
    # (above it, and the transposes below it).
    off = ~np.eye(4, dtype=bool)
    assert np.all(squares[:4, :4][off] > 0) and np.all(squares[4:8, 4:8][off] > 0)
    np.testing.assert_array_equal(squares[8:, 8:], np.diag([25.0] * 4))
    block = np.arange(12) // 4
    np.testing.assert_array_equal(squares[block[:, None] != block[None]], 0.0)
    oracle = _np_squares(x, _np_eps32(n, d, 1.0, c))
    assert _np_sequential(oracle) > n + 0.2
    want = _reference_self_term(mix, _reference_total(oracle, (12, 12)))
    np.testing.assert_allclose(_reference_self_term(mix, squares), want, rtol=1e-6)
