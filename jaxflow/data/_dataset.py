import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._custom_types import Points


class Dataset(eqx.Module):
    r"""A training set $x_1, \dots, x_N$ and the hyperbox it spans.

    The hyperbox of [Z] is $\{a + \sum_n \alpha_n e_n : \alpha \in [0, 1]^m\}$ with apex
    $a$ and edges $e_n$. For orthogonal data the apex is the origin and the edges are
    the points themselves; for an obtuse simplex $x_0, \dots, x_N$ the apex is $x_0$
    (the first row of `points`) and the edges are $x_n - x_0$.

    **Fields:**

    - `points`: the training set, shape `(n, d)`.
    - `simplex`: whether `points[0]` is the apex $x_0$ of an obtuse simplex.
    """

    points: Points
    simplex: bool = eqx.field(static=True, default=False)

    @property
    def apex(self) -> Float[Array, " d"]:
        """The hyperbox's apex: $x_0$ for a simplex, else the origin."""
        return self.points[0] if self.simplex else jnp.zeros_like(self.points[0])

    @property
    def edges(self) -> Float[Array, "m d"]:
        """The hyperbox's edges $e_n$, one per row."""
        return self.points[1:] - self.points[0] if self.simplex else self.points

    @property
    def n(self) -> int:
        return self.points.shape[0]

    @property
    def d(self) -> int:
        return self.points.shape[1]
