import enum

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from .._checks import check_points_like, check_positive
from .._numerics import clip01, inf_norm
from ..data import Dataset
from ._hyperbox import apex_and_edges, as_training_set, coordinates, dual_basis


class EndpointClass(enum.IntEnum):
    """The classes of a flow endpoint ([Z], Section 5; docs/models.md#endpoint-classes).

    - `TRAINING`: within `tol` of a training point (memorization);
    - `VIRTUAL`: within `tol` of a sum of two or more training points (a hyperbox vertex
      that is not a training point);
    - `ORIGIN`: within `tol` of the empty sum, the origin (orthogonal data only);
    - `MANIFOLD`: within `tol` of the hyperbox's boundary but not of a vertex;
    - `OTHER`: anything else, inside the hyperbox or outside it (and non-finite points).

    The values are the labels of [`jaxflow.estimators.Classification`][]; `name.lower()`
    keys its `rates`.
    """

    TRAINING = 0
    VIRTUAL = 1
    ORIGIN = 2
    MANIFOLD = 3
    OTHER = 4


NUM_CLASSES = len(EndpointClass)


class Classification(eqx.Module):
    """The classes of a batch of endpoints, from
    [`jaxflow.estimators.classify_endpoints`][].

    **Fields:**

    - `label`: the class of each endpoint, an [`jaxflow.estimators.EndpointClass`][]
      value, shape `(batch,)`.
    - `vertex`: the nearest hyperbox vertex as a subset of edges (the coordinates rounded
      at 1/2), shape `(batch, m)`. For orthogonal data `vertex[i, n]` says whether $x_n$
      is in the sum; for a simplex, whether the edge $x_{n+1} - x_0$ is.
    - `vertex_distance`: the $L^\\infty$ distance to that vertex, shape `(batch,)`.
    - `boundary_distance`: the $L^\\infty$ distance to the boundary point $b$ of
      `classify_endpoints`, shape `(batch,)`.
    - `counts`: the number of endpoints in each class, indexed by `EndpointClass`,
      shape `(5,)`.
    - `tol`: the tolerance used, a scalar.
    """

    label: Int[Array, " batch"]
    vertex: Bool[Array, "batch m"]
    vertex_distance: Float[Array, " batch"]
    boundary_distance: Float[Array, " batch"]
    counts: Int[Array, " classes"]
    tol: Float[Array, ""]

    @property
    def rates(self) -> dict[str, Float[Array, ""]]:
        """The fraction of endpoints in each class, keyed by lower-case class name in the
        order of `EndpointClass`: the memorization rate (`"training"`) comes first."""
        total = jnp.sum(self.counts, axis=-1)
        return {c.name.lower(): self.counts[..., c] / total for c in EndpointClass}

    @property
    def memorization_rate(self) -> Float[Array, ""]:
        """The fraction of endpoints within `tol` of a training point."""
        return self.rates["training"]


@eqx.filter_jit
def _classify(
    endpoints: Float[Array, "batch d"],
    points: Float[Array, "n d"],
    tol: Float[Array, ""] | None,
    simplex: bool,
) -> Classification:
    # Explicitly the wider of the two dtypes: float32 endpoints of a float32 flow are
    # classified against float64 points in float64.
    dtype = jnp.promote_types(endpoints.dtype, points.dtype)
    endpoints, points = endpoints.astype(dtype), points.astype(dtype)
    apex, edges = apex_and_edges(points, simplex)
    lengths = jnp.linalg.norm(edges, axis=1)
    if tol is None:
        tol = 0.2 * jnp.min(lengths)
    else:
        tol = tol.astype(dtype)
        tol = eqx.error_if(tol, ~(tol > 0), "classify_endpoints needs tol > 0.")

    inverse, dual = dual_basis(edges)
    alpha = coordinates(endpoints, apex, dual)

    # Vertices: round the coordinates at 1/2 rather than search the 2^m subset sums. For
    # orthogonal edges this is the Euclidean-nearest vertex (the squared distance is
    # sum_n L_n^2 (alpha_n - v_n)^2 plus the off-span part, minimised coordinate-wise).
    vertex = alpha >= 0.5
    vertex_distance = inf_norm(endpoints - apex - vertex.astype(dtype) @ edges)
    size = jnp.sum(vertex, axis=-1)
    # For a simplex the empty subset is the apex x_0 and one edge gives x_0 + e_n = x_n:
    # both are training points.
    empty = EndpointClass.TRAINING if simplex else EndpointClass.ORIGIN
    vertex_label = jnp.where(
        size >= 2, EndpointClass.VIRTUAL, jnp.where(size == 1, EndpointClass.TRAINING, empty)
    )

    # Boundary. A point with a coordinate outside (0, 1) has its nearest box point on the
    # boundary: for orthogonal edges that is the clipped coordinates, which we take for any
    # edges. A point strictly inside is nearest to the facet {alpha_k = 0 or 1} whose
    # hyperplane is nearest, at distance min(alpha_k, 1 - alpha_k) / |g_k|, and the foot of
    # the perpendicular, alpha - (alpha_k - c) G^{-1} e_k / (G^{-1})_kk, lies in that facet
    # (the ball of that radius fits in the box). For orthogonal edges it sets alpha_k = c.
    inside = jnp.all((alpha > 0) & (alpha < 1), axis=-1)
    scale = jnp.sqrt(jnp.diagonal(inverse))
    k = jnp.argmin(jnp.minimum(alpha, 1 - alpha) / scale, axis=-1)
    alpha_k = jnp.take_along_axis(alpha, k[:, None], axis=-1)
    normal = inverse[k] / (scale**2)[k][:, None]
    face = (alpha_k >= 0.5).astype(dtype)  # the nearer of the two faces, 0 or 1
    foot = alpha - (alpha_k - face) * normal
    on_boundary = jnp.where(inside[:, None], foot, clip01(alpha))
    boundary_distance = inf_norm(endpoints - apex - on_boundary @ edges)

    label = jnp.where(
        vertex_distance <= tol,
        vertex_label,
        jnp.where(boundary_distance <= tol, EndpointClass.MANIFOLD, EndpointClass.OTHER),
    ).astype(jnp.int32)
    counts = jnp.bincount(label, length=NUM_CLASSES)
    return Classification(
        label=label,
        vertex=vertex,
        vertex_distance=vertex_distance,
        boundary_distance=boundary_distance,
        counts=counts,
        tol=tol,
    )


def classify_endpoints(
    endpoints: ArrayLike,
    points: ArrayLike | Dataset,
    tol: ArrayLike | None = None,
    *,
    simplex: bool = False,
) -> Classification:
    r"""Classify flow endpoints as training points, virtual points, the origin, manifold
    points or other points ([Z], Section 5; docs/models.md#endpoint-classes), without
    enumerating the $2^m$ hyperbox vertices.

    With the hyperbox $H = \{a + \sum_n \alpha_n e_n : \alpha \in [0, 1]^m\}$ of
    [`jaxflow.estimators.hyperbox_coordinates`][] and $\alpha(y)$ the coordinates of an
    endpoint $y$:

    1. **Vertex.** The nearest vertex is $v = a + \sum_n [\alpha_n \ge 1/2]\, e_n$. If
       $|y - v|_\infty \le \mathrm{tol}$, the endpoint is `TRAINING` when $v$ is one
       training point, `VIRTUAL` when it is the sum of two or more, and `ORIGIN` when it
       is the empty sum. For a simplex the empty sum is $x_0$ and one edge gives
       $x_0 + e_n = x_n$, both training points, so `ORIGIN` never occurs.
    2. **Boundary.** Otherwise let $b$ be a point of the boundary $\partial H$: the
       clipped coordinates $\mathrm{clip}(\alpha, 0, 1)$ when some $\alpha_n \notin (0, 1)$
       (the endpoint is outside $H$ or on it), else the foot of the perpendicular on the
       nearest facet $\{\alpha_k = 0\}$ or $\{\alpha_k = 1\}$ (for orthogonal edges:
       $\alpha$ with its coordinate nearest a face set to 0 or 1). If
       $|y - b|_\infty \le \mathrm{tol}$, the residual including the component of $y$
       off the edges' span, the endpoint is `MANIFOLD`.
    3. Else it is `OTHER`: inside the hyperbox, outside it, or not finite.

    The memorization rate is the fraction of `TRAINING` endpoints.

    !!! note
        For orthogonal edges, rotated or not, $v$ and $b$ are exactly the Euclidean-nearest
        vertex and boundary point; $b$ is also exact for endpoints inside $H$ whatever the
        edges. For an obtuse simplex the coordinates are oblique, and $v$ and, outside $H$,
        $b$ are a vertex and a boundary point but not always the nearest ones: the
        distances reported are then upper bounds of the $L^\infty$ distances from $y$ to
        the vertex set and to $\partial H$, and an endpoint just outside a facet may be
        labelled `OTHER` rather than `MANIFOLD`.

    **Main arguments:**

    - `endpoints`: the points to classify, shape `(batch, d)`.
    - `points`: the training set, shape `(n, d)`, or a [`jaxflow.data.Dataset`][] (whose
      own `simplex` flag is then used).
    - `tol`: the $L^\infty$ tolerance, a positive scalar. Default
      $0.2 \min_n |e_n|$ (*choice* of [Z]). Traced, so a new value does not recompile.

    **Other arguments:**

    - `simplex`: whether `points[0]` is the apex $x_0$ of an obtuse simplex. Default
      `False`.

    **Returns:** a [`jaxflow.estimators.Classification`][] with `.label`, `.vertex`,
    `.counts` and `.rates` (memorization rate first).

    **Raises:** `ValueError` if the shapes do not match, the edges are linearly dependent
    (a degenerate hyperbox) or a concrete `tol` is not positive; `TypeError` for
    non-floating input; an `EquinoxRuntimeError` for a traced non-positive `tol`.

    ```python
    import jax.random as jr
    import jaxflow

    data = jaxflow.data.orthogonal(30, 30)
    denoiser = jaxflow.MinNormOrthogonal(data.points)
    y0 = jaxflow.data.GaussianStarts(
        0.5 * data.points.sum(0), 0.3, num_starts=1000, key=jr.key(0)
    ).materialize()
    # The closed-form flow's exact endpoints; `jaxflow.probability_flow` solves any flow.
    ys = jaxflow.flows.exact_probability_flow(denoiser, y0, sigma_max=0.08, sigma_min=1e-3)
    classes = jaxflow.estimators.classify_endpoints(ys, data.points)
    classes.rates  # {"training": ..., "virtual": ..., "origin": ..., ...}
    ```
    """
    points, simplex = as_training_set(points, simplex)
    endpoints = check_points_like(endpoints, points.shape[1], "endpoints", batch=True)
    if endpoints.shape[0] == 0:
        raise ValueError("`endpoints` is empty (batch = 0); pass at least one endpoint.")
    tol = check_positive(tol, "tol")
    return _classify(endpoints, points, tol, simplex)
