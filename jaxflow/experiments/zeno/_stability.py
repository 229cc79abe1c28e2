r"""What the virtual-point stability presets of [Z] (Section 6) share: the data and test
settings declared once, the test of one cell, the rows per subset size, and the exact
fixed-point condition of the closed-form minimum-norm denoiser.

The closed form ([Z], Section 2; `jaxflow.denoisers.MinNormOrthogonal` and
`MinNormObtuseSimplex`) is, with apex $a$ ($a = 0$ for orthogonal points), edges
$e_n = x_n - a$, $L_n = |e_n|$, $u_n = e_n / L_n$ and $\rho = \alpha\sigma$,

$$h^*_\rho(y) = a + \sum_n e_n\, \mathrm{clip}\!\left(\frac{u_n \cdot (y - a) - \rho}
{L_n - 2\rho}, 0, 1\right).$$

A subset sum $v = a + \sum_{m \in S} e_m$ is a fixed point exactly when every ramp is
flat at the right end: with $s_n = u_n \cdot (v - a) = \sum_{m \in S} u_n \cdot e_m$,
$s_n \ge L_n - \rho$ for $n \in S$ and $s_n \le \rho$ for $n \notin S$. So $v$ is fixed
from the noise level

$$\sigma^*(S) = \frac{1}{\alpha} \max\Bigl(0,\ \max_{n \in S} (L_n - s_n),\
\max_{n \notin S} s_n\Bigr)$$

on, up to the closed form's limit $\min_n L_n / (2\alpha)$. For orthogonal edges
$s_n \in \{0, L_n\}$ and $\sigma^*(S) = 0$: every vertex of the hyperbox is fixed. Obtuse
angles make $u_n \cdot e_m < 0$, so $L_n - s_n = -\sum_{m \in S \setminus n} u_n \cdot e_m$
grows with $|S|$; for equal lengths $L$ and edge cosines $c < 0$,
$\sigma^*_k = (k - 1) L |c| / \alpha$.
"""

import abc
import dataclasses
import math
from typing import ClassVar, Literal

import jax.random as jr
import numpy as np
import pyarrow as pa

from ...estimators import virtual_point_stability, wilson_interval
from .._params import at_least, non_negative, param, positive, unit_open
from .._preset import AbstractPreset, Arrays, Footprint
from ._common import check_sigma, closed_form_alpha


# Above this many k-subsets the estimator draws a sample by rejection instead of listing
# every subset (`jaxflow.estimators.virtual_point_stability`); the footprint follows it.
_ENUMERATE_LIMIT = 2**21


def fixed_fraction(edges: np.ndarray, subsets: np.ndarray, rho: float) -> float:
    """The fraction of the subset sums $a + \\sum_{m \\in S} e_m$ (rows of `subsets`,
    indices into `edges`) that are exact fixed points of the closed form at ramp margin
    $\\rho$: every $s_n \\ge L_n - \\rho$ for $n \\in S$ and $s_n \\le \\rho$ otherwise."""
    lengths = np.linalg.norm(edges, axis=1)
    projections = (edges @ edges.T) / lengths[:, None]  # [n, m] = u_n . e_m
    member = np.zeros((len(subsets), len(edges)), bool)
    np.put_along_axis(member, np.asarray(subsets), True, axis=1)
    s = member.astype(edges.dtype) @ projections.T  # u_n . (v - a) per subset
    fixed = np.where(member, s >= lengths - rho, s <= rho).all(axis=1)
    return float(np.mean(fixed))


def fixed_point_thresholds(edges: np.ndarray, subsets: np.ndarray, alpha: float) -> np.ndarray:
    """$\\sigma^*(S)$ for each row of `subsets`: the noise level from which the subset sum
    is a fixed point of the closed form (see the module's docstring), shape
    `(len(subsets),)`, in float64."""
    edges = np.asarray(edges, np.float64)
    lengths = np.linalg.norm(edges, axis=1)
    # The other edges' pull on each ramp, u_n . e_m for m != n: leaving out the own term
    # u_n . e_n = L_n makes the threshold exactly 0 where no other edge pulls (orthogonal
    # edges, single edges) instead of a round-off.
    cross = (edges @ edges.T) / lengths[:, None]
    np.fill_diagonal(cross, 0.0)
    member = np.zeros((len(subsets), len(edges)), bool)
    np.put_along_axis(member, np.asarray(subsets), True, axis=1)
    pull = member.astype(np.float64) @ cross.T
    # n in S needs L_n - s_n = -pull_n <= rho; n not in S needs s_n = pull_n <= rho.
    gap = np.where(member, -pull, pull)
    return np.maximum(np.max(gap, axis=1, initial=0.0), 0.0) / alpha


# The columns every stability table ends with, one row per subset size.
SIZE_FIELDS = [
    pa.field("size", pa.int64()),
    pa.field("num_subsets", pa.int64()),
    pa.field("num_stable", pa.int64()),
    pa.field("fraction", pa.float64()),
    pa.field("lower", pa.float64()),
    pa.field("upper", pa.float64()),
    pa.field("confidence", pa.float64()),
    pa.field("tol", pa.float64()),
    pa.field("fixed_fraction", pa.float64()),
    pa.field("threshold_min", pa.float64()),
    pa.field("threshold_max", pa.float64()),
    pa.field("median_drift", pa.float64()),
    pa.field("max_drift", pa.float64()),
]
SUMMARY_COLUMNS = (
    "size",
    "num_subsets",
    "num_stable",
    "fraction",
    "lower",
    "upper",
    "fixed_fraction",
    "median_drift",
)


@dataclasses.dataclass(frozen=True)
class _AbstractStability(AbstractPreset):
    r"""A virtual-point stability test ([Z], Section 6): the fixed-point iteration
    $y^{(t+1)} = D(y^{(t)}; \sigma)$, $t < T$, started at sums of $k$ edges, each start
    counted stable if $\max_{t \le T} |y^{(t)} - y^{(0)}|_\infty \le \mathrm{tol}$
    ([`jaxflow.estimators.virtual_point_stability`][]).

    A cell returns each start's largest drift, so the tolerance and the confidence level
    of the Wilson intervals only enter the table: changing them reuses the cells.
    """

    d: int = param(30, "dimension d of the space.", rule=at_least(1))
    n: int = param(
        30,
        "number N of edges: N orthogonal training points, or the edges x_n - x_0 of a "
        "simplex of N + 1 points (N <= d).",
        rule=at_least(1),
    )
    lengths: tuple[float, ...] = param(
        (1.0,),
        "the lengths L_n: one value for every edge, or n comma-separated values.",
        rule=positive,
    )
    alpha: float | None = param(
        None,
        "noise-ball radius rho = alpha * sigma of the closed form; none means sqrt(d).",
        rule=positive,
    )
    sizes: tuple[int, ...] = param(
        (2, 3, 4),
        "subset sizes k (at most n): every k-subset sum of edges is a start.",
        rule=non_negative,
        distinct=True,
    )
    iterations: int = param(
        100, "fixed-point iterations y <- D(y; sigma) from each start.", rule=at_least(1)
    )
    tol: float | None = param(
        None,
        "a start is stable if every iterate stays within this L-infinity distance; none "
        "means 0.2 * min L_n ([Z], Section 6).",
        rule=positive,
    )
    max_subsets: int | None = param(
        None,
        "start from a random sample of this many subsets per size (drawn with the seed); "
        "none means every subset (C(30, 4) = 27405 quadruples).",
        rule=at_least(1),
    )
    confidence: float = param(0.95, "confidence level of the Wilson intervals.", rule=unit_open)
    chunk_size: int = param(2**15, "starts iterated at once (memory).", rule=at_least(1))
    dtype: Literal["float32", "float64"] = param("float64", "floating dtype of the computation.")

    cell_independent: ClassVar[frozenset[str]] = frozenset({"confidence", "tol"})
    # The parameter whose values are the cells (named when a run would not fit).
    swept: ClassVar[str]

    @abc.abstractmethod
    def noise_levels(self) -> tuple[float, ...]:
        """The noise levels at which the closed form is evaluated (checked against its
        range)."""

    def check(self) -> None:
        if self.n > self.d:
            raise ValueError(f"n={self.n}, d={self.d}: need n <= d.")
        if len(self.lengths) not in (1, self.n):
            raise ValueError(
                f"lengths: give one value or n={self.n} values, got {len(self.lengths)}."
            )
        if max(self.sizes) > self.n:
            raise ValueError(f"sizes={max(self.sizes)}: a subset size must be at most n={self.n}.")
        check_sigma("sigma", self.noise_levels(), self.d, self.lengths, self.alpha)

    def quick(self):
        return dataclasses.replace(self, max_subsets=300)

    def footprint(self) -> Footprint:
        itemsize = 4 if self.dtype == "float32" else 8
        starts, stored, listed = 0, 0, 0
        for k in self.sizes:
            total = math.comb(self.n, k)
            count = total if self.max_subsets is None else min(total, self.max_subsets)
            starts += count
            stored += count * (4 * k + 8)  # int32 indices and a float64 drift per start
            # Every subset listed as int32 (built through int64), or a sample drawn as a
            # set of Python tuples (about 200 bytes each).
            every = count == total or total <= _ENUMERATE_LIMIT
            listed = max(listed, total * k * 12 if every else count * 200)
        # The training set and its Gram matrix, on the host and the device.
        data = 4 * (self.n + 1) * (self.d + self.n) * 8
        # The starts on the host (float64) and the device, and the iterates of one chunk.
        working = (
            starts * self.d * (8 + itemsize)
            + min(self.chunk_size, starts) * (self.d + self.n) * itemsize * 4
        )
        # Every cell's arrays, held until the table is written, and once more on disk.
        outputs = len(self.cells()) * stored
        return Footprint(
            memory=data + listed + working + 2 * outputs,
            disk=2 * outputs + data,
            set_by=("n", "d", "sizes", "max_subsets", "chunk_size", self.swept),
        )

    # ----------------------------------------------------------------------------------
    # Shared by the final presets.

    def closed_form_alpha(self) -> float:
        """The closed form's $\\alpha$: `alpha`, or $\\sqrt{d}$."""
        return closed_form_alpha(self.d, self.alpha)

    def edge_lengths(self, dtype):
        """`lengths` as the data constructors take them: a scalar or shape `(n,)`."""
        return self.lengths[0] if len(self.lengths) == 1 else np.asarray(self.lengths, dtype)

    def stability_arrays(self, denoiser, data, sigma) -> dict[str, np.ndarray]:
        """Run the test of one cell (JAX): every start's largest drift and subset, the
        default tolerance, the training set and the PRNG key."""
        key = jr.key(self.seed)
        result = virtual_point_stability(
            denoiser,
            data,
            sigma,
            sizes=self.sizes,
            iterations=self.iterations,
            max_subsets=self.max_subsets,
            key=key,
            chunk_size=self.chunk_size,
            confidence=self.confidence,
        )
        points = getattr(data, "points", data)
        arrays = {
            "points": np.asarray(points),
            "key": np.asarray(jr.key_data(key)),
            "default_tol": np.asarray(result.tol),
        }
        for k, subsets, drift in zip(result.sizes, result.subsets, result.drift):
            arrays[f"subsets_{k}"] = np.asarray(subsets)
            arrays[f"drift_{k}"] = np.asarray(drift)
        return arrays

    def size_rows(self, arrays: Arrays, edges: np.ndarray | None, rho: float | None) -> list[dict]:
        """One row per subset size from a cell's arrays (host-side): the counts under
        `tol`, the Wilson interval, the drift, and, when `edges` and the ramp margin
        `rho` of a closed form are given, its exact fixed-point fraction and thresholds.
        `edges` are indexed by the cell's subsets shifted to start at 0."""
        dtype = arrays["drift_" + str(self.sizes[0])].dtype
        # As the estimator compares: the drifts and the tolerance in the computation's dtype.
        tol = np.asarray(arrays["default_tol"] if self.tol is None else self.tol, dtype)
        drifts = [arrays[f"drift_{k}"] for k in self.sizes]
        num_subsets = np.array([len(x) for x in drifts])
        num_stable = np.array([np.sum(x <= tol) for x in drifts])
        lower, upper = (
            np.asarray(x) for x in wilson_interval(num_stable, num_subsets, self.confidence)
        )
        rows = []
        for i, (k, drift) in enumerate(zip(self.sizes, drifts)):
            exact = {"fixed_fraction": None, "threshold_min": None, "threshold_max": None}
            if edges is not None:
                subsets = arrays[f"subsets_{k}"] - (len(arrays["points"]) - len(edges))
                thresholds = fixed_point_thresholds(edges, subsets, self.closed_form_alpha())
                exact = {
                    "fixed_fraction": fixed_fraction(edges, subsets, rho),
                    "threshold_min": float(np.min(thresholds)),
                    "threshold_max": float(np.max(thresholds)),
                }
            rows.append(
                {
                    "size": k,
                    "num_subsets": int(num_subsets[i]),
                    "num_stable": int(num_stable[i]),
                    "fraction": float(np.asarray(num_stable[i] / num_subsets[i], dtype)),
                    "lower": float(lower[i]),
                    "upper": float(upper[i]),
                    "confidence": self.confidence,
                    "tol": float(tol),
                }
                | exact
                | {"median_drift": float(np.median(drift)), "max_drift": float(np.max(drift))}
            )
        return rows
