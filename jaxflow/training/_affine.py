import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Real

from .._checks import (
    check_finite,
    check_floating,
    check_points,
    check_same_dtype,
    mask_weights,
    positive_scalars,
)
from .._numerics import divide_by_scalar, weighted_mean
from ..data import masked_moments, ou_coefficients
from ..denoisers import AffineDenoiser


def _centred_fit(
    inputs: Float[Array, "m d"], targets: Float[Array, "m d"], w: Float[Array, " m"]
) -> tuple[Float[Array, "d d"], Float[Array, " d"]]:
    # Centring removes the intercept exactly; the pseudo-inverse then gives the
    # minimum-norm W when the centred inputs have rank m - 1 < d. Its JVP is defined on
    # rank-deficient inputs, and its shapes never depend on the rank, so the fit
    # jit-compiles once and vmaps over repetitions. Padding rows are zeroed after
    # centring: a zero equation leaves the minimum-norm solution unchanged.
    in_mean = weighted_mean(w, inputs)
    out_mean = weighted_mean(w, targets)
    in_c = (inputs - in_mean) * w[:, None]
    out_c = (targets - out_mean) * w[:, None]
    weight = (jnp.linalg.pinv(in_c) @ out_c).T
    return weight, out_mean - weight @ in_mean


def check_noisy_copies(xt, x0: Array, name: str = "xt", *, levels: int | None = None) -> Array:
    """Noisy copies of `x0`: shape `(n, k, d)` (or `(levels, n, k, d)`), floating, of
    `x0`'s dtype and finite."""
    xt = jnp.asarray(xt)
    n, d = x0.shape
    lead = () if levels is None else (levels,)
    want = "(n, k, d)" if levels is None else "(levels, n, k, d)"
    if (
        xt.ndim != len(lead) + 3
        or xt.shape[: len(lead)] != lead
        or xt.shape[-3] != n
        or (xt.shape[-1] != d)
    ):
        raise ValueError(
            f"`{name}` must have shape {want} with n={n}, d={d}"
            + ("" if levels is None else f", levels={levels}")
            + f", got {xt.shape}; pass the noisy copies of `x0`."
        )
    if xt.shape[-2] == 0:
        raise ValueError(f"`{name}` is empty (k = 0 copies per point); pass at least one.")
    check_floating(xt, name)
    check_same_dtype(x0, "x0", xt, name)
    check_finite(xt, name)
    return xt


def fit_affine(
    x0: Float[Array, "n d"], xt: Float[Array, "n k d"], *, mask: Bool[ArrayLike, " n"] | None = None
) -> AffineDenoiser:
    r"""Fit [H]'s affine denoiser by least squares ([H]; docs/models.md#linear-one-step-model):

    $$(W, b) = \operatorname*{arg\,min}_{W, b} \sum_{i=1}^{n} \sum_{j=1}^{k}
    \lvert x_{0,i} - W x_{T,ij} - b \rvert^2,$$

    with an intercept and no regularisation. When the $nk$ centred inputs span fewer
    than $d$ dimensions ($nk - 1 < d$) the minimiser is not unique and the
    minimum-Frobenius-norm $W$ is returned: $W^\top = X_c^{+} Y_c$ with $X_c$, $Y_c$
    the centred inputs and targets and $^{+}$ the Moore-Penrose pseudo-inverse
    (singular values below $\max(nk, d)\,\varepsilon$ times the largest count as zero).
    $W$ has rank at most $\min(n - 1, d)$ whatever $k$.

    **Arguments:**

    - `x0`: the clean points $x_{0,i}$, shape `(n, d)`.
    - `xt`: their noisy copies $x_{T,ij}$, shape `(n, k, d)`, e.g. from
      [`jaxflow.data.forward_jump`][].
    - `mask`: optional booleans of shape `(n,)`; rows where it is `False` are ignored.
      Training sets of different sizes padded to one shape then share one compilation.

    **Returns:** an [`jaxflow.denoisers.AffineDenoiser`][].

    !!! note
        Differentiable (through the pseudo-inverse's JVP, valid while the rank is
        constant), jit-compiled once per shape, and vmappable over repetitions.
    """
    x0 = check_points(x0)
    xt = check_noisy_copies(xt, x0)
    mask_weights(mask, x0.shape[0], x0.dtype)
    return _fit_affine(x0, xt, mask)


@eqx.filter_jit
def _fit_affine(x0, xt, mask) -> AffineDenoiser:
    n, k, d = xt.shape
    w = jnp.repeat(mask_weights(mask, n, x0.dtype), k)
    targets = jnp.broadcast_to(x0[:, None, :], xt.shape).reshape(n * k, d)
    return AffineDenoiser(*_centred_fit(xt.reshape(n * k, d), targets, w))


def wiener_fit(
    x0: Float[Array, "n d"], a: Float[Array, ""], c2: Float[Array, ""], mask=None
) -> AffineDenoiser:
    # Minimise E_z (1/n) sum_i |x_i - W (a x_i + c z_i) - b|^2. With S the (biased)
    # covariance of the x_i: b = (I - a W) xbar and W (a^2 S + c^2 I) = a S. The matrix
    # a^2 S + c^2 I is positive definite for c > 0, so a linear solve is well posed and
    # differentiable even where S is rank deficient (an eigh or SVD of S would have
    # NaN gradients at its repeated zero eigenvalues). S and the solve commute, so W is
    # symmetric; symmetrise away the round-off.
    n, d = x0.shape
    mean, _, xc = masked_moments(x0, mask)
    s = divide_by_scalar(xc.T @ xc, jnp.sum(mask_weights(mask, n, x0.dtype)))
    weight = jnp.linalg.solve(a**2 * s + c2 * jnp.eye(d, dtype=x0.dtype), a * s)
    weight = 0.5 * (weight + weight.T)
    return AffineDenoiser(weight, mean - a * weight @ mean)


def wiener_affine(
    x0: Float[Array, "n d"],
    *,
    T: Real[ArrayLike, ""],
    lam: Real[ArrayLike, ""],
    mask: Bool[ArrayLike, " n"] | None = None,
) -> AffineDenoiser:
    r"""The noise-averaged (Wiener) affine denoiser: the limit of
    [`jaxflow.training.fit_affine`][] as the number $k$ of noise draws per point grows.

    It minimises the least-squares loss in expectation over the forward noise
    $x_T = a x_0 + c z$, $a = e^{-T}$, $c^2 = \ell (1 - e^{-2T})$, $\ell = \lambda e^{-2T}$
    ([H]; docs/models.md#linear-one-step-model):

    $$W = a S\,(a^2 S + c^2 I)^{-1}, \qquad b = (I - a W)\,\bar x_0, \qquad
    S = \frac1n \sum_i (x_{0,i} - \bar x_0)(x_{0,i} - \bar x_0)^\top.$$

    $W$ is symmetric, so the two covariance conventions of
    [`jaxflow.flows.one_step_gaussian`][] agree for it. It has the rank of $S$, at most
    $n - 1$. A smooth function of $T$ and $\lambda$: use it for `jax.grad` of the
    expected distance without sampling noise.

    **Arguments:**

    - `x0`: the clean points, shape `(n, d)`.
    - `T`, `lam`: the forward process's time $T > 0$ and noise scale $\lambda > 0$.
    - `mask`: optional booleans of shape `(n,)`; rows where it is `False` are ignored.

    **Returns:** an [`jaxflow.denoisers.AffineDenoiser`][].

    **Example:** the gradient of the expected KL divergence with respect to $T$ and $\lambda$:

    ```python
    import jax, jax.numpy as jnp, jax.random as jr
    import jaxflow

    jax.config.update("jax_enable_x64", True)
    d, n = 20, 60
    p = jaxflow.data.Gaussian.isotropic(d, mean=10.0)
    x0 = p.sample(n, key=jr.key(0))

    def kl(T, lam):
        denoiser = jaxflow.training.wiener_affine(x0, T=T, lam=lam)
        q = jaxflow.flows.one_step_gaussian(denoiser, x0, T=T, lam=lam)
        return jaxflow.estimators.kl_divergence(q, p)

    dkl_dT, dkl_dlam = jax.grad(kl, argnums=(0, 1))(2.0, 1.0)
    ```
    """
    x0 = check_points(x0)
    T, lam = positive_scalars(x0.dtype, "wiener_affine", T=T, lam=lam)
    mask_weights(mask, x0.shape[0], x0.dtype)
    return _wiener_affine(x0, T, lam, mask)


@eqx.filter_jit
def _wiener_affine(x0, T, lam, mask) -> AffineDenoiser:
    return wiener_fit(x0, *ou_coefficients(T, lam), mask)
