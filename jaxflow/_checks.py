"""The argument checks every stage makes, written once.

Each check names the argument it refuses, fits its message on one line and says what
to pass instead. Checks on shapes, dtypes and Python options run on the host when a
function is traced; checks on array values that may be traced (a noise level, a
diffusion time) go through `eqx.error_if`, so they hold under `jit` and report the
failing batch index under `vmap`. Always use the array such a check returns.
"""

import numbers
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike


def is_concrete(x) -> bool:
    """Whether `x` is a value rather than a tracer: a value check can run on the host."""
    return not isinstance(x, jax.core.Tracer)


def check_floating(x: Array, name: str) -> None:
    """Refuse a non-floating array with a `TypeError`."""
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"`{name}` must be floating point, got dtype {x.dtype}; cast it, e.g. "
            "`jnp.asarray(x, float)`."
        )


def check_points(x, name: str = "x0", *, min_points: int = 1) -> Array:
    """Refuse anything but a floating array of shape `(n, d)` with `n >= min_points` and
    `d >= 1`; return it as a JAX array."""
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) != 2 or 0 in shape:
        raise ValueError(
            f"`{name}` must have shape (n, d), got shape {shape}; pass one point per row."
        )
    x = jnp.asarray(x)
    check_floating(x, name)
    if x.shape[0] < min_points:
        raise ValueError(
            f"`{name}` needs at least {min_points} points, got n={x.shape[0]}; add rows."
        )
    return x


def check_points_like(y: ArrayLike, d: int, name: str, *, batch: bool) -> Array:
    """Refuse points that do not live in $\\mathbb{R}^d$: shape `(batch, d)` when `batch`,
    else `(..., d)`, floating."""
    y = jnp.asarray(y)
    if (batch and y.ndim != 2) or y.ndim < 1 or y.shape[-1] != d:
        want = "(batch, d)" if batch else "(..., d)"
        raise ValueError(
            f"`{name}` must have shape {want} with d = {d}, the dimension of `points`; "
            f"got shape {y.shape}."
        )
    check_floating(y, name)
    return y


def mask_weights(mask: ArrayLike | None, n: int, dtype) -> Array:
    """Row weights of a padded training set of `n` rows: 1 where `mask` keeps a row and 0
    for padding (all ones when `mask` is `None`)."""
    if mask is None:
        return jnp.ones(n, dtype)
    mask = jnp.asarray(mask)
    if mask.shape != (n,):
        raise ValueError(
            f"`mask` must have shape ({n},), one entry per row of `x0`, got {mask.shape}."
        )
    return mask.astype(dtype)


def check_positive_int(value, name: str) -> int:
    """Refuse anything but a positive integer (Python or NumPy; not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
    return int(value)


def check_scalar(value: ArrayLike, name: str, dtype=None) -> Array:
    """Refuse an array with any axes; return a scalar JAX array of `dtype`."""
    value = jnp.asarray(value, dtype)
    if value.ndim:
        raise ValueError(f"`{name}` must be a scalar, got shape {value.shape}; pass one value.")
    return value


def check_positive(value: ArrayLike | None, name: str) -> Array | None:
    """`None` stays `None`. A non-scalar is refused; so is a concrete value that is not
    positive (a traced one is the caller's to check with `eqx.error_if`)."""
    if value is None:
        return None
    value = check_scalar(value, name)
    if is_concrete(value) and not np.asarray(value) > 0:
        raise ValueError(f"`{name}` must be positive, got {np.asarray(value)}.")
    return value


def check_all_positive(value: ArrayLike, name: str) -> None:
    """Refuse, on the host, a concrete value with an entry that is not positive."""
    if is_concrete(value) and not np.all(np.asarray(value) > 0):
        raise ValueError(f"`{name}` must be positive, got {np.asarray(value)}.")


def check_unit_interval(value: float, name: str) -> None:
    """Refuse a concrete value outside the open interval $(0, 1)$ (a level, a confidence)."""
    if is_concrete(value) and not 0.0 < float(value) < 1.0:
        raise ValueError(f"`{name}` must lie strictly between 0 and 1, got {value}.")


def check_choice(value, choices: Sequence, name: str):
    """Refuse a value that is not one of `choices`."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {', '.join(map(repr, choices))}, got {value!r}.")
    return value


def positive_scalars(dtype, who: str, **values: ArrayLike) -> tuple[Array, ...]:
    """The named values as scalars of `dtype`, with a run-time error (under `jit` too)
    unless every one is positive: `positive_scalars(dtype, "forward_jump", T=T, lam=lam)`.
    """
    arrays = [check_scalar(v, name, dtype) for name, v in values.items()]
    bad = jnp.zeros((), bool)
    for a in arrays:
        bad = bad | ~(a > 0)
    names = [f"{name} > 0" for name in values]
    need = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    arrays[0] = eqx.error_if(arrays[0], bad, f"{who} needs {need}; pass positive values.")
    return tuple(arrays)


def check_levels(sigmas: ArrayLike, dtype, name: str = "sigmas") -> Array:
    """Noise levels: shape `(levels,)`, each $> 0$ (checked at run time)."""
    sigmas = jnp.asarray(sigmas, dtype)
    if sigmas.ndim != 1:
        raise ValueError(f"`{name}` must have shape (levels,), got {sigmas.shape}.")
    return eqx.error_if(
        sigmas, jnp.any(sigmas <= 0), f"the noise levels `{name}` must be > 0; drop sigma <= 0."
    )
