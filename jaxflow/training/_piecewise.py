import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Real

from .._checks import check_levels, check_points, mask_weights
from ..denoisers import PiecewiseAffine
from ._affine import _fit_affine, check_noisy_copies, wiener_fit


def fit_piecewise_affine(
    x0: Float[Array, "n d"],
    xs: Float[Array, "levels n k d"],
    sigmas: Real[ArrayLike, " levels"],
    *,
    mask: Bool[ArrayLike, " n"] | None = None,
) -> PiecewiseAffine:
    r"""Fit one affine denoiser per noise level by least squares, as
    [`jaxflow.training.fit_affine`][] does at each level (minimum-norm when
    $nk - 1 < d$), for the multi-step model of [H]; docs/models.md#diffusion-steps.

    The noisy copies follow the variance-exploding (EDM) forward process
    $x_\sigma = x_0 + \sigma z$ of the probability flow ([Z], Section 4;
    docs/models.md#probability-flow), not [H]'s Ornstein-Uhlenbeck jump: the flow's denoiser at
    level $\sigma$ must estimate $\mathbb{E}[x_0 \mid x_0 + \sigma z]$.

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
        [`jaxflow.training.fit_affine`][] inside `jax.lax.map` and stack the results.
    """
    x0 = check_points(x0)
    sigmas = check_levels(sigmas, x0.dtype)
    xs = check_noisy_copies(xs, x0, "xs", levels=sigmas.shape[0])
    mask_weights(mask, x0.shape[0], x0.dtype)
    return _fit_piecewise_affine(x0, xs, sigmas, mask)


@eqx.filter_jit
def _fit_piecewise_affine(x0, xs, sigmas, mask) -> PiecewiseAffine:
    fits = jax.vmap(lambda x: _fit_affine(x0, x, mask))(xs)
    return PiecewiseAffine(sigmas, fits.weight, fits.bias)


def wiener_piecewise_affine(
    x0: Float[Array, "n d"],
    sigmas: Real[ArrayLike, " levels"],
    *,
    mask: Bool[ArrayLike, " n"] | None = None,
) -> PiecewiseAffine:
    r"""The noise-averaged counterpart of [`jaxflow.training.fit_piecewise_affine`][]:
    at each level the Wiener denoiser of $x_\sigma = x_0 + \sigma z$,

    $$W_l = S (S + \sigma_l^2 I)^{-1}, \qquad b_l = (I - W_l)\,\bar x_0,$$

    with $S$ the (biased) covariance of the training points. Smooth in the levels, so
    `jax.grad` through a flow with respect to $\sigma_{\max}$ sees no sampling noise.

    **Arguments:** `x0` of shape `(n, d)`; `sigmas` of shape `(levels,)`; optional
    `mask` of shape `(n,)` (rows where it is `False` are ignored).

    **Returns:** a [`jaxflow.denoisers.PiecewiseAffine`][].
    """
    x0 = check_points(x0)
    sigmas = check_levels(sigmas, x0.dtype)
    mask_weights(mask, x0.shape[0], x0.dtype)
    return _wiener_piecewise_affine(x0, sigmas, mask)


@eqx.filter_jit
def _wiener_piecewise_affine(x0, sigmas, mask) -> PiecewiseAffine:
    one = jnp.ones((), x0.dtype)
    fits = jax.vmap(lambda s: wiener_fit(x0, one, s**2, mask))(sigmas)
    return PiecewiseAffine(sigmas, fits.weight, fits.bias)
