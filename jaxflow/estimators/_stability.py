import itertools
import math
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.lax as lax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from .._checks import (
    check_finite_scalar,
    check_int,
    check_key,
    check_optional_int,
    check_positive,
    check_positive_int,
)
from .._custom_types import Point, PRNGKey, Sigma
from .._numerics import inf_norm
from ..data import Dataset
from ..flows import block_size, blockwise, map_chunks
from ._hyperbox import as_training_set
from ._intervals import wilson_interval


# Above this many k-subsets, `max_subsets` draws by rejection instead of listing them all.
_ENUMERATE_LIMIT = 2**21


class StabilityResult(eqx.Module):
    """The virtual-point stability test of [`jaxflow.estimators.virtual_point_stability`][],
    per subset size. Every array of shape `(sizes,)` follows the order of `sizes`.

    **Fields:**

    - `sizes`: the subset sizes $k$ tested.
    - `num_subsets`: the number of $k$-subset sums started from, $\\binom{m}{k}$ unless
      `max_subsets` drew a sample, shape `(sizes,)`.
    - `num_stable`: how many of them stayed within `tol`, shape `(sizes,)`.
    - `fraction`: `num_stable / num_subsets`, shape `(sizes,)`.
    - `lower`, `upper`: the Wilson interval of `fraction`, shape `(sizes,)`.
    - `tol`: the $L^\\infty$ tolerance used, a scalar.
    - `subsets`: for each size, the subsets started from as rows of indices into
      `points`, shape `(num_subsets, k)`. For a simplex the indices are $\\ge 1$: the
      start is $x_0 + \\sum_{i \\in S} (x_i - x_0)$.
    - `drift`: for each size, the largest $L^\\infty$ distance from the start over the
      iterations, shape `(num_subsets,)` (NaN if the iteration left the finite numbers).
    - `confidence`: the intervals' confidence level.
    """

    sizes: tuple[int, ...] = eqx.field(static=True)
    num_subsets: Int[Array, " sizes"]
    num_stable: Int[Array, " sizes"]
    fraction: Float[Array, " sizes"]
    lower: Float[Array, " sizes"]
    upper: Float[Array, " sizes"]
    tol: Float[Array, ""]
    subsets: tuple[Int[Array, "_subsets _k"], ...]
    drift: tuple[Float[Array, " _subsets"], ...]
    confidence: float = eqx.field(static=True)

    @property
    def stable(self) -> tuple[Bool[Array, " _subsets"], ...]:
        """For each size, whether each start stayed within `tol`."""
        return tuple(drift <= self.tol for drift in self.drift)

    def rows(self) -> list[dict]:
        """One plain-Python row per size, for tables: `size`, `num_subsets`,
        `num_stable`, `fraction`, `lower`, `upper`, `confidence`."""
        columns = [np.asarray(x) for x in (self.num_subsets, self.num_stable, self.fraction)]
        lower, upper = np.asarray(self.lower), np.asarray(self.upper)
        return [
            {
                "size": k,
                "num_subsets": int(columns[0][i]),
                "num_stable": int(columns[1][i]),
                "fraction": float(columns[2][i]),
                "lower": float(lower[i]),
                "upper": float(upper[i]),
                "confidence": self.confidence,
            }
            for i, k in enumerate(self.sizes)
        ]


def _numpy_rng(key: PRNGKey) -> np.random.Generator:
    data = jr.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    return np.random.default_rng(np.asarray(data).astype(np.uint32).ravel())


def _k_subsets(m: int, k: int, max_subsets: int | None, key: PRNGKey | None) -> np.ndarray:
    """All `k`-subsets of `range(m)` in lexicographic order, or a uniform sample of
    `max_subsets` distinct ones (sorted), as an integer array of shape `(count, k)`."""
    total = math.comb(m, k)
    if max_subsets is None or total <= max_subsets:
        flat = itertools.chain.from_iterable(itertools.combinations(range(m), k))
        return np.fromiter(flat, dtype=np.int32, count=total * k).reshape(total, k)
    if key is None:
        raise ValueError(
            f"`max_subsets={max_subsets}` is below the {total} subsets of size {k}: pass a "
            "PRNG `key` to draw a uniform sample of them."
        )
    rng = _numpy_rng(jr.fold_in(key, k))
    if total <= _ENUMERATE_LIMIT:
        every = _k_subsets(m, k, None, None)
        return every[np.sort(rng.choice(total, size=max_subsets, replace=False))]
    # Too many to list: uniform k-subsets, each drawn uniformly and kept if new.
    drawn: set[tuple[int, ...]] = set()
    while len(drawn) < max_subsets:
        drawn.add(tuple(sorted(rng.choice(m, size=k, replace=False).tolist())))
    return np.array(sorted(drawn), dtype=np.int32).reshape(max_subsets, k)


@eqx.filter_jit
def _drift(
    denoiser: Callable[[Point, Sigma], Point],
    y0: Float[Array, "batch d"],
    sigma: Float[Array, ""],
    iterations: int,
) -> Float[Array, " batch"]:
    def one(start):
        def body(_, carry):
            y, drift = carry
            y = denoiser(y, sigma)
            # jnp.maximum propagates NaN, so a start that diverges is never stable.
            return y, jnp.maximum(drift, inf_norm(y - start))

        _, drift = lax.fori_loop(0, iterations, body, (start, jnp.zeros((), start.dtype)))
        return drift

    # Starts never interact: each device iterates whole blocks of its own rows, through
    # kernels of one block shape, so the drifts are bitwise the same for any chunking and
    # any device count.
    return blockwise(jax.vmap(one), y0, block_size())


def virtual_point_stability(
    denoiser: Callable[[Point, Sigma], Point],
    points: ArrayLike | Dataset,
    sigma: ArrayLike,
    *,
    sizes: Sequence[int] = (2, 3, 4),
    iterations: int = 100,
    tol: ArrayLike | None = None,
    simplex: bool = False,
    max_subsets: int | None = None,
    key: PRNGKey | None = None,
    chunk_size: int | None = None,
    confidence: float = 0.95,
) -> StabilityResult:
    r"""The virtual-point stability test of [Z] ([Z], Section 6;
    docs/models.md#virtual-point-stability): are the sums of training points fixed points of the
    denoiser?

    For each subset $S$ of $k$ edges, start the fixed-point iteration

    $$y^{(0)} = a + \sum_{n \in S} e_n, \qquad y^{(t+1)} = D(y^{(t)}; \sigma),
    \quad t = 0, \dots, T - 1,$$

    ($a = 0$, $e_n = x_n$ for orthogonal data: the subset sums of training points;
    $a = x_0$, $e_n = x_n - x_0$ for a simplex), and count the start stable if it stays
    within `tol` of where it started, $\max_{t \le T} |y^{(t)} - y^{(0)}|_\infty \le
    \mathrm{tol}$. The closed-form min-norm denoiser on orthogonal data makes every subset
    sum stable; [Z] reports that a trained network keeps nearly all pairs, most triples
    and a minority of quadruples.

    Subsets are listed on the host ($\binom{30}{4} = 27405$ starts is quick), so this
    function is called eagerly, not traced; all sizes run as one batch under one
    compilation, `vmap`ped over starts with a `lax.fori_loop` over iterations, the starts
    split across every device ([`jaxflow.flows.map_chunks`][]) in blocks of
    [`jaxflow.flows.block_size`][] rows. A new `sigma` or `tol` does not recompile.

    **Main arguments:**

    - `denoiser`: any callable `(y, sigma) -> x_hat` on one point of shape `(d,)`.
    - `points`: the training set, shape `(n, d)`, or a [`jaxflow.data.Dataset`][].
    - `sigma`: the noise level passed to the denoiser, a scalar (ignored by a
      [`jaxflow.denoisers.ShallowReLU`][], which serves one noise level).

    **Other arguments:**

    - `sizes`: the subset sizes $k$, each in $[0, m]$. Default `(2, 3, 4)`: pairs,
      triples, quadruples.
    - `iterations`: $T$, a positive integer. Default 100.
    - `tol`: the $L^\infty$ tolerance, positive. Default $0.2 \min_n |e_n|$.
    - `simplex`: whether `points[0]` is the apex of an obtuse simplex. Default `False`.
    - `max_subsets`: if a size has more subsets than this, start from a uniform random
      sample of `max_subsets` distinct ones instead (needs `key`). Default: all.
    - `key`: PRNG key for that sample.
    - `chunk_size`: iterate at most this many starts at once (memory for wide trained
      networks), rounded up to a multiple of the block size times the device count; the
      result does not depend on it, bitwise. Default: one batch.
    - `confidence`: the Wilson intervals' confidence level. Default 0.95.

    **Returns:** a [`jaxflow.estimators.StabilityResult`][] with, per size, the number of
    subsets, the number stable, the fraction and its Wilson interval, and every start's
    drift.

    **Raises:** `ValueError` for a bad shape, size, `iterations`, `tol`, or a
    `max_subsets` without `key`.
    """
    points, simplex = as_training_set(points, simplex)
    dtype = points.dtype
    # Starts, counts and fractions are host-side bookkeeping, done in NumPy; only the
    # iteration itself runs under jit.
    host = np.asarray(points, np.float64)
    apex, edges = (host[0], host[1:] - host[0]) if simplex else (np.zeros(host.shape[1]), host)
    m = edges.shape[0]
    if isinstance(sizes, (int, np.integer)):
        raise TypeError(f"`sizes` must be a sequence of ints, got {sizes!r}; e.g. sizes=(2,).")
    sizes = tuple(check_int(k, "sizes", minimum=0) for k in sizes)
    if not sizes or any(not 0 <= k <= m for k in sizes):
        raise ValueError(
            f"`sizes` must be non-empty, each in [0, {m}] (the number of edges); got {sizes}."
        )
    iterations = check_positive_int(iterations, "iterations")
    if max_subsets is not None:
        max_subsets = check_positive_int(max_subsets, "max_subsets")
    sigma = check_finite_scalar(sigma, "sigma", dtype)
    tol = check_positive(tol, "tol")
    chunk_size = check_optional_int(chunk_size, "chunk_size")
    if key is not None:
        check_key(key)
    tol = 0.2 * np.min(np.linalg.norm(edges, axis=1)) if tol is None else tol
    tol = np.asarray(tol, dtype)

    subsets = [_k_subsets(m, k, max_subsets, key) for k in sizes]
    starts = np.concatenate([apex + np.sum(edges[s], axis=1) for s in subsets])
    drift = map_chunks(
        lambda chunk: _drift(denoiser, chunk, sigma, int(iterations)),
        jnp.asarray(starts, dtype),
        chunk_size,
        block_size=block_size(),
    )
    drift = np.split(np.asarray(drift), np.cumsum([len(s) for s in subsets])[:-1])
    num_subsets = np.array([len(s) for s in subsets])
    num_stable = np.array([np.sum(x <= tol) for x in drift])
    lower, upper = wilson_interval(num_stable, num_subsets, confidence)
    offset = 1 if simplex else 0
    return StabilityResult(
        sizes=sizes,
        num_subsets=jnp.asarray(num_subsets),
        num_stable=jnp.asarray(num_stable),
        fraction=jnp.asarray(num_stable / num_subsets, dtype),
        lower=lower,
        upper=upper,
        tol=jnp.asarray(tol, dtype),
        subsets=tuple(jnp.asarray(s + offset) for s in subsets),
        drift=tuple(jnp.asarray(x) for x in drift),
        confidence=float(confidence),
    )
