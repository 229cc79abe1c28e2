import jax
import jax.numpy as jnp
import jaxflow
import numpy as np
import pytest
import scipy.integrate
import scipy.stats
from helpers import count_compilations
from jaxflow.data import Gaussian
from jaxflow.estimators import (
    hellinger_squared,
    isotropic_divergences,
    kl_divergence,
    kl_infinite_data,
)


# ---------------------------------------------------------------------------------------
# Independent NumPy oracles: the textbook formulas with explicit inverses and slogdet.
# ---------------------------------------------------------------------------------------


def np_kl(mq, cq, mp, cp):
    d = mq.size
    inv = np.linalg.inv(cp)
    delta = mq - mp
    return 0.5 * (
        np.trace(inv @ cq)
        + delta @ inv @ delta
        - d
        + np.linalg.slogdet(cp)[1]
        - np.linalg.slogdet(cq)[1]
    )


def np_hellinger(mq, cq, mp, cp):
    cbar = 0.5 * (cq + cp)
    delta = mq - mp
    log_bc = (
        0.25 * np.linalg.slogdet(cq)[1]
        + 0.25 * np.linalg.slogdet(cp)[1]
        - 0.5 * np.linalg.slogdet(cbar)[1]
        - 0.125 * delta @ np.linalg.solve(cbar, delta)
    )
    return 1.0 - np.exp(log_bc)


def random_gaussian(rng, d, scale=1.0):
    a = rng.normal(size=(d, d))
    return rng.normal(size=d) * scale, a @ a.T / d + 0.3 * np.eye(d)


def as_gaussian(mean, cov, dtype=jnp.float64):
    return Gaussian(jnp.asarray(mean, dtype), jnp.asarray(cov, dtype))


@pytest.mark.parametrize("d", [1, 3])
def test_against_numpy(d):
    rng = np.random.default_rng(d)
    for _ in range(3):
        (mq, cq), (mp, cp) = random_gaussian(rng, d), random_gaussian(rng, d)
        q, p = as_gaussian(mq, cq), as_gaussian(mp, cp)
        np.testing.assert_allclose(kl_divergence(q, p), np_kl(mq, cq, mp, cp), rtol=1e-10)
        np.testing.assert_allclose(kl_divergence(p, q), np_kl(mp, cp, mq, cq), rtol=1e-10)
        np.testing.assert_allclose(
            hellinger_squared(q, p), np_hellinger(mq, cq, mp, cp), rtol=1e-10
        )
        np.testing.assert_allclose(hellinger_squared(p, q), hellinger_squared(q, p), rtol=1e-12)


def test_monte_carlo():
    # KL(q||p) = E_q[log q - log p] and BC = E_q[sqrt(p / q)], by sampling from q.
    rng = np.random.default_rng(0)
    d, m = 3, 100_000
    (mq, cq), (mp, cp) = random_gaussian(rng, d), random_gaussian(rng, d)
    x = rng.multivariate_normal(mq, cq, size=m)
    log_ratio = scipy.stats.multivariate_normal(mq, cq).logpdf(x) - scipy.stats.multivariate_normal(
        mp, cp
    ).logpdf(x)
    q, p = as_gaussian(mq, cq), as_gaussian(mp, cp)
    kl_mc, kl_se = log_ratio.mean(), log_ratio.std() / np.sqrt(m)
    assert abs(float(kl_divergence(q, p)) - kl_mc) < 5 * kl_se
    bc = np.exp(-0.5 * log_ratio)
    h2_mc, h2_se = 1 - bc.mean(), bc.std() / np.sqrt(m)
    assert abs(float(hellinger_squared(q, p)) - h2_mc) < 5 * h2_se


def test_hellinger_by_quadrature_1d():
    mq, sq, mp, sp = 0.3, 0.7, -0.4, 1.3
    bc, _ = scipy.integrate.quad(
        lambda x: np.sqrt(scipy.stats.norm.pdf(x, mq, sq) * scipy.stats.norm.pdf(x, mp, sp)),
        -20,
        20,
    )
    h2 = hellinger_squared(as_gaussian([mq], [[sq**2]]), as_gaussian([mp], [[sp**2]]))
    np.testing.assert_allclose(h2, 1 - bc, rtol=1e-9)


def _degenerate(rng, d, rank, mean=None):
    basis = np.linalg.qr(rng.normal(size=(d, rank)))[0]
    cov = basis @ np.diag(rng.uniform(0.5, 2.0, rank)) @ basis.T
    return (rng.normal(size=d) if mean is None else mean), cov, basis


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_singular_gives_inf_and_one(dtype):
    rng = np.random.default_rng(1)
    d = 3
    mq, cq, _ = _degenerate(rng, d, 2)
    q = as_gaussian(mq, cq, dtype)
    p = Gaussian.isotropic(d, mean=1.0, dtype=dtype)
    assert np.isposinf(kl_divergence(q, p)) and np.isposinf(kl_divergence(p, q))
    assert float(hellinger_squared(q, p)) == 1.0 and float(hellinger_squared(p, q)) == 1.0
    # A zero covariance (a point mass) and two degenerate Gaussians on different subspaces.
    point = as_gaussian(mq, np.zeros((d, d)), dtype)
    other = as_gaussian(*_degenerate(rng, d, 2)[:2], dtype)
    for a, b in [(point, p), (p, point), (q, other), (point, point)]:
        kl, h2 = kl_divergence(a, b), hellinger_squared(a, b)
        assert not np.isnan(kl) and not np.isnan(h2)
    assert np.isposinf(kl_divergence(q, other)) and float(hellinger_squared(q, other)) == 1.0


def test_same_degenerate_support_is_finite():
    # Two Gaussians on the same affine subspace: the divergence is that of their
    # coordinates in the subspace.
    rng = np.random.default_rng(2)
    d, r = 3, 2
    basis = np.linalg.qr(rng.normal(size=(d, r)))[0]
    (aq, cq), (ap, cp) = random_gaussian(rng, r), random_gaussian(rng, r)
    offset = rng.normal(size=d)
    q = as_gaussian(offset + basis @ aq, basis @ cq @ basis.T)
    p = as_gaussian(offset + basis @ ap, basis @ cp @ basis.T)
    np.testing.assert_allclose(kl_divergence(q, p), np_kl(aq, cq, ap, cp), rtol=1e-8)
    np.testing.assert_allclose(hellinger_squared(q, p), np_hellinger(aq, cq, ap, cp), rtol=1e-8)
    # Shifting q's mean off the subspace makes the two mutually singular.
    normal = np.linalg.svd(basis.T)[2][-1]
    shifted = as_gaussian(offset + basis @ aq + 1e-3 * normal, basis @ cq @ basis.T)
    assert np.isposinf(kl_divergence(shifted, p)) and float(hellinger_squared(shifted, p)) == 1.0


def test_vmap_mixes_finite_and_singular():
    d = 3
    covs = jnp.stack([jnp.eye(d), jnp.diag(jnp.array([1.0, 1.0, 0.0])), 2 * jnp.eye(d)])
    p = Gaussian.isotropic(d)
    kl = jax.vmap(lambda c: kl_divergence(Gaussian(jnp.zeros(d), c), p))(covs)
    h2 = jax.vmap(lambda c: hellinger_squared(Gaussian(jnp.zeros(d), c), p))(covs)
    np.testing.assert_allclose(kl, [0.0, np.inf, 0.5 * d * (2 - 1 - np.log(2))], atol=1e-14)
    np.testing.assert_allclose(h2[:2], [0.0, 1.0], atol=1e-14)


def test_gradients_finite_at_repeated_eigenvalues():
    # KL(N(0, s^2 I) || N(0, I)) = d/2 (s^2 - 1 - ln s^2): every eigenvalue is repeated.
    d = 3
    p = Gaussian.isotropic(d)

    def kl(s):
        return kl_divergence(Gaussian.isotropic(d, std=s), p)

    def h2(s):
        return hellinger_squared(Gaussian.isotropic(d, std=s), p)

    for s in [1.0, 1.7]:
        np.testing.assert_allclose(jax.grad(kl)(s), d * (s - 1 / s), rtol=1e-12, atol=1e-14)
        eps = 1e-6
        np.testing.assert_allclose(
            jax.grad(h2)(s), (h2(s + eps) - h2(s - eps)) / (2 * eps), rtol=1e-6, atol=1e-10
        )


def test_kl_infinite_data_formula():
    d, T, lam, s = 7, 1.3, 0.6, 1.5
    ell = lam * np.exp(-2 * T)
    snr = np.exp(-2 * T) * s**2 / (ell * (1 - np.exp(-2 * T)))
    rho = snr / (1 + snr)
    # Independently: KL between N(0, rho s^2 I) and N(0, s^2 I), both directions.
    q = (np.zeros(d), rho * s**2 * np.eye(d))
    p = (np.zeros(d), s**2 * np.eye(d))
    np.testing.assert_allclose(kl_infinite_data(d, T=T, lam=lam, s=s), np_kl(*q, *p), rtol=1e-12)
    np.testing.assert_allclose(
        kl_infinite_data(d, T=T, lam=lam, s=s, reverse=True), np_kl(*p, *q), rtol=1e-12
    )


def test_kl_infinite_data_is_the_large_n_limit(getkey):
    d, T, lam = 3, 2.0, 1.0
    p = Gaussian.isotropic(d, mean=10.0)
    n = 100_000
    x0 = p.sample(n, key=getkey())
    xt = jaxflow.data.forward_jump(x0, key=getkey(), T=T, lam=lam)
    q = jaxflow.flows.one_step_gaussian(jaxflow.training.fit_affine(x0, xt), x0, T=T, lam=lam)
    kl_inf = float(kl_infinite_data(d, T=T, lam=lam))
    # The finite-n excess is O(d^2 / n) ~ 1e-4 here; KL_inf itself is about 0.28.
    np.testing.assert_allclose(kl_divergence(q, p), kl_inf, rtol=1e-2)
    np.testing.assert_allclose(
        kl_divergence(p, q), float(kl_infinite_data(d, T=T, lam=lam, reverse=True)), rtol=1e-2
    )


def test_errors():
    with pytest.raises(ValueError, match="same dimension"):
        kl_divergence(Gaussian.isotropic(3), Gaussian.isotropic(4))
    with pytest.raises(TypeError, match="Gaussian"):
        hellinger_squared(Gaussian.isotropic(3), jnp.eye(3))
    with pytest.raises(ValueError, match="`d`"):
        kl_infinite_data(0, T=1.0, lam=1.0)


def test_jit_compiles_once():
    rng = np.random.default_rng(3)
    qs = [as_gaussian(*random_gaussian(rng, 3)) for _ in range(3)]
    p = as_gaussian(*random_gaussian(rng, 3))
    jax.block_until_ready((kl_divergence(qs[0], p), hellinger_squared(qs[0], p)))
    with count_compilations() as n:
        for q in qs[1:]:
            jax.block_until_ready(
                (kl_divergence(q, p), hellinger_squared(q, p), kl_divergence(p, q))
            )
    assert n[0] == 0


def test_float32_inputs_stay_float32():
    q = Gaussian.isotropic(3, std=1.2, dtype=jnp.float32)
    p = Gaussian.isotropic(3, dtype=jnp.float32)
    assert kl_divergence(q, p).dtype == jnp.float32
    assert hellinger_squared(q, p).dtype == jnp.float32


# ---------------------------------------------------------------------------------------
# Both divergences against an isotropic p from q's own eigendecomposition.
# ---------------------------------------------------------------------------------------


def _isotropic(rng, d, std):
    return as_gaussian(rng.normal(size=d), std**2 * np.eye(d))


# One dimension throughout: each function compiles once.
_D = 5


def test_isotropic_divergences_equal_the_general_ones():
    rng = np.random.default_rng(10)
    d = _D
    p = _isotropic(rng, d, 1.7)
    for _ in range(3):
        q = as_gaussian(*random_gaussian(rng, d, scale=2.0))
        kl, h2 = isotropic_divergences(q, p)
        np.testing.assert_allclose(kl, kl_divergence(q, p), rtol=1e-10)
        np.testing.assert_allclose(h2, hellinger_squared(q, p), rtol=1e-10)


def test_isotropic_divergences_of_a_singular_q_are_inf_and_one():
    rng = np.random.default_rng(12)
    d = _D
    p = _isotropic(rng, d, 0.8)
    for rank in (1, 3):
        mean, cov, _ = _degenerate(rng, d, rank)
        q = as_gaussian(mean, cov)
        kl, h2 = isotropic_divergences(q, p)
        assert np.isposinf(kl) and float(h2) == 1.0
        assert np.isposinf(kl_divergence(q, p)) and float(hellinger_squared(q, p)) == 1.0


def test_isotropic_divergences_of_a_diagonal_q_against_per_coordinate_formulas():
    # For diagonal q and p = N(m, s^2 I) both factor over coordinates:
    # KL = sum_k [ln(s / t_k) + (t_k^2 + (mu_k - m_k)^2) / (2 s^2) - 1/2] and
    # BC = prod_k sqrt(2 t_k s / (t_k^2 + s^2)) exp(-(mu_k - m_k)^2 / (4 (t_k^2 + s^2))).
    rng = np.random.default_rng(13)
    d, s = _D, 1.3
    t, mu, m = rng.uniform(0.3, 2.5, d), rng.normal(size=d), rng.normal(size=d)
    kl = np.sum(np.log(s / t) + (t**2 + (mu - m) ** 2) / (2 * s**2) - 0.5)
    bc = np.prod(
        np.sqrt(2 * t * s / (t**2 + s**2)) * np.exp(-((mu - m) ** 2) / (4 * (t**2 + s**2)))
    )
    got_kl, got_h2 = isotropic_divergences(
        as_gaussian(mu, np.diag(t**2)), as_gaussian(m, s**2 * np.eye(d))
    )
    np.testing.assert_allclose(got_kl, kl, rtol=1e-12)
    np.testing.assert_allclose(got_h2, 1 - bc, rtol=1e-12)


def test_isotropic_divergences_of_float32_inputs_stay_float32():
    rng = np.random.default_rng(14)
    mean, cov = random_gaussian(rng, _D)
    p = as_gaussian(np.zeros(_D), 0.6 * np.eye(_D))
    single = isotropic_divergences(
        as_gaussian(mean, cov, jnp.float32),
        Gaussian(p.mean.astype(jnp.float32), p.cov.astype(jnp.float32)),
    )
    double = isotropic_divergences(as_gaussian(mean, cov), p)
    assert all(x.dtype == jnp.float32 for x in single)
    np.testing.assert_allclose(single, double, rtol=1e-5)


def test_isotropic_divergences_refuse_a_p_that_is_not_isotropic():
    q = Gaussian.isotropic(3)
    with pytest.raises(ValueError, match="`p` must be isotropic"):
        isotropic_divergences(q, as_gaussian(np.zeros(3), np.diag([1.0, 1.0, 2.0])))
    with pytest.raises(ValueError, match="`p` must be isotropic"):
        isotropic_divergences(q, as_gaussian(np.zeros(3), np.eye(3) + 0.1 * (1 - np.eye(3))))
