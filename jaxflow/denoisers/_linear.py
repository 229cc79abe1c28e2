import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Real

from .._custom_types import Point, Sigma
from ..data import Gaussian, ou_coefficients
from ..data._forward import _check_points, _weights, masked_moments
from ._base import AbstractDenoiser


CONVENTIONS = ("consistent", "reference")


class AffineDenoiser(AbstractDenoiser):
    r"""An affine denoiser $D(y; \sigma) = W y + b$ that ignores $\sigma$: [H]'s linear
    one-step denoiser (SCIENCE.md H1).

    Fit it with [`jaxflow.denoisers.fit_affine`][] (least squares on noisy copies) or
    [`jaxflow.denoisers.wiener_affine`][] (its noise-averaged limit). `__call__` handles
    one point; batch it with `jax.vmap`.

    **Fields:**

    - `weight`: $W$, shape `(d, d)`.
    - `bias`: $b$, shape `(d,)`.
    """

    weight: Float[Array, "d d"]
    bias: Float[Array, " d"]

    def __check_init__(self):
        d = self.bias.shape[-1]
        if self.weight.shape[-2:] != (d, d):
            raise ValueError(
                f"`weight` must have shape ({d}, {d}) to match `bias`, got {self.weight.shape}."
            )

    def __call__(self, y: Point, sigma: Sigma) -> Point:
        del sigma
        return self.weight @ y + self.bias

    def at(self, sigma: Sigma) -> "AffineDenoiser":
        """The affine map used at noise level `sigma`: this denoiser itself."""
        del sigma
        return self


def _centred_fit(
    inputs: Float[Array, "m d"], targets: Float[Array, "m d"], w: Float[Array, " m"]
) -> tuple[Float[Array, "d d"], Float[Array, " d"]]:
    # Centring removes the intercept exactly; the pseudo-inverse then gives the
    # minimum-norm W when the centred inputs have rank m - 1 < d. Its JVP is defined on
    # rank-deficient inputs, and its shapes never depend on the rank, so the fit
    # jit-compiles once and vmaps over repetitions. Padding rows are zeroed after
    # centring: a zero equation leaves the minimum-norm solution unchanged.
    count = jnp.sum(w)
    in_mean = (w @ inputs) / count
    out_mean = (w @ targets) / count
    in_c = (inputs - in_mean) * w[:, None]
    out_c = (targets - out_mean) * w[:, None]
    weight = (jnp.linalg.pinv(in_c) @ out_c).T
    return weight, out_mean - weight @ in_mean


@eqx.filter_jit
def fit_affine(
    x0: Float[Array, "n d"], xt: Float[Array, "n k d"], *, mask: Bool[ArrayLike, " n"] | None = None
) -> AffineDenoiser:
    r"""Fit [H]'s affine denoiser by least squares (SCIENCE.md H1):

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
    _check_points(x0)
    if xt.ndim != 3 or xt.shape[0] != x0.shape[0] or xt.shape[2] != x0.shape[1]:
        raise ValueError(
            f"`xt` must have shape (n, k, d) = ({x0.shape[0]}, k, {x0.shape[1]}), got {xt.shape}."
        )
    n, k, d = xt.shape
    w = jnp.repeat(_weights(mask, n, x0.dtype), k)
    targets = jnp.broadcast_to(x0[:, None, :], xt.shape).reshape(n * k, d)
    return AffineDenoiser(*_centred_fit(xt.reshape(n * k, d), targets, w))


def _wiener(
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
    s = xc.T @ xc / jnp.sum(_weights(mask, n, x0.dtype))
    weight = jnp.linalg.solve(a**2 * s + c2 * jnp.eye(d, dtype=x0.dtype), a * s)
    weight = 0.5 * (weight + weight.T)
    return AffineDenoiser(weight, mean - a * weight @ mean)


@eqx.filter_jit
def wiener_affine(
    x0: Float[Array, "n d"],
    *,
    T: Real[ArrayLike, ""],
    lam: Real[ArrayLike, ""],
    mask: Bool[ArrayLike, " n"] | None = None,
) -> AffineDenoiser:
    r"""The noise-averaged (Wiener) affine denoiser: the limit of
    [`jaxflow.denoisers.fit_affine`][] as the number $k$ of noise draws per point grows.

    It minimises the least-squares loss in expectation over the forward noise
    $x_T = a x_0 + c z$, $a = e^{-T}$, $c^2 = \ell (1 - e^{-2T})$, $\ell = \lambda e^{-2T}$
    (SCIENCE.md H1):

    $$W = a S\,(a^2 S + c^2 I)^{-1}, \qquad b = (I - a W)\,\bar x_0, \qquad
    S = \frac1n \sum_i (x_{0,i} - \bar x_0)(x_{0,i} - \bar x_0)^\top.$$

    $W$ is symmetric, so the two covariance conventions of
    [`jaxflow.denoisers.one_step_gaussian`][] agree for it. It has the rank of $S$, at most
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
    x0 = p.sample(jr.key(0), n)

    def kl(T, lam):
        denoiser = jaxflow.denoisers.wiener_affine(x0, T=T, lam=lam)
        q = jaxflow.denoisers.one_step_gaussian(denoiser, x0, T=T, lam=lam)
        return jaxflow.estimators.kl_divergence(q, p)

    dkl_dT, dkl_dlam = jax.grad(kl, argnums=(0, 1))(2.0, 1.0)
    ```
    """
    _check_points(x0)
    T = jnp.asarray(T, x0.dtype)
    lam = jnp.asarray(lam, x0.dtype)
    T = eqx.error_if(T, (T <= 0) | (lam <= 0), "wiener_affine needs T > 0 and lam > 0.")
    return _wiener(x0, *ou_coefficients(T, lam), mask)


@eqx.filter_jit
def one_step_gaussian(
    denoiser: AffineDenoiser,
    x0: Float[Array, "n d"],
    *,
    T: Real[ArrayLike, ""],
    lam: Real[ArrayLike, ""],
    convention: str = "consistent",
    mask: Bool[ArrayLike, " n"] | None = None,
) -> Gaussian:
    r"""The distribution $q = \mathcal{N}(\mu_g, \Sigma_g)$ generated by [H]'s one-step
    model (SCIENCE.md H1): start from $x_T \sim \mathcal{N}(e^{-T} \bar x_0, v_T I)$ and
    output $W x_T + b$, so that

    $$\mu_g = b + W e^{-T} \bar x_0, \qquad \Sigma_g = v_T\, W W^\top \;\text{(consistent)}
    \quad\text{or}\quad v_T\, W^\top W \;\text{(reference)},$$

    $$v_T = e^{-2T} \frac1d \sum_{j=1}^d \widehat{\operatorname{var}}(x_{0,\cdot j})
    + \ell (1 - e^{-2T}), \qquad \ell = \lambda e^{-2T},$$

    with unbiased per-coordinate variances. $\Sigma_g$ has rank at most $n - 1$, so $q$
    is degenerate until $n \ge d + 1$.

    **Arguments:**

    - `denoiser`: the fitted [`jaxflow.denoisers.AffineDenoiser`][].
    - `x0`: the clean training points it was fitted on, shape `(n, d)`, $n \ge 2$.
    - `T`, `lam`: the forward process's time and noise scale.
    - `convention`: `"consistent"` ($v_T W W^\top$, the covariance of $W x_T + b$;
      default) or `"reference"` ($v_T W^\top W$, as [H]'s reference implementation
      computed it). The two share their nonzero eigenvalues, hence trace and
      determinant, but not their eigenvectors.
    - `mask`: optional booleans of shape `(n,)`, as passed to the fit; rows where it is
      `False` are ignored.

    **Returns:** a [`jaxflow.data.Gaussian`][].

    **Raises:** `ValueError` for an unknown `convention` or fewer than 2 points.
    """
    if convention not in CONVENTIONS:
        raise ValueError(
            f"`convention` must be one of {', '.join(map(repr, CONVENTIONS))}, got {convention!r}."
        )
    _check_points(x0)
    n, d = x0.shape
    if n < 2:
        raise ValueError(f"`x0` needs at least 2 points for a variance, got n={n}.")
    T = jnp.asarray(T, x0.dtype)
    lam = jnp.asarray(lam, x0.dtype)
    a, c2 = ou_coefficients(T, lam)
    xbar, var, _ = masked_moments(x0, mask)
    v = a**2 * jnp.mean(var) + c2
    w = denoiser.weight
    mean = denoiser.bias + a * (w @ xbar)
    cov = v * (w @ w.T if convention == "consistent" else w.T @ w)
    return Gaussian(mean, cov)


class PiecewiseAffine(AbstractDenoiser):
    r"""One affine denoiser per noise level, $D(y; \sigma) = W_l y + b_l$ with $l$ the
    level nearest to $\sigma$ in $\log \sigma$ (SCIENCE.md H4).

    Fit it with [`jaxflow.denoisers.fit_piecewise_affine`][] on the grid of a
    probability flow: every solver stage then evaluates at a fitted level exactly, and
    [`jaxflow.flows.gaussian_probability_flow`][] propagates Gaussians through it in
    closed form. `__call__` handles one point; batch it with `jax.vmap`.

    **Fields:**

    - `sigmas`: the noise levels $\sigma_l > 0$, shape `(levels,)`.
    - `weight`: $W_l$, shape `(levels, d, d)`.
    - `bias`: $b_l$, shape `(levels, d)`.
    """

    sigmas: Float[Array, " levels"]
    weight: Float[Array, "levels d d"]
    bias: Float[Array, "levels d"]

    def __check_init__(self):
        levels, d = self.bias.shape[-2:]
        if self.weight.shape[-3:] != (levels, d, d) or self.sigmas.shape[-1:] != (levels,):
            raise ValueError(
                f"`sigmas`, `weight`, `bias` must have shapes (levels,), (levels, d, d), "
                f"(levels, d); got {self.sigmas.shape}, {self.weight.shape}, {self.bias.shape}."
            )

    def level(self, sigma: Sigma) -> Array:
        """The index of the level nearest to `sigma` in $\\log\\sigma$."""
        return jnp.argmin(jnp.abs(jnp.log(self.sigmas) - jnp.log(sigma)))

    def at(self, sigma: Sigma) -> AffineDenoiser:
        """The affine denoiser used at noise level `sigma`."""
        i = self.level(sigma)
        return AffineDenoiser(self.weight[i], self.bias[i])

    def __call__(self, y: Point, sigma: Sigma) -> Point:
        return self.at(sigma)(y, sigma)


def _check_levels(sigmas, dtype) -> Float[Array, " levels"]:
    sigmas = jnp.asarray(sigmas, dtype)
    if sigmas.ndim != 1:
        raise ValueError(f"`sigmas` must have shape (levels,), got {sigmas.shape}.")
    return eqx.error_if(sigmas, jnp.any(sigmas <= 0), "the noise levels `sigmas` must be > 0.")


@eqx.filter_jit
def fit_piecewise_affine(
    x0: Float[Array, "n d"],
    xs: Float[Array, "levels n k d"],
    sigmas: Real[ArrayLike, " levels"],
    *,
    mask: Bool[ArrayLike, " n"] | None = None,
) -> PiecewiseAffine:
    r"""Fit one affine denoiser per noise level by least squares, as
    [`jaxflow.denoisers.fit_affine`][] does at each level (minimum-norm when
    $nk - 1 < d$), for the multi-step model of SCIENCE.md H4.

    The noisy copies follow the variance-exploding (EDM) forward process
    $x_\sigma = x_0 + \sigma z$ of the probability flow (SCIENCE.md Z4), not [H]'s
    Ornstein-Uhlenbeck jump: the flow's denoiser at level $\sigma$ must estimate
    $\mathbb{E}[x_0 \mid x_0 + \sigma z]$.

    **Arguments:**

    - `x0`: the clean points, shape `(n, d)`.
    - `xs`: their noisy copies at each level, shape `(levels, n, k, d)`, e.g. from
      [`jaxflow.data.forward_ve`][].
    - `sigmas`: the levels, shape `(levels,)`; usually a flow's grid.
    - `mask`: optional booleans of shape `(n,)`; rows where it is `False` are ignored.

    **Returns:** a [`jaxflow.denoisers.PiecewiseAffine`][].

    !!! note
        All levels are fitted at once under `jax.vmap`, so `xs` is held whole. For many
        levels of a large training set, fit level by level with
        [`jaxflow.denoisers.fit_affine`][] inside `jax.lax.map` and stack the results.
    """
    _check_points(x0)
    sigmas = _check_levels(sigmas, x0.dtype)
    if xs.ndim != 4 or xs.shape[0] != sigmas.shape[0]:
        raise ValueError(
            f"`xs` must have shape (levels, n, k, d) with levels={sigmas.shape[0]}, got {xs.shape}."
        )
    fits = jax.vmap(lambda x: fit_affine(x0, x, mask=mask))(xs)
    return PiecewiseAffine(sigmas, fits.weight, fits.bias)


@eqx.filter_jit
def wiener_piecewise_affine(
    x0: Float[Array, "n d"],
    sigmas: Real[ArrayLike, " levels"],
    *,
    mask: Bool[ArrayLike, " n"] | None = None,
) -> PiecewiseAffine:
    r"""The noise-averaged counterpart of [`jaxflow.denoisers.fit_piecewise_affine`][]:
    at each level the Wiener denoiser of $x_\sigma = x_0 + \sigma z$,

    $$W_l = S (S + \sigma_l^2 I)^{-1}, \qquad b_l = (I - W_l)\,\bar x_0,$$

    with $S$ the (biased) covariance of the training points. Smooth in the levels, so
    `jax.grad` through a flow with respect to $\sigma_{\max}$ sees no sampling noise.

    **Arguments:** `x0` of shape `(n, d)`; `sigmas` of shape `(levels,)`; optional
    `mask` of shape `(n,)` (rows where it is `False` are ignored).

    **Returns:** a [`jaxflow.denoisers.PiecewiseAffine`][].
    """
    _check_points(x0)
    sigmas = _check_levels(sigmas, x0.dtype)
    one = jnp.ones((), x0.dtype)
    fits = jax.vmap(lambda s: _wiener(x0, one, s**2, mask))(sigmas)
    return PiecewiseAffine(sigmas, fits.weight, fits.bias)
