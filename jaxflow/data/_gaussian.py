import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_finite, check_floating, check_int, check_key, is_concrete
from .._custom_types import PRNGKey


def _check_psd(cov) -> None:
    """Refuse, on the host, a concrete covariance that is not symmetric positive
    semi-definite up to rounding (a few hundred ulps of its largest entry or eigenvalue)."""
    c = np.asarray(cov, np.float64)
    d = c.shape[-1]
    scale = float(np.max(np.abs(c))) if c.size else 0.0
    tol = 100 * d * float(jnp.finfo(cov.dtype).eps) * scale
    if np.any(np.abs(c - np.swapaxes(c, -1, -2)) > tol):
        raise ValueError("`cov` must be symmetric; pass 0.5 * (cov + cov.T).")
    low = float(np.min(np.linalg.eigvalsh(c)))
    if low < -tol:
        raise ValueError(
            f"`cov` must be positive semi-definite, but it has the eigenvalue {low:.3g}."
        )


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
        if self.mean.ndim < 1:
            raise ValueError(f"`mean` must have shape (d,), got {self.mean.shape}.")
        d = self.mean.shape[-1]
        if self.cov.shape[-2:] != (d, d):
            raise ValueError(
                f"`cov` must have shape ({d}, {d}) to match `mean`, got {self.cov.shape}."
            )
        check_floating(self.mean, "mean")
        if self.cov.dtype != self.mean.dtype:
            raise TypeError(
                f"`mean` ({self.mean.dtype}) and `cov` ({self.cov.dtype}) must have the same dtype."
            )
        # Host-side checks of a concrete Gaussian (never of one built inside `jit`).
        if is_concrete(self.mean) and is_concrete(self.cov):
            check_finite(self.mean, "mean")
            check_finite(self.cov, "cov")
            _check_psd(self.cov)

    @classmethod
    def isotropic(
        cls, d: int, mean: ArrayLike = 0.0, std: ArrayLike = 1.0, dtype=None
    ) -> "Gaussian":
        r"""$\mathcal{N}(m\mathbf{1}, s^2 I_d)$."""
        d = check_int(d, "d", minimum=1)
        dtype = jnp.result_type(float) if dtype is None else dtype
        if jnp.shape(mean) not in ((), (d,)):
            raise ValueError(
                f"`mean` must be a scalar or have shape ({d},), got {jnp.shape(mean)}."
            )
        check_finite(std, "std")
        mean = jnp.broadcast_to(jnp.asarray(mean, dtype), (d,))
        return cls(mean, jnp.asarray(std, dtype) ** 2 * jnp.eye(d, dtype=dtype))

    @property
    def d(self) -> int:
        return self.mean.shape[-1]

    def sample(self, n: int, *, key: PRNGKey) -> Float[Array, "n d"]:
        r"""$n$ draws $\mu + \Sigma^{1/2} z$, shape `(n, d)`.

        The symmetric square root handles a degenerate $\Sigma$."""
        n = check_int(n, "n", minimum=1)
        check_key(key)
        evals, evecs = jnp.linalg.eigh(self.cov)
        root = (evecs * jnp.sqrt(jnp.clip(evals, 0.0))) @ evecs.T
        return self.mean + jr.normal(key, (n, self.d), self.mean.dtype) @ root
