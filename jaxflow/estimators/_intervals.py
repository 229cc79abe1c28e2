import equinox as eqx
import jax.numpy as jnp
import jax.scipy.special as jsp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from .._checks import check_unit_interval, is_concrete
from ._endpoints import Classification, EndpointClass, NUM_CLASSES


def _check_confidence(confidence: float) -> None:
    check_unit_interval(confidence, "confidence")


def wilson_interval(
    successes: ArrayLike,
    trials: ArrayLike,
    confidence: float = 0.95,
) -> tuple[Float[Array, "..."], Float[Array, "..."]]:
    r"""The Wilson score interval for a binomial proportion (Wilson 1927; Newcombe 1998,
    method 3).

    With $k$ successes in $n$ trials, $\hat p = k / n$ and $z = \Phi^{-1}((1 + c) / 2)$
    for confidence $c$,

    $$\frac{\hat p + \frac{z^2}{2n}}{1 + \frac{z^2}{n}} \pm \frac{z}{1 + \frac{z^2}{n}}
    \sqrt{\frac{\hat p (1 - \hat p)}{n} + \frac{z^2}{4n^2}}.$$

    Unlike the normal (Wald) interval it stays inside $[0, 1]$ and does not collapse to a
    point at $k = 0$ or $k = n$, where its lower (upper) end is exactly 0 (1). Used for
    endpoint-class fractions, stability fractions and probabilities such as
    $P(\Delta > 0)$.

    **Arguments:**

    - `successes`: $k$, integers, any shape.
    - `trials`: $n$, integers broadcastable against `successes`, $0 \le k \le n$.
    - `confidence`: $c \in (0, 1)$. Default 0.95.

    **Returns:** `(lower, upper)`, floating arrays of the broadcast shape. Where $n = 0$
    the interval is the uninformative $[0, 1]$.

    **Raises:** `ValueError` for a `confidence` outside $(0, 1)$; `TypeError` for
    non-integer counts; `ValueError` unless $0 \le k \le n$ (an `EquinoxRuntimeError`
    for traced counts).

    ```python
    import jax.numpy as jnp
    from jaxflow.estimators import wilson_interval

    lower, upper = wilson_interval(jnp.array([0, 3, 10]), 10)  # three intervals
    ```
    """
    _check_confidence(confidence)
    k, n = jnp.asarray(successes), jnp.asarray(trials)
    for name, x in (("successes", k), ("trials", n)):
        if not jnp.issubdtype(x.dtype, jnp.integer):
            raise TypeError(f"`{name}` must be integers (counts), got dtype {x.dtype}.")
    if is_concrete(k) and is_concrete(n):
        try:
            hk, hn = np.broadcast_arrays(np.asarray(k), np.asarray(n))
        except ValueError:
            raise ValueError(
                f"`successes` {k.shape} and `trials` {n.shape} must broadcast together."
            ) from None
        if np.any(hn < 0) or np.any(hk < 0) or np.any(hk > hn):
            raise ValueError(
                "`successes` must lie between 0 and `trials` (and `trials` >= 0), got "
                f"successes={hk.tolist()} and trials={hn.tolist()}."
            )
    dtype = jnp.result_type(float)
    return _wilson(k, n, jnp.asarray(confidence, dtype))


@eqx.filter_jit
def _wilson(
    k: Int[Array, "*#shape"], n: Int[Array, "*#shape"], confidence: Float[Array, ""]
) -> tuple[Float[Array, "..."], Float[Array, "..."]]:
    k, n = jnp.broadcast_arrays(k, n)
    k = eqx.error_if(k, (k < 0) | (k > n), "wilson_interval needs 0 <= successes <= trials.")
    k, n = k.astype(confidence.dtype), n.astype(confidence.dtype)
    z = jsp.ndtri(0.5 + 0.5 * confidence)
    empty = n == 0
    n_safe = jnp.where(empty, 1, n)
    p = k / n_safe
    denom = 1 + z**2 / n_safe
    centre = (p + z**2 / (2 * n_safe)) / denom
    half = z / denom * jnp.sqrt(p * (1 - p) / n_safe + z**2 / (4 * n_safe**2))
    # At k = 0 (k = n) the two terms cancel analytically; set the ends exactly rather than
    # leave a rounding error of either sign.
    lower = jnp.where(empty | (k == 0), 0.0, jnp.clip(centre - half, 0.0, 1.0))
    upper = jnp.where(empty | (k == n), 1.0, jnp.clip(centre + half, 0.0, 1.0))
    return lower, upper


class ClassFractions(eqx.Module):
    """The fraction of endpoints in each class, with Wilson confidence intervals, from
    [`jaxflow.estimators.class_fractions`][]. Every array is indexed by
    [`jaxflow.estimators.EndpointClass`][].

    **Fields:**

    - `counts`: endpoints per class, shape `(5,)`.
    - `total`: the number of endpoints.
    - `fraction`: `counts / total`, shape `(5,)` (NaN when `total` is 0).
    - `lower`, `upper`: the Wilson interval of each fraction, shape `(5,)`.
    - `confidence`: the interval's confidence level.
    """

    counts: Int[Array, " classes"]
    total: Int[Array, ""]
    fraction: Float[Array, " classes"]
    lower: Float[Array, " classes"]
    upper: Float[Array, " classes"]
    confidence: float = eqx.field(static=True)

    @property
    def memorization_rate(self) -> Float[Array, ""]:
        """The fraction of `TRAINING` endpoints."""
        return self.fraction[EndpointClass.TRAINING]

    def rows(self) -> list[dict]:
        """One plain-Python row per class, memorization first, for tables:
        `class`, `count`, `total`, `fraction`, `lower`, `upper`, `confidence`."""
        counts, fraction = np.asarray(self.counts), np.asarray(self.fraction)
        lower, upper = np.asarray(self.lower), np.asarray(self.upper)
        return [
            {
                "class": c.name.lower(),
                "count": int(counts[c]),
                "total": int(self.total),
                "fraction": float(fraction[c]),
                "lower": float(lower[c]),
                "upper": float(upper[c]),
                "confidence": self.confidence,
            }
            for c in EndpointClass
        ]


def class_fractions(
    classes: Classification | ArrayLike, *, confidence: float = 0.95
) -> ClassFractions:
    r"""Endpoint-class fractions with Wilson score intervals.

    Each fraction is a binomial proportion: the endpoints are independent flows from
    independent starts, so the number in class $c$ out of $n$ is binomial and
    [`jaxflow.estimators.wilson_interval`][] gives its interval.

    **Arguments:**

    - `classes`: a [`jaxflow.estimators.Classification`][], or its labels, integers in
      `EndpointClass` of shape `(batch,)`.
    - `confidence`: the intervals' confidence level. Default 0.95.

    **Returns:** a [`jaxflow.estimators.ClassFractions`][].
    """
    _check_confidence(confidence)
    if isinstance(classes, Classification):
        counts = classes.counts
    else:
        labels = jnp.asarray(classes)
        if labels.ndim != 1 or not jnp.issubdtype(labels.dtype, jnp.integer):
            raise ValueError(
                "`classes` must be a `Classification` or integer labels of shape (batch,), "
                f"got dtype {labels.dtype} and shape {labels.shape}."
            )
        if labels.shape[0] == 0:
            raise ValueError("`classes` is empty (batch = 0); pass at least one label.")
        if is_concrete(labels) and not np.all(
            (np.asarray(labels) >= 0) & (np.asarray(labels) < NUM_CLASSES)
        ):
            raise ValueError(
                f"`classes` must be values of `EndpointClass` (0 to {NUM_CLASSES - 1}), got "
                f"{np.unique(np.asarray(labels)).tolist()}."
            )
        counts = _label_counts(labels)
    counts, total, fraction, lower, upper = _fractions(
        counts, jnp.asarray(confidence, jnp.result_type(float))
    )
    return ClassFractions(
        counts=counts,
        total=total,
        fraction=fraction,
        lower=lower,
        upper=upper,
        confidence=float(confidence),
    )


@eqx.filter_jit
def _label_counts(labels: Int[Array, " batch"]) -> Int[Array, " classes"]:
    labels = eqx.error_if(
        labels,
        (labels < 0) | (labels >= NUM_CLASSES),
        "class_fractions: labels must be values of `EndpointClass`.",
    )
    return jnp.bincount(labels, length=NUM_CLASSES)


@eqx.filter_jit
def _fractions(counts: Int[Array, " classes"], confidence: Float[Array, ""]):
    total = jnp.sum(counts)
    lower, upper = _wilson(counts, total, confidence)
    return counts, total, counts / total, lower, upper
