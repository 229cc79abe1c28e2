import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_points, check_points_like, is_concrete
from ..data import Dataset


def as_training_set(points: ArrayLike | Dataset, simplex: bool) -> tuple[Array, bool]:
    """Validate a training set at trace time; accept a `Dataset` in place of
    `points, simplex`.

    **Returns:** `points` as a floating JAX array of shape `(n, d)`, and `simplex`.
    """
    if isinstance(points, Dataset):
        if simplex and not points.simplex:
            raise ValueError(
                "`simplex=True` contradicts the `Dataset` passed as `points`, which is not a "
                "simplex; pass `points.points` to override its flag."
            )
        points, simplex = points.points, points.simplex
    points = check_points(jnp.asarray(points), "points")
    if simplex and points.shape[0] < 2:
        raise ValueError(
            f"A simplex needs its apex and at least one more point: `points` has shape "
            f"{points.shape} with `simplex=True`."
        )
    if is_concrete(points):
        _check_independent(points, simplex)
    return points, bool(simplex)


def _check_independent(points: Array, simplex: bool) -> None:
    """Refuse linearly dependent edges: their hyperbox is flat and its coordinates are not
    unique (a simplex with edges summing to zero, or a repeated point)."""
    e = np.asarray(points, np.float64)
    e = e[1:] - e[0] if simplex else e
    singular = np.linalg.svd(e, compute_uv=False)
    threshold = 1e3 * np.finfo(points.dtype).eps * singular.max()
    if e.shape[0] > e.shape[1] or singular.min() <= threshold:
        raise ValueError(
            f"The {e.shape[0]} hyperbox edges of `points` are linearly dependent (singular "
            f"values down to {singular.min():.3g}), so the hyperbox is degenerate and its "
            "coordinates are not unique."
        )


def apex_and_edges(
    points: Float[Array, "n d"], simplex: bool
) -> tuple[Float[Array, " d"], Float[Array, "m d"]]:
    """The hyperbox's apex and edges (see [`jaxflow.data.Dataset`][])."""
    if simplex:
        return points[0], points[1:] - points[0]
    return jnp.zeros_like(points[0]), points


def dual_basis(edges: Float[Array, "m d"]) -> tuple[Float[Array, "m m"], Float[Array, "m d"]]:
    r"""The inverse Gram matrix $G^{-1}$, $G = E E^\top$, and the dual basis
    $g_n = \sum_j (G^{-1})_{nj} e_j$ with $g_n \cdot e_j = \delta_{nj}$: the least-squares
    coordinates of $y$ are $\alpha_n = g_n \cdot y$.

    For orthogonal edges $G$ is diagonal and $g_n = e_n / L_n^2$ (to rounding).
    """
    inverse = jnp.linalg.inv(edges @ edges.T)
    return inverse, inverse @ edges


def coordinates(
    y: Float[Array, "*batch d"], apex: Float[Array, " d"], dual: Float[Array, "m d"]
) -> Float[Array, "*batch m"]:
    return (y - apex) @ dual.T


@eqx.filter_jit
def _hyperbox_coordinates(
    y: Float[Array, "*batch d"], points: Float[Array, "n d"], simplex: bool
) -> Float[Array, "*batch m"]:
    dtype = jnp.promote_types(y.dtype, points.dtype)  # explicitly the wider one
    apex, edges = apex_and_edges(points.astype(dtype), simplex)
    return coordinates(y.astype(dtype), apex, dual_basis(edges)[1])


def hyperbox_coordinates(
    y: ArrayLike, points: ArrayLike | Dataset, *, simplex: bool = False
) -> Float[Array, "*batch m"]:
    r"""The coordinates $\alpha$ of points in the hyperbox of a training set ([Z], Section 4;
    docs/models.md#closed-forms).

    The hyperbox is $H = \{a + \sum_{n=1}^m \alpha_n e_n : \alpha \in [0, 1]^m\}$ with apex
    $a$ and edges $e_n$: $a = 0$ and $e_n = x_n$ for orthogonal data, $a = x_0$ and
    $e_n = x_n - x_0$ for an obtuse simplex $x_0, \dots, x_N$. The coordinates are the
    least-squares solution

    $$\alpha = \operatorname*{arg\,min}_\alpha \Big|y - a - \sum_n \alpha_n e_n\Big|_2
    = G^{-1} E (y - a), \qquad G = E E^\top,$$

    so the component of $y - a$ off the span of the edges is dropped: $y$ lies in $H$ iff
    it lies in that span and $\alpha \in [0, 1]^m$. For orthogonal edges $G$ is diagonal
    and $\alpha_n = e_n \cdot (y - a) / L_n^2$.

    **Arguments:**

    - `y`: one point of shape `(d,)` or a batch of shape `(..., d)`.
    - `points`: the training set, shape `(n, d)`, or a [`jaxflow.data.Dataset`][] (whose
      own `simplex` flag is then used).
    - `simplex`: whether `points[0]` is the apex $x_0$ of an obtuse simplex. Default
      `False`: orthogonal data, apex at the origin.

    **Returns:** $\alpha$, shape `(..., m)` with $m = n$, or $m = n - 1$ for a simplex.

    **Raises:** `ValueError` if the shapes do not match or the edges are linearly
    dependent; `TypeError` for non-floating input.
    """
    points, simplex = as_training_set(points, simplex)
    y = check_points_like(y, points.shape[1], "y", batch=False)
    return _hyperbox_coordinates(y, points, simplex)
