"""NaN-safe numerical helpers shared by all stages.

Each helper names the trap it avoids, in the manner of `optax`'s numerics module.
"""

import jax.numpy as jnp
from jaxtyping import Array, Float


def scaled_sq_distances(
    y: Float[Array, " d"], points: Float[Array, "n d"], sigma: Float[Array, ""]
) -> Float[Array, " n"]:
    r"""$\lVert (y - x_n) / \sigma \rVert^2$ for every row $x_n$ of `points`.

    Dividing *before* squaring keeps the result finite for tiny `sigma`: in float32,
    $\sigma^2$ underflows to zero at $\sigma \approx 10^{-23}$, and the expanded form
    $|y|^2 - 2 y \cdot x + |x|^2$ loses every digit to cancellation near a data point.
    """
    diff = (y - points) / sigma
    return jnp.sum(diff * diff, axis=-1)


def inf_norm(x: Float[Array, "... d"]) -> Float[Array, "..."]:
    """$L^\\infty$ norm over the last axis."""
    return jnp.max(jnp.abs(x), axis=-1)


def clip01(x: Array) -> Array:
    """Clip to the unit interval; the hyperbox coordinates' natural range."""
    return jnp.clip(x, 0.0, 1.0)
