import jax.numpy as jnp
from jaxtyping import Array, Float

from .._checks import check_all_positive, check_finite
from .._custom_types import Sigma
from ._base import AbstractAffineDenoiser


class AffineDenoiser(AbstractAffineDenoiser):
    r"""An affine denoiser $D(y; \sigma) = W y + b$ that ignores $\sigma$: [H]'s linear
    one-step denoiser ([H]; docs/models.md#linear-one-step-model).

    Fit it with [`jaxflow.training.fit_affine`][] (least squares on noisy copies) or
    [`jaxflow.training.wiener_affine`][] (its noise-averaged limit). `__call__` handles
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
        check_finite(self.weight, "weight")
        check_finite(self.bias, "bias")

    def at(self, sigma: Sigma) -> "AffineDenoiser":
        """The affine map used at noise level `sigma`: this denoiser itself."""
        del sigma
        return self


class PiecewiseAffine(AbstractAffineDenoiser):
    r"""One affine denoiser per noise level, $D(y; \sigma) = W_l y + b_l$ with $l$ the
    level nearest to $\sigma$ in $\log \sigma$ ([H]; docs/models.md#diffusion-steps).

    Fit it with [`jaxflow.training.fit_piecewise_affine`][] on the grid of a
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
        check_all_positive(self.sigmas, "sigmas")
        check_finite(self.weight, "weight")
        check_finite(self.bias, "bias")

    def level(self, sigma: Sigma) -> Array:
        """The index of the level nearest to `sigma` in $\\log\\sigma$."""
        return jnp.argmin(jnp.abs(jnp.log(self.sigmas) - jnp.log(sigma)))

    def at(self, sigma: Sigma) -> AffineDenoiser:
        """The affine denoiser used at noise level `sigma`."""
        i = self.level(sigma)
        return AffineDenoiser(self.weight[i], self.bias[i])
