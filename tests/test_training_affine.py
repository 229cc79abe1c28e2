"""The affine denoisers of [H]; docs/models.md#linear-one-step-model,
docs/models.md#diffusion-steps, the generated Gaussian, the exact propagation of Gaussians
through the probability flow, and their gradients."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from jaxflow.data import forward_jump, forward_ve, Gaussian, ve_start
from jaxflow.denoisers import AffineDenoiser, PiecewiseAffine
from jaxflow.estimators import kl_divergence
from jaxflow.flows import (
    gaussian_probability_flow,
    Geometric,
    Karras,
    one_step_gaussian,
    probability_flow,
)
from jaxflow.flows._affine import propagate_on_grid
from jaxflow.training import (
    fit_affine,
    fit_piecewise_affine,
    wiener_affine,
    wiener_piecewise_affine,
)


def np_fit(x0, xt):
    """Affine least squares by numpy.linalg.lstsq on centred data (minimum norm)."""
    x0, xt = np.asarray(x0), np.asarray(xt)
    n, k, d = xt.shape
    inputs = xt.reshape(n * k, d)
    targets = np.repeat(x0, k, axis=0)
    w_t, *_ = np.linalg.lstsq(inputs - inputs.mean(0), targets - targets.mean(0), rcond=None)
    return w_t.T, targets.mean(0) - w_t.T @ inputs.mean(0)


def test_forward_jump_moments(getkey):
    d, n, T, lam = 3, 4, 0.7, 2.5
    x0 = jr.normal(getkey(), (n, d))
    xt = forward_jump(x0, key=getkey(), T=T, lam=lam, draws=50_000)
    assert xt.shape == (n, 50_000, d)
    noise = np.asarray(xt - np.exp(-T) * x0[:, None, :])
    var = lam * np.exp(-2 * T) * (1 - np.exp(-2 * T))
    np.testing.assert_allclose(noise.mean(1), 0.0, atol=5 * np.sqrt(var / 50_000))
    np.testing.assert_allclose(noise.var(1), var, rtol=0.03)


@pytest.mark.parametrize("n, k, d", [(4, 1, 5), (2, 2, 5), (12, 3, 5)])
def test_fit_matches_lstsq(getkey, n, k, d):
    # n - 1 < d (minimum-norm: rank-deficient), with k = 1 and with nk - 1 < d, and
    # n - 1 >= d (unique).
    x0 = 3.0 + jr.normal(getkey(), (n, d))
    xt = forward_jump(x0, key=getkey(), T=1.0, lam=1.0, draws=k)
    den = fit_affine(x0, xt)
    w, b = np_fit(x0, xt)
    np.testing.assert_allclose(den.weight, w, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(den.bias, b, rtol=1e-8, atol=1e-10)
    # The rank of W is min(n - 1, d), whatever k.
    assert np.linalg.matrix_rank(np.asarray(den.weight)) == min(n - 1, d)
    np.testing.assert_allclose(
        jax.vmap(den, (0, None))(xt[:, 0], 1.0), xt[:, 0] @ w.T + b, rtol=1e-10
    )


def test_fit_vmaps_over_repetitions(getkey):
    n, d, repetitions = 4, 5, 3
    x0 = jr.normal(getkey(), (repetitions, n, d))
    keys = jr.split(getkey(), repetitions)
    xt = jax.vmap(lambda k, x: forward_jump(x, key=k, T=1.0, lam=1.0))(keys, x0)
    dens = jax.vmap(fit_affine)(x0, xt)
    for r in range(repetitions):
        w, b = np_fit(x0[r], xt[r])
        np.testing.assert_allclose(dens.weight[r], w, rtol=1e-8, atol=1e-10)


def test_mask_equals_the_unpadded_fit(getkey):
    # Padding rows with a mask reproduces the fit, the Wiener fit and q of the subset.
    n, n_max, d, T, lam = 4, 12, 5, 1.0, 0.7
    x0 = 2.0 + jr.normal(getkey(), (n_max, d))
    xt = forward_jump(x0, key=getkey(), T=T, lam=lam, draws=2)
    mask = jnp.arange(n_max) < n
    padded, exact = fit_affine(x0, xt, mask=mask), fit_affine(x0[:n], xt[:n])
    np.testing.assert_allclose(padded.weight, exact.weight, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(padded.bias, exact.bias, rtol=1e-9, atol=1e-11)
    qp = one_step_gaussian(padded, x0, T=T, lam=lam, mask=mask)
    qe = one_step_gaussian(exact, x0[:n], T=T, lam=lam)
    np.testing.assert_allclose(qp.cov, qe.cov, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(qp.mean, qe.mean, rtol=1e-9)
    padded, exact = wiener_affine(x0, T=T, lam=lam, mask=mask), wiener_affine(x0[:n], T=T, lam=lam)
    np.testing.assert_allclose(padded.weight, exact.weight, rtol=1e-9, atol=1e-11)
    start = ve_start(x0, sigma_max=3.0, mask=mask)
    np.testing.assert_allclose(start.cov, ve_start(x0[:n], sigma_max=3.0).cov, rtol=1e-12)


def test_wiener_is_the_many_draws_limit(getkey):
    n, d, T, lam, k = 4, 5, 0.5, 1.0, 10_000
    x0 = jr.normal(getkey(), (n, d))
    exact = wiener_affine(x0, T=T, lam=lam)
    fitted = fit_affine(x0, forward_jump(x0, key=getkey(), T=T, lam=lam, draws=k))
    np.testing.assert_allclose(exact.weight, exact.weight.T, atol=1e-14)
    # Sampling error of the least-squares fit is O(1 / sqrt(n k)) ~ 5e-3.
    np.testing.assert_allclose(fitted.weight, exact.weight, atol=2e-2)
    np.testing.assert_allclose(fitted.bias, exact.bias, atol=2e-2)


def test_one_step_gaussian_is_the_law_of_the_output(getkey):
    n, d, T, lam = 12, 5, 1.0, 1.0
    x0 = 2.0 + jr.normal(getkey(), (n, d))
    den = fit_affine(x0, forward_jump(x0, key=getkey(), T=T, lam=lam))
    q = one_step_gaussian(den, x0, T=T, lam=lam)
    # Independently: x_T ~ N(e^-T xbar, v I), pushed through W x + b.
    x = np.asarray(x0)
    v = np.exp(-2 * T) * x.var(0, ddof=1).mean() + lam * np.exp(-2 * T) * (1 - np.exp(-2 * T))
    w, b = np.asarray(den.weight), np.asarray(den.bias)
    np.testing.assert_allclose(q.mean, w @ (np.exp(-T) * x.mean(0)) + b, rtol=1e-12)
    np.testing.assert_allclose(q.cov, v * w @ w.T, rtol=1e-12)
    m = 200_000
    xt = np.exp(-T) * x.mean(0) + np.sqrt(v) * np.random.default_rng(0).normal(size=(m, d))
    out = xt @ w.T + b
    np.testing.assert_allclose(np.cov(out.T), q.cov, atol=0.02 * np.abs(q.cov).max())


@pytest.mark.parametrize("n", [4, 12])
def test_conventions_share_the_spectrum(getkey, n):
    d, T, lam = 5, 2.0, 1.0
    x0 = 10.0 + jr.normal(getkey(), (n, d))
    den = fit_affine(x0, forward_jump(x0, key=getkey(), T=T, lam=lam))
    qc = one_step_gaussian(den, x0, T=T, lam=lam, convention="consistent")
    qr = one_step_gaussian(den, x0, T=T, lam=lam, convention="reference")
    np.testing.assert_allclose(np.trace(qc.cov), np.trace(qr.cov), rtol=1e-12)
    ec, er = np.linalg.eigvalsh(qc.cov), np.linalg.eigvalsh(qr.cov)
    np.testing.assert_allclose(ec, er, atol=1e-12 * ec.max())
    # Determinant of the nonzero spectrum (rank min(n - 1, d)).
    r = min(n - 1, d)
    np.testing.assert_allclose(np.sum(np.log(ec[-r:])), np.sum(np.log(er[-r:])), rtol=1e-9)
    assert not np.allclose(qc.cov, qr.cov)
    # Same spectrum and mean: the same KL(q || p) against an isotropic p.
    p = Gaussian.isotropic(d, mean=10.0)
    np.testing.assert_allclose(kl_divergence(qc, p), kl_divergence(qr, p), rtol=1e-9)


def test_bad_arguments(getkey):
    x0 = jr.normal(getkey(), (4, 5))
    den = fit_affine(x0, forward_jump(x0, key=getkey(), T=1.0, lam=1.0))
    with pytest.raises(ValueError, match="'consistent', 'reference'"):
        one_step_gaussian(den, x0, T=1.0, lam=1.0, convention="transpose")
    # Shapes: our own ValueError, or jaxtyping's TypeCheckError (a TypeError) when the
    # tests check annotations at run time; both name the argument.
    with pytest.raises((ValueError, TypeError), match="xt"):
        fit_affine(x0, x0)
    with pytest.raises((ValueError, TypeError), match="x0"):
        forward_jump(x0[0], key=getkey(), T=1.0, lam=1.0)
    with pytest.raises((ValueError, TypeError), match="weight"):
        AffineDenoiser(jnp.eye(3), jnp.zeros(4))
    # A concrete T is refused on the host in one line; a traced one at run time.
    with pytest.raises(ValueError, match="`T` must be positive and finite, got -1.0"):
        forward_jump(x0, key=getkey(), T=-1.0, lam=1.0)
    key = getkey()
    with pytest.raises(eqx.EquinoxRuntimeError, match="T > 0"):
        eqx.filter_jit(lambda T: forward_jump(x0, key=key, T=T, lam=1.0))(-1.0)


def test_piecewise_selects_nearest_level_in_log_sigma():
    sigmas = jnp.array([10.0, 1.0, 0.1])
    weight = jnp.stack([k * jnp.eye(2) for k in (1.0, 2.0, 3.0)])
    den = PiecewiseAffine(sigmas, weight, jnp.zeros((3, 2)))
    y = jnp.ones(2)
    # log-midpoints between levels: sqrt(10) and sqrt(0.1).
    for sigma, k in [(20.0, 1), (3.3, 1), (3.1, 2), (1.0, 2), (0.32, 2), (0.31, 3), (1e-4, 3)]:
        np.testing.assert_allclose(den(y, sigma), k * y)


@pytest.mark.parametrize("solver, schedule", [("euler", "geometric"), ("heun", "karras")])
def test_exact_propagation_matches_probability_flow(getkey, solver, schedule):
    n, d, steps, smax, smin = 12, 5, 6, 20.0, 0.02
    x0 = 3.0 + jr.normal(getkey(), (n, d))
    sched = Geometric() if schedule == "geometric" else Karras()
    grid = sched.grid(jnp.asarray(smax), jnp.asarray(smin), steps)
    if solver == "euler":
        den = fit_piecewise_affine(x0, forward_ve(x0, grid, key=getkey(), draws=2), grid)
    else:
        den = wiener_piecewise_affine(x0, grid)
    start = ve_start(x0, sigma_max=smax)
    kw = dict(sigma_max=smax, sigma_min=smin, steps=steps, solver=solver, schedule=schedule)
    q = gaussian_probability_flow(den, start, **kw)
    # One solve: d + 1 starts that read off the flow's affine map y0 -> A y0 + c
    # exactly, then m samples of the start law.
    m = 4096
    basis = start.mean + jnp.concatenate([jnp.zeros((1, d)), jnp.eye(d)])
    ys = np.asarray(
        probability_flow(den, jnp.concatenate([basis, start.sample(m, key=getkey())]), **kw).ys
    )
    a = (ys[1 : d + 1] - ys[0]).T
    c = ys[0] - a @ np.asarray(start.mean)
    np.testing.assert_allclose(q.mean, a @ start.mean + c, rtol=1e-10)
    np.testing.assert_allclose(q.cov, a @ start.cov @ a.T, rtol=1e-9, atol=1e-12)
    # And by sampling: the endpoints' mean and covariance.
    ys = ys[d + 1 :]
    scale = np.sqrt(np.diag(q.cov))
    np.testing.assert_allclose(ys.mean(0), q.mean, atol=5 * scale.max() / np.sqrt(m))
    np.testing.assert_allclose(np.cov(ys.T), q.cov, atol=0.1 * scale.max() ** 2)


def test_one_euler_step_is_the_one_step_denoiser(getkey):
    # One Euler step from sigma_max to sigma_min: y + (sigma_min/sigma_max - 1)(y - D(y)),
    # which tends to D(y) as sigma_min -> 0.
    n, d = 4, 5
    x0 = jr.normal(getkey(), (n, d))
    den = wiener_affine(x0, T=1.0, lam=1.0)
    start = Gaussian(jnp.ones(d), 2.0 * jnp.eye(d))
    q = gaussian_probability_flow(
        den, start, sigma_max=1.0, sigma_min=1e-12, steps=1, solver="euler"
    )
    w, b = np.asarray(den.weight), np.asarray(den.bias)
    np.testing.assert_allclose(q.mean, w @ np.ones(d) + b, rtol=1e-9)
    np.testing.assert_allclose(q.cov, 2.0 * w @ w.T, rtol=1e-9, atol=1e-14)


def test_repeated_levels_are_identity_steps(getkey):
    # Padding a grid by repeating sigma_min adds zero-length steps: the same Gaussian.
    n, d, steps = 12, 5, 4
    x0 = jr.normal(getkey(), (n, d))
    grid = Geometric().grid(jnp.asarray(8.0), jnp.asarray(0.1), steps)
    den = wiener_piecewise_affine(x0, grid)
    start = ve_start(x0, sigma_max=8.0)
    q = gaussian_probability_flow(den, start, sigma_max=8.0, sigma_min=0.1, steps=steps)
    padded = propagate_on_grid(den, start, jnp.concatenate([grid, jnp.full(3, grid[-1])]))
    np.testing.assert_array_equal(padded.mean, q.mean)
    np.testing.assert_array_equal(padded.cov, q.cov)


def _fd(f, x, eps=1e-5):
    return (f(x + eps) - f(x - eps)) / (2 * eps)


def test_grad_expected_kl_wrt_T_and_lambda(getkey):
    d, n = 5, 12
    p = Gaussian.isotropic(d, mean=10.0)
    x0 = p.sample(n, key=getkey())
    z = jr.normal(getkey(), (n, 3, d))

    def kl_wiener(T, lam):
        q = one_step_gaussian(wiener_affine(x0, T=T, lam=lam), x0, T=T, lam=lam)
        return kl_divergence(q, p)

    def kl_fixed_noise(T, lam):
        # The same noise draws z for every (T, lambda): the reparametrised expectation.
        xt = jnp.exp(-T) * x0[:, None] + jnp.sqrt(lam * jnp.exp(-2 * T) * -jnp.expm1(-2 * T)) * z
        q = one_step_gaussian(fit_affine(x0, xt), x0, T=T, lam=lam)
        return kl_divergence(q, p)

    for f in (jax.jit(kl_wiener), jax.jit(kl_fixed_noise)):
        T, lam = 1.5, 0.8
        g_T, g_lam = jax.jit(jax.grad(f, argnums=(0, 1)))(T, lam)
        assert np.isfinite(f(T, lam))
        np.testing.assert_allclose(g_T, _fd(lambda t: f(t, lam), T), rtol=1e-5)
        np.testing.assert_allclose(g_lam, _fd(lambda l: f(T, l), lam), rtol=1e-5)


@pytest.mark.parametrize(
    "solver, fitted", [("heun", True), pytest.param("euler", False, marks=pytest.mark.slow)]
)
def test_grad_multistep_kl_wrt_sigma_max(getkey, solver, fitted):
    d, n, steps, smin = 5, 12, 4, 0.05
    p = Gaussian.isotropic(d, mean=3.0)
    x0 = p.sample(n, key=getkey())
    z = jr.normal(getkey(), (steps + 1, n, 2, d))

    def kl(smax, fitted):
        grid = Geometric().grid(smax, jnp.asarray(smin), steps)
        if fitted:
            den = fit_piecewise_affine(x0, x0[None, :, None] + grid[:, None, None, None] * z, grid)
        else:
            den = wiener_piecewise_affine(x0, grid)
        start = ve_start(x0, sigma_max=smax)
        q = gaussian_probability_flow(
            den, start, sigma_max=smax, sigma_min=smin, steps=steps, solver=solver
        )
        return kl_divergence(q, p)

    # Least squares on fixed noise draws (reparametrised) or the noise-averaged fit.
    f = jax.jit(lambda s: kl(s, fitted))
    smax = jnp.asarray(5.0)
    np.testing.assert_allclose(jax.jit(jax.grad(f))(smax), _fd(f, smax), rtol=1e-5)


@pytest.mark.slow
def test_kl_falls_monotonically_once_n_exceeds_d(getkey):
    # [H], Section 3; docs/models.md#gaussian-distances: KL(q || p) is infinite while n <= d (q
    # degenerate), then falls with n towards KL_inf. Median over repetitions at d = 10.
    d, T, lam, repetitions = 10, 2.0, 1.0, 32
    p = Gaussian.isotropic(d, mean=10.0)

    @jax.jit
    def kl(key, n_dummy):
        k1, k2 = jr.split(key)
        x0 = p.sample(n_dummy.shape[0], key=k1)
        q = one_step_gaussian(
            fit_affine(x0, forward_jump(x0, key=k2, T=T, lam=lam)), x0, T=T, lam=lam
        )
        return kl_divergence(q, p)

    medians = []
    for n in [5, 10, 11, 12, 15, 20, 40, 100, 400]:
        keys = jr.split(getkey(), repetitions)
        medians.append(float(np.median(jax.vmap(kl, (0, None))(keys, jnp.zeros(n)))))
    assert np.all(np.isinf(medians[:2]))
    finite = np.array(medians[2:])
    assert np.all(np.isfinite(finite)) and np.all(np.diff(finite) < 0)
