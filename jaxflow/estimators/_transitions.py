from collections.abc import Sequence
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from .._checks import check_choice, check_key, check_positive_int, check_unit_interval, is_concrete
from .._custom_types import PRNGKey
from ._intervals import wilson_interval


class TransitionProbability(eqx.Module):
    r"""$P(\Delta > 0)$ per cell with its Wilson interval, from
    [`jaxflow.estimators.transition_probability`][].

    **Fields** (each of the cells' shape, e.g. `(len(ns), len(conventions))` for a sweep):

    - `positives`: repetitions with $\Delta > 0$.
    - `trials`: repetitions.
    - `fraction`: `positives / trials`.
    - `lower`, `upper`: the Wilson interval.
    - `uncertain`: repetitions whose sign of $\Delta$ is not certain in the arithmetic used.
    - `confidence`: the intervals' confidence level.
    """

    positives: Int[Array, "*cells"]
    trials: Int[Array, "*cells"]
    fraction: Float[Array, "*cells"]
    lower: Float[Array, "*cells"]
    upper: Float[Array, "*cells"]
    uncertain: Int[Array, "*cells"]
    confidence: float = eqx.field(static=True)


def transition_probability(
    positive: Bool[ArrayLike, "repetitions ..."],
    *,
    certain: Bool[ArrayLike, "repetitions ..."] | None = None,
    confidence: float = 0.95,
) -> TransitionProbability:
    r"""$P(\Delta > 0)$ per cell with a Wilson interval, from the signs of $\Delta$ over
    independent repetitions: the count of positive $\Delta$ is binomial.

    **Arguments:**

    - `positive`: $\Delta > 0$ per repetition (leading axis) and cell, booleans.
    - `certain`: whether each sign is certain in the arithmetic that produced it (e.g.
      [`jaxflow.estimators.RelativeDistance`][]'s `certain`); default all certain.
    - `confidence`: the intervals' confidence level. Default 0.95.

    **Returns:** a [`jaxflow.estimators.TransitionProbability`][] over the cells.
    """
    positive = jnp.asarray(positive)
    if positive.dtype != jnp.bool_ or positive.ndim < 1:
        raise TypeError(
            f"`positive` must be booleans with a leading axis over repetitions, got dtype "
            f"{positive.dtype} and shape {positive.shape}."
        )
    if positive.shape[0] == 0:
        raise ValueError("`positive` has no repetitions (leading axis 0); pass at least one.")
    certain = jnp.ones_like(positive) if certain is None else jnp.asarray(certain)
    if certain.shape != positive.shape or certain.dtype != jnp.bool_:
        raise ValueError(
            f"`certain` must be booleans of the shape of `positive`, {positive.shape}, got "
            f"dtype {certain.dtype} and shape {certain.shape}."
        )
    positives = jnp.sum(positive, axis=0)
    trials = jnp.full_like(positives, positive.shape[0])
    lower, upper = wilson_interval(positives, trials, confidence)
    return TransitionProbability(
        positives=positives,
        trials=trials,
        fraction=positives / trials,
        lower=lower,
        upper=upper,
        uncertain=jnp.sum(~certain, axis=0),
        confidence=float(confidence),
    )


class TransitionPoint(eqx.Module):
    r"""The training-set size $n^*$ at which $P(\Delta > 0)$ crosses a level, with a
    bootstrap interval, from [`jaxflow.estimators.transition_point`][].

    **Fields:**

    - `n_star`: $n^*$, interpolated linearly in $\log n$ between the grid points that
      bracket the crossing; NaN when the estimated curve does not cross on the grid.
    - `lower`, `upper`: the percentile bootstrap interval of $n^*$ over resamples that
      cross (NaN if none does).
    - `crossing_fraction`: the fraction of bootstrap resamples that cross on the grid;
      well below 1 means the interval is conditional on a crossing and should be read
      with care.
    - `level`, `confidence`, `resamples`: as requested.
    """

    n_star: Float[Array, "*curves"]
    lower: Float[Array, "*curves"]
    upper: Float[Array, "*curves"]
    crossing_fraction: Float[Array, "*curves"]
    level: float = eqx.field(static=True)
    confidence: float = eqx.field(static=True)
    resamples: int = eqx.field(static=True)


def crossing(
    ns: Float[Array, " grid"], fraction: Float[Array, " grid"], level: float, which: str
) -> Float[Array, ""]:
    r"""Where a curve sampled at `ns` first (`which="first"`) or last (`"last"`) crosses
    `level` upwards, interpolated linearly in $\log n$; NaN without a crossing."""
    up = (fraction[:-1] < level) & (fraction[1:] >= level)
    index = jnp.arange(up.shape[0])
    pick = jnp.where(up, index, -1 if which == "last" else up.shape[0])
    g = jnp.max(pick) if which == "last" else jnp.min(pick)
    g_safe = jnp.clip(g, 0, up.shape[0] - 1)
    lo, hi = fraction[g_safe], fraction[g_safe + 1]
    t = (level - lo) / jnp.where(hi > lo, hi - lo, 1.0)
    log_n = jnp.log(ns[g_safe]) + t * (jnp.log(ns[g_safe + 1]) - jnp.log(ns[g_safe]))
    return jnp.where(jnp.any(up), jnp.exp(log_n), jnp.nan)


# The upward crossings a bootstrap estimates, both from the same resamples.
_CROSSINGS = ("first", "last")
# Resamples per vectorised batch of the bootstrap: its memory is a batch's resampled curves.
_BATCH = 256


@eqx.filter_jit
def _bootstrap(key, ns, positive, level, resamples, confidence):
    """`(n_star, lower, upper, crossing_fraction)` of each crossing of `_CROSSINGS`, keyed
    by it: one program for `which="first"` and `"last"`, each as if computed alone."""
    repetitions = positive.shape[0]
    values = positive.astype(ns.dtype)

    def crossings(fraction):
        return jnp.stack([crossing(ns, fraction, level, which) for which in _CROSSINGS])

    def one(k):
        index = jr.randint(k, (repetitions,), 0, repetitions)
        return crossings(jnp.mean(values[index], axis=0))

    # Whole batches only, the keys padded with copies of the last and the extra draws
    # dropped: a remainder would compile the body a second time.
    keys = jr.split(key, resamples)
    keys = keys[np.minimum(np.arange(-(-resamples // _BATCH) * _BATCH), resamples - 1)]
    draws = jax.lax.map(one, keys, batch_size=_BATCH)[:resamples]
    points = crossings(jnp.mean(values, axis=0))
    alpha = 0.5 * (1.0 - confidence)
    out = {}
    for i, which in enumerate(_CROSSINGS):
        lower, upper = jnp.nanquantile(draws[:, i], jnp.asarray([alpha, 1.0 - alpha], ns.dtype))
        crossed = jnp.mean((~jnp.isnan(draws[:, i])).astype(ns.dtype))
        out[which] = (points[i], lower, upper, crossed)
    return out


def transition_point(
    ns: Sequence[int] | ArrayLike,
    positive: ArrayLike,
    *,
    key: PRNGKey,
    level: float = 0.5,
    confidence: float = 0.95,
    resamples: int = 2000,
    which: Literal["first", "last"] = "last",
) -> TransitionPoint:
    r"""The transition $n^*$ where $P(\Delta > 0)$ crosses `level` ([H], Section 4;
    docs/models.md#relative-distance), with a percentile bootstrap interval.

    $P$ is estimated at each grid point as the fraction of positive repetitions, and
    $n^*$ is interpolated linearly in $\log n$ between the two grid points that bracket
    the upward crossing. `which="last"` (default) takes the last upward crossing, the
    size beyond which the model stays in the generalization regime on the grid;
    `"first"` the first one. $P$ need not be monotone: at $n = d$ the training set's
    kernel sum and the reference's decide $\Delta$, and $P$ can dip there.

    The bootstrap resamples repetitions with replacement, jointly over the grid (the
    cells of a repetition share its reference sample in
    [`jaxflow.studies.relative_distance_sweep`][], and a joint resample is valid
    whether or not the cells are independent), and recomputes $n^*$. For one `key`,
    `which="first"` and `"last"` read the same resamples, and one compiled program serves
    both.

    **Arguments:**

    - `ns`: the grid, increasing, shape `(grid,)`.
    - `positive`: $\Delta > 0$ per repetition and grid point, shape `(repetitions, grid)`.
    - `key`: PRNG key for the bootstrap.
    - `level`: the crossing level. Default 1/2.
    - `confidence`: the interval's level. Default 0.95.
    - `resamples`: bootstrap resamples. Default 2000.
    - `which`: `"last"` (default) or `"first"` upward crossing.

    **Returns:** a [`jaxflow.estimators.TransitionPoint`][].
    """
    dtype = jnp.result_type(float)
    check_key(key)
    if is_concrete(ns):
        host_ns = np.asarray(ns)
        if host_ns.ndim == 1 and not np.issubdtype(host_ns.dtype, np.integer):
            raise ValueError(f"`ns` must be integer sizes, got {host_ns.tolist()}.")
        if host_ns.ndim == 1 and (np.any(np.diff(host_ns) <= 0) or np.any(host_ns < 1)):
            raise ValueError(f"`ns` must be positive and increasing, got {host_ns.tolist()}.")
    ns = jnp.asarray(ns, dtype)
    positive = jnp.asarray(positive)
    if ns.ndim != 1 or ns.shape[0] < 2:
        raise ValueError(f"`ns` must be a grid of at least 2 sizes, got shape {ns.shape}.")
    if positive.ndim != 2 or positive.shape[1] != ns.shape[0]:
        raise ValueError(
            f"`positive` must have shape (repetitions, {ns.shape[0]}), got {positive.shape}."
        )
    if positive.dtype != jnp.bool_:
        raise TypeError(f"`positive` must be boolean, got dtype {positive.dtype}; pass Delta > 0.")
    if positive.shape[0] == 0:
        raise ValueError("`positive` has no repetitions (leading axis 0); pass at least one.")
    if not is_concrete(ns):
        ns = eqx.error_if(
            ns,
            jnp.any(jnp.diff(ns) <= 0) | jnp.any(ns <= 0),
            "`ns` must be positive and increasing.",
        )
    check_choice(which, ("first", "last"), "which")
    check_unit_interval(level, "level")
    check_unit_interval(confidence, "confidence")
    resamples = check_positive_int(resamples, "resamples")
    crossings = _bootstrap(key, ns, positive, level, resamples, confidence)
    point, lower, upper, fraction = crossings[which]
    return TransitionPoint(
        n_star=point,
        lower=lower,
        upper=upper,
        crossing_fraction=fraction,
        level=float(level),
        confidence=float(confidence),
        resamples=resamples,
    )
