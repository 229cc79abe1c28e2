import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, ArrayLike, Float

from .._custom_types import PRNGKey


class Gaussian(eqx.Module):
    r"""A Gaussian distribution $\mathcal{N}(\mu, \Sigma)$ on $\mathbb{R}^d$, possibly degenerate.

    Used for the sampling distribution $p = \mathcal{N}(m\mathbf{1}, s^2 I)$ of [H] and the
    generated distribution $q = \mathcal{N}(\mu_g, \Sigma_g)$ of the linear denoiser.

    **Fields:**

    - `mean`: $\mu$, shape `(d,)`.
    - `cov`: $\Sigma$, shape `(d, d)`, symmetric positive semi-definite.
    """

    mean: Float[Array, " d"]
    cov: Float[Array, "d d"]

    def __check_init__(self):
        d = self.mean.shape[-1]
        if self.cov.shape[-2:] != (d, d):
            raise ValueError(
                f"`cov` must have shape ({d}, {d}) to match `mean`, got {self.cov.shape}."
            )

    @classmethod
    def isotropic(
        cls, d: int, mean: ArrayLike = 0.0, std: ArrayLike = 1.0, dtype=None
    ) -> "Gaussian":
        r"""$\mathcal{N}(m\mathbf{1}, s^2 I_d)$."""
        dtype = jnp.result_type(float) if dtype is None else dtype
        mean = jnp.broadcast_to(jnp.asarray(mean, dtype), (d,))
        return cls(mean, jnp.asarray(std, dtype) ** 2 * jnp.eye(d, dtype=dtype))

    @property
    def d(self) -> int:
        return self.mean.shape[-1]

    def sample(self, n: int, *, key: PRNGKey) -> Float[Array, "n d"]:
        r"""$n$ draws $\mu + \Sigma^{1/2} z$, shape `(n, d)`.

        The symmetric square root handles a degenerate $\Sigma$."""
        evals, evecs = jnp.linalg.eigh(self.cov)
        root = (evecs * jnp.sqrt(jnp.clip(evals, 0.0))) @ evecs.T
        return self.mean + jr.normal(key, (n, self.d), self.mean.dtype) @ root
