"""Shared oracles for the tests: exact answers of [Z] (docs/models.md#model-z), written in NumPy
from the formulas themselves and never by calling jaxflow.

The oracles take and return NumPy arrays, compute in float64, and handle
a batch of points `y` of shape `(batch, d)`.
"""

import contextlib

import jax
import jax.monitoring
import jax.tree_util as jtu
import numpy as np
import pyarrow as pa


def tree_allclose(x, y, *, rtol=1e-5, atol=1e-8, equal_nan=False) -> bool:
    """Whether two PyTrees have the same structure and allclose leaves."""
    same_structure = jtu.tree_structure(x) == jtu.tree_structure(y)
    return same_structure and jtu.tree_reduce(
        lambda a, b: a and b,
        jtu.tree_map(
            lambda a, b: bool(
                np.shape(a) == np.shape(b)
                and np.allclose(
                    np.asarray(a), np.asarray(b), rtol=rtol, atol=atol, equal_nan=equal_nan
                )
            ),
            x,
            y,
        ),
        True,
    )


def tree_equal(x, y) -> bool:
    """Bitwise equality of two PyTrees of arrays (same structure, shapes, dtypes, bits)."""
    same_structure = jtu.tree_structure(x) == jtu.tree_structure(y)
    return same_structure and all(
        np.asarray(a).dtype == np.asarray(b).dtype and np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(jtu.tree_leaves(x), jtu.tree_leaves(y))
    )


# ---------------------------------------------------------------------------------------
# Training sets, built directly in NumPy.
# ---------------------------------------------------------------------------------------


def orthonormal_rows(rng: np.random.Generator, d: int, n: int) -> np.ndarray:
    """`n` random orthonormal rows in R^d (QR of a Gaussian matrix)."""
    q, _ = np.linalg.qr(rng.normal(size=(d, n)))
    return q.T


def orthogonal_points(rng: np.random.Generator, d: int, lengths) -> np.ndarray:
    """Orthogonal training points x_n = L_n u_n in a random orientation."""
    lengths = np.asarray(lengths, dtype=np.float64)
    return lengths[:, None] * orthonormal_rows(rng, d, lengths.size)


def obtuse_simplex_points(rng: np.random.Generator, d: int, lengths, *, beta=0.5, apex=None):
    """A simplex x_0, ..., x_N (apex first) with pairwise obtuse edges at x_0.

    Edges are L_n v_n / |v_n| with v_n = q_n - (beta / N) sum_j q_j, whose pairwise
    inner products are proportional to (beta^2 - 2 beta) / N < 0 for 0 < beta < 2.
    """
    lengths = np.asarray(lengths, dtype=np.float64)
    n = lengths.size
    q = orthonormal_rows(rng, d, n)
    v = q - (beta / n) * q.sum(axis=0)
    edges = lengths[:, None] * v / np.linalg.norm(v, axis=1, keepdims=True)
    x0 = np.zeros(d) if apex is None else np.asarray(apex, dtype=np.float64)
    return np.concatenate([x0[None], x0 + edges])


# ---------------------------------------------------------------------------------------
# The closed-form min-norm denoiser of [Z], Section 2; docs/models.md#closed-forms and its hyperbox.
# ---------------------------------------------------------------------------------------


def closed_form(y, apex, edges, rho) -> np.ndarray:
    """h*_rho(y) = apex + sum_n e_n clip((u_n . (y - apex) - rho) / (L_n - 2 rho), 0, 1)."""
    y, apex, edges = (np.asarray(a, dtype=np.float64) for a in (y, apex, edges))
    lengths = np.linalg.norm(edges, axis=1)
    s = (y - apex) @ (edges / lengths[:, None]).T
    return apex + np.clip((s - rho) / (lengths - 2 * rho), 0.0, 1.0) @ edges


def closed_form_orthogonal(y, points, rho) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    return closed_form(y, np.zeros(points.shape[1]), points, rho)


def closed_form_simplex(y, points, rho) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    return closed_form(y, points[0], points[1:] - points[0], rho)


def box_coordinates(y, apex, edges) -> np.ndarray:
    """The coefficients alpha with y - apex = sum_n alpha_n e_n + (residual off the span),
    by least squares (edges need not be orthogonal). Shape `(batch, n)`."""
    y, apex, edges = (np.asarray(a, dtype=np.float64) for a in (y, apex, edges))
    coeffs, *_ = np.linalg.lstsq(edges.T, (y - apex).T, rcond=None)
    return coeffs.T


def nearest_vertex(y, points) -> tuple[np.ndarray, np.ndarray]:
    """Nearest hyperbox vertex for orthogonal data: round u_n . y / L_n at 1/2.

    **Returns:** the vertex's indicator, `bool (batch, n)`, and the vertex, `(batch, d)`.
    """
    points = np.asarray(points, dtype=np.float64)
    lengths = np.linalg.norm(points, axis=1)
    s = np.asarray(y, dtype=np.float64) @ (points / lengths[:, None]).T
    indicator = s >= lengths / 2
    return indicator, indicator.astype(np.float64) @ points


# ---------------------------------------------------------------------------------------
# Exact probability flow of the closed-form denoiser, [Z], Section 4;
# docs/models.md#probability-flow.
# ---------------------------------------------------------------------------------------

FLAT_ZERO, RAMP, FLAT_L = 0, 1, 2


def flow_regions(y0, points, rho_max) -> np.ndarray:
    """The region each coordinate s0 = u_n . y0 starts in: FLAT_ZERO (s0 <= rho_max),
    FLAT_L (s0 >= L_n - rho_max) or RAMP. Shape `(batch, n)`."""
    points = np.asarray(points, dtype=np.float64)
    lengths = np.linalg.norm(points, axis=1)
    s0 = np.asarray(y0, dtype=np.float64) @ (points / lengths[:, None]).T
    return np.where(s0 <= rho_max, FLAT_ZERO, np.where(s0 >= lengths - rho_max, FLAT_L, RAMP))


def exact_probability_flow(y0, points, *, alpha, sigma_max, sigma_min) -> np.ndarray:
    """y(sigma_min) for the probability flow dy/dsigma = (y - h*_{alpha sigma}(y)) / sigma
    with orthogonal points, started at y(sigma_max) = y0.

    Per coordinate s = u_n . y the flow decouples. With rho = alpha sigma:
    - flat at 0, D_n = 0: ds/dsigma = s / sigma, so s is proportional to sigma;
    - flat at L_n, D_n = L_n: s - L_n is proportional to sigma;
    - ramp: ds/dsigma = alpha (L_n - 2 s) / (L_n - 2 alpha sigma), so s - L_n/2 is
      proportional to L_n - 2 alpha sigma.
    Each coordinate stays in its region (the region's edge s = rho(sigma) moves with the
    flat solution). Off the span, D = 0, so that component is proportional to sigma.
    All three solutions are affine in sigma.
    """
    y0, points = np.asarray(y0, dtype=np.float64), np.asarray(points, dtype=np.float64)
    lengths = np.linalg.norm(points, axis=1)
    units = points / lengths[:, None]
    q = sigma_min / sigma_max
    rho_max, rho_min = alpha * sigma_max, alpha * sigma_min
    s0 = y0 @ units.T
    off_span = y0 - s0 @ units
    ramp = lengths / 2 + (s0 - lengths / 2) * (lengths - 2 * rho_min) / (lengths - 2 * rho_max)
    s1 = np.where(
        s0 <= rho_max, s0 * q, np.where(s0 >= lengths - rho_max, lengths + (s0 - lengths) * q, ramp)
    )
    return s1 @ units + q * off_span


# ---------------------------------------------------------------------------------------
# Other oracles.
# ---------------------------------------------------------------------------------------


def empirical_denoiser(y, points, sigma) -> np.ndarray:
    """Posterior mean of (1/N) sum_n N(x_n, sigma^2 I): softmax_n(-|y - x_n|^2 / 2 sigma^2) x_n,
    computed directly (float64, max-subtracted)."""
    y, points = np.asarray(y, dtype=np.float64), np.asarray(points, dtype=np.float64)
    sq = ((y[:, None, :] - points[None, :, :]) ** 2).sum(-1)
    logits = -sq / (2 * sigma**2)
    w = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (w / w.sum(axis=1, keepdims=True)) @ points


def linear_denoiser(c):
    """D(y; sigma) = c / (c + sigma^2) y: the optimal denoiser of N(0, c I)."""
    return lambda y, sigma: c / (c + sigma**2) * y


def exact_linear_flow(y0, *, c, sigma_max, sigma) -> np.ndarray:
    """Exact probability flow of `linear_denoiser(c)`:
    dy/dsigma = (y - c y / (c + sigma^2)) / sigma = sigma y / (c + sigma^2), so
    y(sigma) = y0 sqrt((c + sigma^2) / (c + sigma_max^2))."""
    return np.asarray(y0, dtype=np.float64) * np.sqrt((c + sigma**2) / (c + sigma_max**2))


def fitted_order(steps, errors) -> float:
    """The slope p of log(error) = -p log(steps) + const, by least squares."""
    slope, _ = np.polyfit(np.log(np.asarray(steps, float)), np.log(np.asarray(errors, float)), 1)
    return -float(slope)


@contextlib.contextmanager
def count_compilations():
    """Count XLA backend compilations inside the block: `with count_compilations() as n:`
    then read `n[0]`."""
    count = [0]

    def listener(event, duration, **kwargs):
        del duration, kwargs
        if event == "/jax/core/compile/backend_compile_duration":
            count[0] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield count
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


@contextlib.contextmanager
def without_runtime_typechecks():
    """Switch off jaxtyping's runtime shape checks (on in the test suite) inside the block,
    to see the error a user gets from the library's own validation."""
    import jaxtyping

    previous = jaxtyping.config.jaxtyping_disable
    jaxtyping.config.update("jaxtyping_disable", True)
    try:
        yield
    finally:
        jaxtyping.config.update("jaxtyping_disable", previous)


class Stop(Exception):
    """Raised by a test to stop a run part-way (its finished cells stay on disk)."""

    def __init__(self, *args):
        del args
        super().__init__("stopped part-way on purpose")


def tables_equal(a, b) -> bool:
    """Two `pyarrow.Table`s with the same schema and the same values, NaN equal to NaN
    (a table's `equals` holds NaN unequal to itself, as IEEE does)."""
    if a.schema != b.schema or a.num_rows != b.num_rows:
        return False
    for x, y in zip(a.columns, b.columns):
        if pa.types.is_floating(x.type):
            if not np.array_equal(
                x.to_numpy(zero_copy_only=False), y.to_numpy(zero_copy_only=False), equal_nan=True
            ):
                return False
        elif x.to_pylist() != y.to_pylist():
            return False
    return True
