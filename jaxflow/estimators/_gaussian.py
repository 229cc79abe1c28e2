import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
from jaxtyping import Array, ArrayLike, Bool, Float, Real

from .._checks import (
    check_gaussian,
    check_positive_int,
    check_same_dtype,
    check_tolerance,
    is_concrete,
    positive_scalars,
)
from .._numerics import eigvalsh
from ..data import Gaussian, ou_coefficients


def _check_pair(q: Gaussian, p: Gaussian, rtol) -> None:
    if not isinstance(q, Gaussian) or not isinstance(p, Gaussian):
        raise TypeError(
            "`q` and `p` must be `jaxflow.data.Gaussian`s, "
            f"got {type(q).__name__} and {type(p).__name__}."
        )
    if q.mean.shape != p.mean.shape:
        raise ValueError(
            f"`q` and `p` must have the same dimension, got {q.mean.shape} and {p.mean.shape}."
        )
    check_same_dtype(q.mean, "q", p.mean, "p")
    check_gaussian(q, "q")
    check_gaussian(p, "p")
    check_tolerance(rtol, "rtol")


def default_rtol(d: int, dtype) -> float:
    r"""The relative eigenvalue tolerance below which a covariance direction counts as
    singular: $10\, d\, \varepsilon$ of the dtype ($2 \times 10^{-13}$ in float64 at
    $d = 100$).

    The computed "zero" eigenvalues of a rank-deficient covariance such as $v_T W W^\top$
    sit at a few $\varepsilon$ times the largest eigenvalue (backward error of `eigh`),
    while the smallest genuine eigenvalue of the generated covariance near $n = d + 1$
    is some $10^{-6}$ of the largest in float64; the tolerance sits between the two.
    """
    return 10.0 * d * float(jnp.finfo(dtype).eps)


def _rank(cov: Float[Array, "d d"], rtol: float):
    evals, evecs = jnp.linalg.eigh(jax.lax.stop_gradient(cov))
    null = evals <= rtol * jnp.max(jnp.abs(evals))
    return jnp.sum(~null), evecs, null


def _whitened(q: Gaussian, p: Gaussian, rtol: float | None):
    r"""$q$ in coordinates where $p$ is standard on its support.

    Returns the eigenvalues $\mu$ of $M = L^{-1} \Sigma_q L^{-\top}$ (ascending), the
    whitened mean difference $\delta_w = L^{-1} (\mu_q - \mu_p)$, $M$ itself, a mask of the
    eigenvalues that lie in $p$'s support, and whether $q$ and $p$ have the same support
    (else they are mutually singular).

    $L$ is the Cholesky factor of $\Sigma_p + P_0$, with $P_0$ the projector on $p$'s null
    space (empty when $\Sigma_p$ is regular): a regular matrix equal to $\Sigma_p$ on its
    range, so the factorisation never fails and its gradient stays finite.
    """
    d = p.mean.shape[-1]
    dtype = jnp.result_type(q.cov, p.cov)
    rtol = default_rtol(d, dtype) if rtol is None else rtol
    rank_p, evecs_p, null_p = _rank(p.cov, rtol)
    rank_q, _, _ = _rank(q.cov, rtol)
    proj_null = (evecs_p * null_p.astype(evecs_p.dtype)) @ evecs_p.T
    delta = q.mean - p.mean
    chol = jnp.linalg.cholesky(p.cov + proj_null)
    half = jsl.solve_triangular(chol, q.cov, lower=True)
    m = jsl.solve_triangular(chol, half.T, lower=True)
    m = 0.5 * (m + m.T)
    delta_w = jsl.solve_triangular(chol, delta, lower=True)
    mu = eigvalsh(m)
    # eigvalsh sorts ascending: on a common support of dimension rank_p, the top rank_p
    # eigenvalues of M are the positive ones and the rest are p's null directions.
    keep = jnp.arange(d) >= d - rank_p
    scale = jnp.trace(p.cov) + delta @ delta
    leak_cov = jnp.trace(proj_null @ q.cov)
    leak_mean = jnp.sum((proj_null @ delta) ** 2)
    same = (
        (rank_q == rank_p)
        & (leak_cov <= rtol * jnp.trace(q.cov))
        & (leak_mean <= rtol * scale)
        & jnp.all(jnp.where(keep, mu > 0, True))
    )
    return mu, delta_w, m, keep, same


class Spectrum(eqx.Module):
    """A Gaussian's mean and the eigendecomposition of its covariance, computed once:
    $\\Sigma + \\varepsilon^2 I$ and $2\\Sigma$ share its eigenvectors."""

    mean: Float[Array, " d"]
    evals: Float[Array, " d"]
    evecs: Float[Array, "d d"]
    singular: Bool[Array, ""]


def spectrum(q: Gaussian, rtol: float | None = None) -> Spectrum:
    d = q.mean.shape[-1]
    rtol = default_rtol(d, q.cov.dtype) if rtol is None else rtol
    evals, evecs = jnp.linalg.eigh(0.5 * (q.cov + q.cov.T))
    singular = evals[0] <= rtol * jnp.max(jnp.abs(evals))
    return Spectrum(q.mean, jnp.clip(evals, 0.0), evecs, singular)


def isotropic_divergences(
    q: Gaussian, p: Gaussian, *, rtol: float | None = None
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    r"""[`jaxflow.estimators.kl_divergence`][] and
    [`jaxflow.estimators.hellinger_squared`][] of $q$ against an isotropic
    $p = \mathcal N(m, \sigma^2 I)$, from one eigendecomposition of $\Sigma_q$ and no
    factorisation of $p$ (a third of the work of the two general functions).

    **Arguments:** `q`, `p` and `rtol` as in [`jaxflow.estimators.kl_divergence`][];
    `p.cov` must be $\sigma^2 I$.

    **Returns:** `(kl, hellinger_squared)`, equal to the general functions' to rounding.

    **Raises:** `ValueError` for a `p` whose covariance is not $\sigma^2 I$ (checked
    when it is a value, not inside `jit`).
    """
    _check_pair(q, p, rtol)
    check_isotropic(p, "p")
    return _isotropic_divergences(q, p, rtol)


@eqx.filter_jit
def _isotropic_divergences(q: Gaussian, p: Gaussian, rtol: float | None):
    return spectral_divergences(spectrum(q, rtol), p)


def check_isotropic(p: Gaussian, name: str) -> None:
    r"""Refuse a concrete covariance that is not $\sigma^2 I$."""
    cov = p.cov
    if is_concrete(cov) and not bool(
        jnp.all(cov == cov[0, 0] * jnp.eye(cov.shape[-1], dtype=cov.dtype))
    ):
        raise ValueError(
            f"`{name}` must be isotropic, N(m, s^2 I); its covariance is not a multiple of I."
        )


def spectral_divergences(spec: Spectrum, p: Gaussian) -> tuple[Float[Array, ""], Float[Array, ""]]:
    r"""$\mathrm{KL}(q \,\|\, p)$ and $H^2(q, p)$ for an isotropic $p = \mathcal N(m, \sigma^2 I)$,
    from the eigendecomposition $\Sigma_q = V \operatorname{diag}(\lambda) V^\top$ that
    `spec` holds, with $c = V^\top (\mu_q - m)$:

    $$\mathrm{KL} = \frac12 \sum_k \Big(\frac{\lambda_k}{\sigma^2} - 1
    - \ln \frac{\lambda_k}{\sigma^2}\Big) + \frac{\lvert \mu_q - m \rvert^2}{2 \sigma^2},
    \qquad
    \ln \mathrm{BC} = \sum_k \Big(\tfrac14 \ln \lambda_k \sigma^2
    - \tfrac12 \ln \frac{\lambda_k + \sigma^2}{2}\Big)
    - \frac14 \sum_k \frac{c_k^2}{\lambda_k + \sigma^2}.$$

    These are [`jaxflow.estimators.kl_divergence`][] and
    [`jaxflow.estimators.hellinger_squared`][] with $p$'s whitening reduced to a division
    by $\sigma^2$: no factorisation beyond the one of $\Sigma_q$ already made, $O(d^2)$.
    A singular $q$ (`spec.singular`, the same rank rule) gives $+\infty$ and 1. `p.cov`
    must be $\sigma^2 I$ (only its first diagonal entry is read).
    """
    var = p.cov[0, 0]
    delta = spec.mean - p.mean
    ratio = jnp.where(spec.singular, 1.0, spec.evals / var)
    kl = 0.5 * jnp.sum(ratio - 1.0 - jnp.log(ratio)) + 0.5 * (delta @ delta) / var
    c = delta @ spec.evecs
    log_bc = jnp.sum(
        0.25 * jnp.log(ratio) - 0.5 * jnp.log1p(ratio) + 0.5 * jnp.log(2.0)
    ) - 0.25 * jnp.sum(c * c / (spec.evals + var))
    kl = jnp.where(spec.singular, jnp.inf, kl)
    hellinger = jnp.where(spec.singular, 1.0, -jnp.expm1(jnp.minimum(log_bc, 0.0)))
    return kl, hellinger


def kl_divergence(q: Gaussian, p: Gaussian, *, rtol: float | None = None) -> Float[Array, ""]:
    r"""The Kullback-Leibler divergence $\mathrm{KL}(q \,\|\, p)$ between two Gaussians
    ([H], Section 3; docs/models.md#gaussian-distances). For the reverse direction swap the
    arguments.

    $$\mathrm{KL}(q \,\|\, p) = \frac12 \left[ \operatorname{tr}(\Sigma_p^{-1} \Sigma_q)
    + (\mu_q - \mu_p)^\top \Sigma_p^{-1} (\mu_q - \mu_p) - d
    + \ln \frac{\det \Sigma_p}{\det \Sigma_q} \right]
    = \frac12 \sum_{i} (\mu_i - 1 - \ln \mu_i) + \frac12 \lvert \delta_w \rvert^2,$$

    with $\mu_i$ the eigenvalues of $\Sigma_p^{-1}\Sigma_q$ and $\delta_w$ the mean difference
    whitened by $\Sigma_p$. The second form is a sum of non-negative terms and needs no
    determinant.

    Degenerate Gaussians are handled exactly: the divergence is finite only when $q$ and
    $p$ live on the same affine subspace (then it is the formula above on that subspace,
    with pseudo-determinants); otherwise $q$ puts mass where $p$ has none, or the
    reverse, and the result is $+\infty$. In particular it is $+\infty$ whenever exactly
    one covariance is singular, e.g. [H]'s generated $q$ for $n \le d$. Ranks are read
    from eigenvalues: an eigenvalue at most `rtol` times the largest counts as zero.

    **Arguments:**

    - `q`, `p`: [`jaxflow.data.Gaussian`][]s of the same dimension.
    - `rtol`: the relative eigenvalue tolerance; default
      [`jaxflow.estimators.default_rtol`][], $10 d \varepsilon$.

    **Returns:** a scalar in $[0, +\infty]$, never NaN; computed in the inputs' dtype
    (enable x64 for exact answers). Jit-compatible, vmappable over repetitions, and
    differentiable where finite (no eigenvector enters the gradient).
    """
    _check_pair(q, p, rtol)
    return _kl_divergence(q, p, rtol)


@eqx.filter_jit
def _kl_divergence(q: Gaussian, p: Gaussian, rtol: float | None) -> Float[Array, ""]:
    mu, delta_w, _, keep, same = _whitened(q, p, rtol)
    safe = jnp.where(keep & same, mu, 1.0)
    value = 0.5 * jnp.sum(safe - 1.0 - jnp.log(safe)) + 0.5 * jnp.sum(delta_w**2)
    return jnp.where(same, value, jnp.inf)


def hellinger_squared(q: Gaussian, p: Gaussian, *, rtol: float | None = None) -> Float[Array, ""]:
    r"""The squared Hellinger distance $H^2(q, p) = 1 - \mathrm{BC}(q, p)$ between two
    Gaussians ([H], Section 3; docs/models.md#gaussian-distances), with the Bhattacharyya
    coefficient

    $$\mathrm{BC} = \frac{(\det \Sigma_q)^{1/4} (\det \Sigma_p)^{1/4}}{(\det \bar\Sigma)^{1/2}}
    \exp\!\left(-\tfrac18 (\mu_q - \mu_p)^\top \bar\Sigma^{-1} (\mu_q - \mu_p)\right),
    \qquad \bar\Sigma = \tfrac12 (\Sigma_q + \Sigma_p),$$

    evaluated as $\ln \mathrm{BC} = \sum_i \big[\tfrac14 \ln \mu_i - \tfrac12 \ln
    \tfrac{1 + \mu_i}{2}\big] - \tfrac14 \delta_w^\top (M + I)^{-1} \delta_w$ in
    $p$-whitened coordinates ($M$ the whitened $\Sigma_q$, $\mu_i$ its eigenvalues), so that
    no determinant is formed. Symmetric in its arguments.

    Two Gaussians on different affine subspaces are mutually singular: $\mathrm{BC} = 0$
    and $H^2 = 1$ (e.g. [H]'s degenerate $q$ for $n \le d$ against a regular $p$). Ranks
    and supports are read from eigenvalues with the tolerance `rtol`, as in
    [`jaxflow.estimators.kl_divergence`][].

    **Arguments:** `q`, `p` and `rtol` as in [`jaxflow.estimators.kl_divergence`][].

    **Returns:** a scalar in $[0, 1]$, never NaN; jit-compatible and vmappable.
    """
    _check_pair(q, p, rtol)
    return _hellinger_squared(q, p, rtol)


@eqx.filter_jit
def _hellinger_squared(q: Gaussian, p: Gaussian, rtol: float | None) -> Float[Array, ""]:
    mu, delta_w, m, keep, same = _whitened(q, p, rtol)
    safe = jnp.where(keep & same, mu, 1.0)
    quad = delta_w @ jnp.linalg.solve(m + jnp.eye(m.shape[-1], dtype=m.dtype), delta_w)
    log_bc = (
        jnp.sum(0.25 * jnp.log(safe) - 0.5 * jnp.log1p(safe) + 0.5 * jnp.log(2.0)) - 0.25 * quad
    )
    return jnp.where(same, -jnp.expm1(jnp.minimum(log_bc, 0.0)), 1.0)


def kl_infinite_data(
    d: int,
    *,
    T: Real[ArrayLike, ""],
    lam: Real[ArrayLike, ""],
    s: Real[ArrayLike, ""] = 1.0,
    reverse: bool = False,
) -> Float[Array, ""]:
    r"""The KL divergence between [H]'s generated $q$ and $p = \mathcal{N}(m\mathbf 1, s^2 I_d)$
    in the limit of infinite training data ([H], Section 3; docs/models.md#gaussian-distances).

    As $n \to \infty$ the least-squares denoiser becomes $W = \rho_W I$, $b = (1 - a\rho_W)
    m\mathbf 1$, and $\Sigma_g \to \rho s^2 I$, $\mu_g \to m\mathbf 1$ with

    $$\rho = \frac{\mathrm{SNR}}{1 + \mathrm{SNR}}, \qquad
    \mathrm{SNR} = \frac{e^{-2T} s^2}{\ell (1 - e^{-2T})}, \qquad \ell = \lambda e^{-2T},$$

    so that

    $$\mathrm{KL}_\infty(q \,\|\, p) = \frac d2 (\rho - 1 - \ln \rho), \qquad
    \mathrm{KL}_\infty(p \,\|\, q) = \frac d2 (\rho^{-1} - 1 + \ln \rho).$$

    The one-step denoiser under-disperses ($\rho < 1$): finite diffusion time and noise
    leave this floor however large $n$ is.

    **Arguments:**

    - `d`: the dimension.
    - `T`, `lam`: the forward process's time and noise scale.
    - `s`: the data's standard deviation. Default 1.
    - `reverse`: return $\mathrm{KL}_\infty(p \,\|\, q)$ instead.

    **Returns:** a scalar; differentiable in `T`, `lam` and `s`.
    """
    d = check_positive_int(d, "d")
    if not isinstance(reverse, bool):
        raise TypeError(f"`reverse` must be True or False, got {reverse!r}.")
    dtype = jnp.result_type(T, lam, s, float)
    T, lam, s = positive_scalars(dtype, "kl_infinite_data", T=T, lam=lam, s=s)
    return _kl_infinite_data(d, T, lam, s, reverse)


# One compiled program rather than a dispatch per operation: it is called from tables.
@functools.partial(jax.jit, static_argnums=(0, 4))
def _kl_infinite_data(d: int, T, lam, s, reverse: bool):
    a, c2 = ou_coefficients(T, lam)
    # rho = SNR / (1 + SNR) = a^2 s^2 / (a^2 s^2 + c^2); ln rho = -log1p(1 / SNR).
    inv_snr = c2 / (a**2 * s**2)
    rho = 1.0 / (1.0 + inv_snr)
    log_rho = -jnp.log1p(inv_snr)
    if reverse:
        return 0.5 * d * (inv_snr + log_rho)
    return 0.5 * d * (rho - 1.0 - log_rho)
