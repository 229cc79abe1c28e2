import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, ArrayLike, Float

from .._checks import (
    check_finite,
    check_finite_scalar,
    check_floating,
    check_key,
    check_positive_int,
    is_concrete,
)
from .._custom_types import PRNGKey


class GaussianStarts(eqx.Module):
    r"""Initial noises $y_0^{(i)} = c + s\, \varepsilon_i$, drawn lazily by global index.

    The noise of start $i$ is $\varepsilon_i \sim \mathcal{N}(0, I_d)$ drawn from
    `jax.random.fold_in(key, i)`, so a start gets the same noise whatever the batch
    size, chunk size or device count. Flows accept a `GaussianStarts` wherever they
    accept an array `y0`, and draw each chunk only when they reach it, so that
    $10^7$ starts never sit in memory at once.

    **Fields:**

    - `centre`: $c$, shape `(d,)`.
    - `scale`: $s$, a scalar. Default 1.
    - `num_starts`: the number of starts (keyword-only).
    - `key`: PRNG key (keyword-only).
    """

    centre: Float[Array, " d"]
    scale: Float[Array, ""]
    num_starts: int = eqx.field(static=True)
    key: PRNGKey

    def __init__(self, centre: ArrayLike, scale: ArrayLike = 1.0, *, num_starts: int, key: PRNGKey):
        centre = jnp.asarray(centre)
        if centre.ndim != 1:
            raise ValueError(f"`centre` must have shape (d,), got {centre.shape}; pass one point.")
        check_floating(centre, "centre")
        check_finite(centre, "centre")
        scale = check_finite_scalar(scale, "scale", centre.dtype)
        if is_concrete(scale) and float(scale) < 0:
            raise ValueError(f"`scale` must be >= 0, got {float(scale)}.")
        check_key(key)
        self.centre = centre
        self.scale = scale
        self.num_starts = check_positive_int(num_starts, "num_starts")
        self.key = key

    @property
    def d(self) -> int:
        return self.centre.shape[0]

    @property
    def dtype(self):
        return self.centre.dtype

    def rows(self, indices: ArrayLike) -> Float[Array, "batch d"]:
        """The starts with the given global indices."""
        # Deliberately not jitted: XLA would fuse `centre + scale * eps` into contractions
        # whose rounding depends on the batch length, and a start's bits must not.

        def one(i):
            eps = jr.normal(jr.fold_in(self.key, i), (self.d,), self.dtype)
            return self.centre + self.scale * eps

        return jax.vmap(one)(jnp.asarray(indices))

    def chunk(self, start: int, size: int) -> Float[Array, "batch d"]:
        """Starts `start, ..., start + size - 1` (clamped to `num_starts`)."""
        return self.rows(jnp.arange(start, min(start + size, self.num_starts)))

    def materialize(self) -> Float[Array, "batch d"]:
        """All starts as one array, for saving or for another implementation."""
        return self.chunk(0, self.num_starts)
