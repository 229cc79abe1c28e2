from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_all_positive, check_points, is_concrete
from .._custom_types import Point, Points, Sigma
from .._numerics import clip01
from ._base import AbstractClosedFormMinNorm
from ._relu import ShallowReLU


def _gram_tolerance(dtype) -> float:
    # Generous enough for points built by QR in float32, tight enough to refuse any
    # visibly non-orthogonal set.
    return 1e3 * float(jnp.finfo(dtype).eps)


def _check_edges(edges: Points, *, allow_obtuse: bool, what: str) -> None:
    """Refuse edge sets that break the closed form's assumptions (host-side)."""
    if not is_concrete(edges):
        return
    e = np.asarray(edges, dtype=np.float64)
    m, d = e.shape
    if m > d:
        raise ValueError(f"{what}: {m} edges cannot be pairwise orthogonal or obtuse in d={d}.")
    lengths = np.linalg.norm(e, axis=1)
    if not np.all(lengths > 0):
        raise ValueError(f"{what}: edge {int(np.argmin(lengths))} has zero length.")
    cosines = (e @ e.T) / np.outer(lengths, lengths)
    np.fill_diagonal(cosines, 0.0)
    tol = _gram_tolerance(edges.dtype)
    bad = cosines > tol if allow_obtuse else np.abs(cosines) > tol
    if np.any(bad):
        i, j = np.unravel_index(np.argmax(np.where(bad, np.abs(cosines), -1)), bad.shape)
        need = "obtuse or right" if allow_obtuse else "orthogonal"
        raise ValueError(
            f"{what} needs {need} angles between edges, but edges {i} and {j} have "
            f"cosine {cosines[i, j]:.3g} (tolerance {tol:.1e}). The closed form does not "
            "hold for this data; train a `ShallowReLU` instead."
        )


def _default_alpha(alpha: ArrayLike | None, d: int, dtype) -> Float[Array, ""]:
    # The norm of a d-dimensional standard Gaussian noise vector ([Z], Section 2;
    # docs/conventions.md#ball-radius).
    value = np.sqrt(d) if alpha is None else alpha
    check_all_positive(value, "alpha")
    return jnp.asarray(value, dtype)


def _check_rho(lengths: Float[Array, " m"], rho: Float[Array, ""], what: str) -> Float[Array, ""]:
    return eqx.error_if(
        rho,
        (2 * rho >= jnp.min(lengths)) | (rho < 0),
        f"{what}: the closed form needs 0 <= 2 * alpha * sigma < min_n L_n (balls of radius "
        "alpha * sigma around the training points must not overlap); lower sigma, or "
        "read `max_sigma` for the largest valid noise level.",
    )


def _ramps(
    y: Point, apex: Point, edges: Points, alpha: Float[Array, ""], sigma: Sigma, what: str
) -> Point:
    lengths = jnp.linalg.norm(edges, axis=1)
    rho = _check_rho(lengths, alpha * sigma, what)
    s = (edges @ (y - apex)) / lengths
    return apex + clip01((s - rho) / (lengths - 2 * rho)) @ edges


def _ramp_network(apex: Point, edges: Points, alpha, sigma: Sigma, what: str) -> ShallowReLU:
    """The 2m-unit ReLU network equal to `_ramps`, balanced so that |a_k| = |w_k|."""
    lengths = jnp.linalg.norm(edges, axis=1)
    rho = _check_rho(lengths, alpha * jnp.asarray(sigma, edges.dtype), what)
    units = edges / lengths[:, None]
    slope = lengths - 2 * rho
    # relu(s - rho) - relu(s - (L - rho)) = (L - 2 rho) clip((s - rho) / (L - 2 rho), 0, 1);
    # scaling w by t and a by 1/t keeps the function and balances the norms when
    # t^2 = L / (L - 2 rho).
    t = jnp.sqrt(lengths / slope)
    offset = units @ apex
    w = jnp.concatenate([units * t[:, None]] * 2)
    b = jnp.concatenate([-(offset + rho) * t, -(offset + lengths - rho) * t])
    out = edges / (slope * t)[:, None]
    a = jnp.concatenate([out, -out])
    d = apex.shape[0]
    return ShallowReLU(a=a, w=w, b=b, v=jnp.zeros((d, d), edges.dtype), c=apex)


class MinNormOrthogonal(AbstractClosedFormMinNorm):
    r"""The minimum-norm shallow ReLU denoiser for orthogonal data, in closed form
    ([Z], Section 2; docs/models.md#closed-forms):

    $$h^*_\rho(y) = \sum_n x_n\, \mathrm{clip}\!\left(\frac{u_n \cdot y - \rho}{L_n - 2\rho},
    0, 1\right), \qquad \rho = \alpha\sigma,\ L_n = |x_n|,\ u_n = x_n / L_n.$$

    Its range is the hyperbox $\{\sum_n \alpha_n x_n : \alpha \in [0, 1]^N\}$.

    **Arguments:**

    - `points`: orthogonal training points $x_n$, shape `(n, d)`, $n \le d$.
    - `alpha`: $\alpha$, the radius of the noise ball in units of $\sigma$. Default
      $\sqrt{d}$.

    **Raises:** `ValueError` at construction if the points are not orthogonal; an
    `EquinoxRuntimeError` when called with $2\alpha\sigma \ge \min_n L_n$.
    """

    points: Points
    alpha: Float[Array, ""]
    simplex: ClassVar[bool] = False

    def __init__(self, points: Points, alpha: ArrayLike | None = None):
        points = check_points(points, "points")
        _check_edges(points, allow_obtuse=False, what="MinNormOrthogonal")
        self.points = points
        self.alpha = _default_alpha(alpha, points.shape[1], points.dtype)

    def __call__(self, y: Point, sigma: Sigma) -> Point:
        return _ramps(y, self.apex, self.edges, self.alpha, sigma, "MinNormOrthogonal")

    def network(self, sigma: Sigma) -> ShallowReLU:
        r"""The equivalent $2N$-unit [`jaxflow.denoisers.ShallowReLU`][] at `sigma`,
        with $V = 0$, $c = 0$ and cost $\sum_n 2 L_n / (L_n - 2\rho)$."""
        return _ramp_network(self.apex, self.edges, self.alpha, sigma, "MinNormOrthogonal")


class MinNormObtuseSimplex(AbstractClosedFormMinNorm):
    r"""The minimum-norm shallow ReLU denoiser for an obtuse simplex, in closed form
    ([Z], Section 2; docs/models.md#closed-forms):

    $$h^*_\rho(y) = x_0 + \sum_{n \ge 1} (x_n - x_0)\, \mathrm{clip}\!\left(
    \frac{u_n \cdot (y - x_0) - \rho}{L_n - 2\rho}, 0, 1\right),$$

    $u_n = (x_n - x_0)/L_n$, $L_n = |x_n - x_0|$, valid when
    $(x_i - x_0) \cdot (x_j - x_0) \le 0$ for $i \ne j$ and $2\rho < \min_n L_n$.

    **Arguments:**

    - `points`: the simplex $x_0, \dots, x_N$, shape `(N + 1, d)`, apex first.
    - `alpha`: as in [`jaxflow.denoisers.MinNormOrthogonal`][].

    **Raises:** `ValueError` at construction if an angle at $x_0$ is acute; an
    `EquinoxRuntimeError` when called with $2\alpha\sigma \ge \min_n L_n$.
    """

    points: Points
    alpha: Float[Array, ""]
    simplex: ClassVar[bool] = True

    def __init__(self, points: Points, alpha: ArrayLike | None = None):
        if getattr(points, "ndim", None) == 2 and points.shape[0] == 1:
            raise ValueError(
                f"`points` must have shape (N + 1, d), N >= 1, got {points.shape}; "
                "pass the apex and at least one more point."
            )
        points = check_points(points, "points")
        _check_edges(points[1:] - points[0], allow_obtuse=True, what="MinNormObtuseSimplex")
        self.points = points
        self.alpha = _default_alpha(alpha, points.shape[1], points.dtype)

    def __call__(self, y: Point, sigma: Sigma) -> Point:
        return _ramps(y, self.apex, self.edges, self.alpha, sigma, "MinNormObtuseSimplex")

    def network(self, sigma: Sigma) -> ShallowReLU:
        """The equivalent $2N$-unit `ShallowReLU` at `sigma`, with $c = x_0$."""
        return _ramp_network(self.apex, self.edges, self.alpha, sigma, "MinNormObtuseSimplex")
