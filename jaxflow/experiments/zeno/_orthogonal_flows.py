"""What the score-flow and probability-flow presets on orthogonal data share: the data,
the closed-form denoiser and the Gaussian starts, declared once; the tally of one block of
starts (endpoint classes, vertex sizes, hyperbox-coordinate histograms); and the rows of
the table."""

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar, Literal, NamedTuple

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pyarrow as pa
from jaxtyping import Array, Float

from ...data import GaussianStarts, orthogonal
from ...denoisers import MinNormOrthogonal
from ...estimators import class_fractions, classify_endpoints, EndpointClass
from .._params import at_least, non_negative, param, positive, unit_open
from .._preset import AbstractPreset, Arrays, Footprint
from ._common import check_sigma, closed_form_alpha, float_dtype


# Hyperbox coordinates are histogrammed on this grid (values outside it are not counted).
COORDINATE_BINS = np.linspace(-0.5, 1.5, 201)

# The cell that makes the run's inputs (training points, PRNG key, start distribution),
# saved beside the table so that any start can be recomputed.
INPUTS = "inputs"


@dataclasses.dataclass(frozen=True)
class _AbstractOrthogonalFlow(AbstractPreset):
    r"""A flow of the closed-form minimum-norm denoiser $h^*_\rho$ ([Z], Section 4) on $N$
    orthogonal training points $x_n = L_n e_n$ in $\mathbb{R}^d$, from many Gaussian starts
    $y_0 \sim \mathcal{N}(c, s^2 I)$, run in blocks of `chunk_size` starts, with the class
    of every endpoint ([Z], Section 5) beside the class of its exact endpoint.

    *Choice* (the papers leave it open): $c = \sum_n x_n / 2$, the hyperbox centre
    (`start_centre=box-centre`: every coordinate at its ramp's unstable midpoint, so no
    vertex is favoured), or $c = 0$ (`origin`); $s$ = `start_scale`. Start $i$ is drawn
    from `fold_in(key(seed), i)` whatever the block size, so any start can be recomputed
    from `arrays.npz` (`key`, `start_centre`, `start_scale`).
    """

    # Only the table and the figures read these; the sample trajectories' cell is named
    # by their number.
    cell_independent: ClassVar[frozenset[str]] = frozenset(
        {"confidence", "trajectories", "projection"}
    )

    d: int = param(30, "dimension d of the space.", rule=at_least(2))
    n: int = param(
        30, "number N of orthogonal training points x_n = L_n e_n (2 <= N <= d).", rule=at_least(2)
    )
    lengths: tuple[float, ...] = param(
        (1.0,),
        "the lengths L_n = |x_n|: one value for every point, or N comma-separated values.",
        rule=positive,
    )
    alpha: float | None = param(
        None,
        "noise-ball radius rho = alpha * sigma of the closed form; none means sqrt(d).",
        rule=positive,
    )
    solver: Literal["euler", "heun", "tsit5"] = param("heun", "ODE solver.")
    num_starts: int = param(100_000, "number of random starts (independent flows).", rule=positive)
    start_centre: Literal["box-centre", "origin"] = param(
        "box-centre",
        "mean of the Gaussian starts: box-centre = sum_n x_n / 2 (every coordinate at its "
        "ramp's midpoint, no vertex favoured) or origin.",
    )
    start_scale: float = param(
        0.3, "standard deviation of the Gaussian starts, per coordinate.", rule=positive
    )
    tol: float | None = param(
        None,
        "L-infinity tolerance of the endpoint classes; none means 0.2 * min L_n.",
        rule=positive,
    )
    confidence: float = param(0.95, "confidence level of the Wilson intervals.", rule=unit_open)
    chunk_size: int = param(
        2**15,
        "starts per block (one cell): memory is bounded by the block, not by num_starts.",
        rule=positive,
    )
    trajectories: int = param(
        50, "number of sample trajectories saved and drawn (the first starts).", rule=non_negative
    )
    projection: tuple[int, ...] = param(
        (0, 1),
        "the two training directions (0-based) on which trajectories are drawn.",
        rule=non_negative,
        distinct=True,
    )
    dtype: Literal["float32", "float64"] = param("float64", "floating dtype of the computation.")


def check_orthogonal_flow(p: _AbstractOrthogonalFlow, sigma_name: str, sigmas: Sequence[float]):
    """The rules that tie the shared fields together, and the closed form's range for the
    noise levels `sigmas` (the parameter `sigma_name`)."""
    if p.n > p.d:
        raise ValueError(f"n={p.n}, d={p.d}: need n <= d (n orthogonal points in d dimensions).")
    if len(p.lengths) not in (1, p.n):
        raise ValueError(f"lengths: give one value or n={p.n} values, got {len(p.lengths)}.")
    if p.trajectories > p.num_starts:
        raise ValueError(
            f"trajectories={p.trajectories}: at most num_starts={p.num_starts} (the first starts)."
        )
    if len(p.projection) != 2 or max(p.projection) >= p.n:
        raise ValueError(
            f"projection: name two training directions in [0, {p.n - 1}] (n={p.n}), "
            f"got {','.join(map(str, p.projection))}."
        )
    check_sigma(sigma_name, sigmas, p.d, all_lengths(p), p.alpha)


def all_lengths(p: _AbstractOrthogonalFlow) -> tuple[float, ...]:
    """$L_1, \\dots, L_N$."""
    return p.lengths * p.n if len(p.lengths) == 1 else p.lengths


def block_size(p: _AbstractOrthogonalFlow) -> int:
    """The number of starts in every block (the last is padded to it)."""
    return min(p.chunk_size, p.num_starts)


def firsts(p: _AbstractOrthogonalFlow) -> range:
    """The first start of each block."""
    return range(0, p.num_starts, block_size(p))


def orthogonal_footprint(p: _AbstractOrthogonalFlow, runs: int, saves: int) -> Footprint:
    """Memory and disk of `runs` flows over every start (one per noise level), each with
    `saves` saved states of the sample trajectories: the labels (int8 flow and exact, and
    their int32 copies when counted), one block's working arrays (the starts, the solver's
    stages, both endpoint sets and the classification's intermediates: a generous 32
    arrays of the block's shape) and the trajectories, kept in the pieces and again in
    `arrays.npz`."""
    itemsize = np.dtype(p.dtype).itemsize
    labels = 10.0 * p.num_starts * runs
    block = 32.0 * block_size(p) * p.d * itemsize
    paths = float(p.trajectories) * (saves + 2) * p.d * itemsize * runs
    histograms = 8.0 * (2 * len(COORDINATE_BINS) + p.n) * runs * len(firsts(p))
    return Footprint(
        memory=labels + block + 2 * paths + histograms + 2**26,
        disk=2 * (0.2 * labels + paths + histograms) + 2**24,
        set_by=("num_starts", "chunk_size", "d", "trajectories"),
    )


# --------------------------------------------------------------------------------------
# The data, the starts and one block's tally.


class Setup(NamedTuple):
    points: Float[Array, "n d"]
    lengths: np.ndarray
    denoiser: MinNormOrthogonal
    key: Array
    starts: GaussianStarts
    tol: Float[Array, ""] | None


def setup(p: _AbstractOrthogonalFlow) -> Setup:
    """The training points, the closed-form denoiser, the starts and the tolerance."""
    dtype = float_dtype(p.dtype)
    lengths = p.lengths[0] if len(p.lengths) == 1 else jnp.asarray(p.lengths, dtype)
    points = orthogonal(p.n, p.d, lengths=lengths, dtype=dtype).points
    denoiser = MinNormOrthogonal(points, alpha=p.alpha)
    key = jr.key(p.seed)
    # The hyperbox centre sum_n x_n / 2 puts every coordinate of a start near a ramp's
    # unstable midpoint, so that no vertex is favoured; the origin is the usual noise mean.
    centre = (
        0.5 * jnp.sum(points, axis=0) if p.start_centre == "box-centre" else jnp.zeros(p.d, dtype)
    )
    starts = GaussianStarts(centre, p.start_scale, num_starts=p.num_starts, key=key)
    tol = None if p.tol is None else jnp.asarray(p.tol, dtype)
    return Setup(points, np.linalg.norm(np.asarray(points), axis=1), denoiser, key, starts, tol)


def inputs(s: Setup) -> Arrays:
    """What recomputes any start and any endpoint: the training points, the PRNG key
    (`jax.random.key_data`) and the start distribution."""
    return {
        "points": np.asarray(s.points),
        "key": np.asarray(jr.key_data(s.key)),
        "start_centre": np.asarray(s.starts.centre),
        "start_scale": np.asarray(s.starts.scale),
    }


def block(starts: GaussianStarts, first: int, size: int) -> tuple[Array, int]:
    """The block of `size` starts from `first` (the last one padded by repeating its final
    start, so that every block has one shape and the flow compiles once) and how many
    rows to keep."""
    index = np.minimum(np.arange(first, first + size), starts.num_starts - 1)
    return starts.rows(index), min(size, starts.num_starts - first)


def tally_block(
    solve: Callable[[Array], Array],
    exact: Callable[[Array], Array],
    s: Setup,
    first: int,
    size: int,
) -> Arrays:
    """One block of starts through the flow `solve` and its exact endpoints `exact`,
    kept only as per-start labels and histograms, so that memory is bounded by the block:

    - `labels`, `exact_labels`: the class of each flow and exact endpoint, int8;
    - `max_error`: the largest $L^\\infty$ distance between a flow and its exact endpoint;
    - `vertex_sizes`: counts of $|S|$ for the endpoints within `tol` of a vertex
      $\\sum_{n \\in S} x_n$, shape `(N + 1,)`;
    - `coordinates`, `start_coordinates`: counts of the endpoints' and the starts'
      hyperbox coordinates $u_n \\cdot y / L_n$ on `COORDINATE_BINS`.
    """
    points, lengths = s.points, s.lengths
    units = np.asarray(points) / lengths[:, None]

    def histogram(y):
        alpha = (y @ units.T / lengths).ravel()
        return np.histogram(alpha, COORDINATE_BINS)[0]  # values outside the grid are left out

    y0, keep = block(s.starts, first, size)
    ys, ye = solve(y0), exact(y0)
    flow_classes = classify_endpoints(ys, points, s.tol)
    exact_classes = classify_endpoints(ye, points, s.tol)
    ys, ye, y0 = (np.asarray(a)[:keep] for a in (ys, ye, y0))
    label = np.asarray(flow_classes.label)[:keep].astype(np.int8)
    at_vertex = label <= EndpointClass.ORIGIN  # TRAINING, VIRTUAL or ORIGIN
    size_of = np.asarray(flow_classes.vertex)[:keep].sum(axis=1)
    return {
        "labels": label,
        "exact_labels": np.asarray(exact_classes.label)[:keep].astype(np.int8),
        "max_error": np.asarray(np.max(np.abs(ys - ye))),
        "vertex_sizes": np.bincount(size_of[at_vertex], minlength=points.shape[0] + 1),
        "coordinates": histogram(ys),
        "start_coordinates": histogram(y0),
    }


class Tally(NamedTuple):
    labels: np.ndarray  # (num_starts,) int8, the class of each flow endpoint
    exact_labels: np.ndarray  # (num_starts,) int8, the class of each exact endpoint
    max_error: float  # max L-infinity distance between flow and exact endpoints
    vertex_sizes: np.ndarray  # (n + 1,) counts of |S| for endpoints within tol of a vertex
    coordinates: np.ndarray  # (bins,) counts of the endpoints' hyperbox coordinates
    start_coordinates: np.ndarray  # (bins,) counts of the starts' hyperbox coordinates


def combine(blocks: Sequence[Mapping[str, np.ndarray]]) -> Tally:
    """The tally of every start from the tallies of its blocks, in order."""
    return Tally(
        np.concatenate([b["labels"] for b in blocks]),
        np.concatenate([b["exact_labels"] for b in blocks]),
        float(max(b["max_error"] for b in blocks)),
        sum(b["vertex_sizes"] for b in blocks),
        sum(b["coordinates"] for b in blocks),
        sum(b["start_coordinates"] for b in blocks),
    )


# --------------------------------------------------------------------------------------
# The table.


def effective_tol(p: _AbstractOrthogonalFlow) -> float:
    """The classes' tolerance: `tol`, or $0.2 \\min_n L_n$ ([Z], Section 5)."""
    return 0.2 * min(p.lengths) if p.tol is None else p.tol


def config_columns(p: _AbstractOrthogonalFlow) -> dict:
    """The configuration every row carries (each preset adds its noise levels and steps)."""
    return {
        "d": p.d,
        "n": p.n,
        "alpha": closed_form_alpha(p.d, p.alpha),
        "tol": effective_tol(p),
        "start_centre": p.start_centre,
        "start_scale": p.start_scale,
        "solver": p.solver,
        "seed": p.seed,
    }


CONFIG_FIELDS = [
    pa.field("d", pa.int64()),
    pa.field("n", pa.int64()),
    pa.field("alpha", pa.float64()),
    pa.field("tol", pa.float64()),
    pa.field("start_centre", pa.string()),
    pa.field("start_scale", pa.float64()),
    pa.field("solver", pa.string()),
    pa.field("seed", pa.int64()),
]
CLASS_FIELDS = [
    pa.field("class", pa.string()),
    pa.field("count", pa.int64()),
    pa.field("total", pa.int64()),
    pa.field("fraction", pa.float64()),
    pa.field("lower", pa.float64()),
    pa.field("upper", pa.float64()),
    pa.field("confidence", pa.float64()),
    pa.field("exact_count", pa.int64()),
    pa.field("exact_fraction", pa.float64()),
    pa.field("agreement", pa.float64()),
    pa.field("max_error", pa.float64()),
]


# One compilation instead of one per eager operation.
_class_fractions = eqx.filter_jit(class_fractions)


def class_rows(confidence: float, config: dict, tally: Tally) -> list[dict]:
    """One row per endpoint class: the configuration, the count and fraction with its
    Wilson interval, the count and fraction among the exact endpoints, the fraction of
    starts whose flow and exact endpoints share a class (`agreement`) and the largest
    $L^\\infty$ distance between them (`max_error`)."""
    flow = _class_fractions(jnp.asarray(tally.labels, jnp.int32), confidence=confidence)
    exact = _class_fractions(jnp.asarray(tally.exact_labels, jnp.int32), confidence=confidence)
    agreement = float(np.mean(tally.labels == tally.exact_labels))
    rows = []
    for row, exact_row in zip(flow.rows(), exact.rows()):
        extra = {
            "exact_count": exact_row["count"],
            "exact_fraction": exact_row["fraction"],
            "agreement": agreement,
            "max_error": tally.max_error,
        }
        rows.append(config | row | extra)
    return rows
