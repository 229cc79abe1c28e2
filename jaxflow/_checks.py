"""The argument checks every stage makes, written once.

Each check names the argument it refuses, fits its message on one line and says what
to pass instead. Checks on shapes, dtypes, counts and Python options run on the host
when a function is called or traced. Checks on array values (a noise level, a
diffusion time, NaN or inf in the data) run on the host when the value is concrete, so
that a user sees one line before any work; when the value is traced (under `jit`,
`vmap` or `grad`) they go through `eqx.error_if` instead, which holds under `jit` and
reports the failing batch index under `vmap`. Always use the array such a check
returns. A stage's public function checks its arguments and then calls its jitted
core, so a check costs nothing on the hot path.
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
    """Refuse anything but a finite floating array of shape `(n, d)` with
    `n >= min_points` and `d >= 1`; return it as a JAX array. (Finiteness is checked on
    the host when `x` is concrete.)"""
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) != 2 or shape[1] == 0:
        raise ValueError(
            f"`{name}` must have shape (n, d), got shape {shape}; pass one point per row."
        )
    if shape[0] == 0:
        raise ValueError(f"`{name}` is empty (shape {tuple(shape)}); pass at least one point.")
    x = jnp.asarray(x)
    check_floating(x, name)
    if x.shape[0] < min_points:
        raise ValueError(
            f"`{name}` needs at least {min_points} points, got n={x.shape[0]}; add rows."
        )
    check_finite(x, name)
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


def mask_weights(
    mask: ArrayLike | None,
    n: int,
    dtype,
    *,
    min_rows: int = 1,
    name: str = "mask",
    rows_of: str = "x0",
) -> Array:
    """Row weights of a padded training set of `n` rows: 1 where `mask` keeps a row and 0
    for padding (all ones when `mask` is `None`). A concrete mask that keeps fewer than
    `min_rows` rows is refused. `name` and `rows_of` name the mask and the array whose
    rows it keeps in the messages."""
    if mask is None:
        return jnp.ones(n, dtype)
    mask = jnp.asarray(mask)
    if mask.shape != (n,):
        raise ValueError(
            f"`{name}` must have shape ({n},), one entry per row of `{rows_of}`, got {mask.shape}."
        )
    if mask.dtype != jnp.bool_:
        raise TypeError(f"`{name}` must be booleans (True keeps a row), got dtype {mask.dtype}.")
    if is_concrete(mask) and int(np.sum(np.asarray(mask))) < min_rows:
        raise ValueError(
            f"`{name}` keeps {int(np.sum(np.asarray(mask)))} rows of `{rows_of}`; it must keep "
            f"at least {min_rows}."
        )
    return mask.astype(dtype)


def check_positive_int(value, name: str) -> int:
    """Refuse anything but a positive integer (Python or NumPy; not a bool)."""
    return check_int(value, name, minimum=1)


def check_int(value, name: str, *, minimum: int = 0) -> int:
    """Refuse anything but an integer `>= minimum` (Python or NumPy; not a bool, and not
    a float such as `8.5` or `8.0`: a count is never truncated)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"`{name}` must be an int, got {value!r}; pass a whole number.")
    if value < minimum:
        need = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"`{name}` must be {need}, got {value!r}.")
    return int(value)


def check_optional_int(value, name: str, *, minimum: int = 1) -> int | None:
    """`None` stays `None`; anything else as in `check_int`."""
    return None if value is None else check_int(value, name, minimum=minimum)


@jax.jit
def _all_finite(x: Array) -> Array:
    return jnp.all(jnp.isfinite(x))


def _first_nonfinite(x) -> str:
    host = np.asarray(x)
    if host.ndim == 0:
        return f"it is {host}"
    index = tuple(int(i) for i in np.argwhere(~np.isfinite(host))[0])
    where = index[0] if len(index) == 1 else index
    return f"entry {where} is {host[index]}"


def check_finite(x, name: str) -> None:
    """Refuse, on the host, a concrete floating value with a NaN or inf entry, naming the
    first one. Traced values pass (a trace cannot be read); integer arrays are finite.

    One reduction on the array's device for a JAX array: nothing is copied to the host
    unless the check fails."""
    if x is None or not is_concrete(x):
        return
    if isinstance(x, jax.Array):
        if not jnp.issubdtype(x.dtype, jnp.inexact) or x.size == 0:
            return
        try:
            finite = bool(_all_finite(x))
        except jax.errors.ConcretizationTypeError:
            # A constant inside another function's trace: read it on the host.
            finite = bool(np.all(np.isfinite(np.asarray(x))))
    else:
        host = np.asarray(x)
        if not np.issubdtype(host.dtype, np.inexact):
            return
        finite = bool(np.all(np.isfinite(host)))
    if not finite:
        raise ValueError(
            f"`{name}` must be finite, but {_first_nonfinite(x)}; NaN or inf in `{name}` "
            "would only come back as NaN."
        )


def check_key(key, name: str = "key") -> None:
    """Refuse anything but a PRNG key: a typed key from `jax.random.key` or a raw
    `uint32` key of shape `(2,)` from `jax.random.PRNGKey`."""
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        if getattr(key, "ndim", 0) == 0:
            return
        raise ValueError(
            f"`{name}` must be one PRNG key, got a batch of shape {key.shape}; pass one key."
        )
    if dtype is not None and dtype == jnp.uint32 and getattr(key, "shape", None) == (2,):
        return
    what = f"{type(key).__name__} {key!r}" if dtype is None else f"dtype {dtype}"
    raise TypeError(f"`{name}` must be a PRNG key such as `jax.random.key(0)`, got {what}.")


def check_same_dtype(a, a_name: str, b, b_name: str) -> None:
    """Refuse two arrays of different dtypes: jaxflow computes in the dtype of its inputs
    and never promotes one silently."""
    if a.dtype != b.dtype:
        raise TypeError(
            f"`{a_name}` ({a.dtype}) and `{b_name}` ({b.dtype}) must have the same dtype; "
            f"cast one, e.g. `{b_name}.astype({a_name}.dtype)`."
        )


def check_scalar(value: ArrayLike, name: str, dtype=None) -> Array:
    """Refuse an array with any axes; return a scalar JAX array of `dtype`."""
    value = jnp.asarray(value, dtype)
    if value.ndim:
        raise ValueError(f"`{name}` must be a scalar, got shape {value.shape}; pass one value.")
    return value


def _positive_finite(value) -> bool:
    host = np.asarray(value)
    return bool(np.all(np.isfinite(host)) and np.all(host > 0))


def check_positive(value: ArrayLike | None, name: str) -> Array | None:
    """`None` stays `None`. A non-scalar is refused; so is a concrete value that is not
    positive and finite (a traced one is the caller's to check with `eqx.error_if`)."""
    if value is None:
        return None
    value = check_scalar(value, name)
    check_all_positive(value, name)
    return value


def check_all_positive(value: ArrayLike, name: str) -> None:
    """Refuse, on the host, a concrete value with an entry that is not positive and finite."""
    if is_concrete(value) and not _positive_finite(value):
        raise ValueError(f"`{name}` must be positive and finite, got {np.asarray(value)}.")


def check_tolerance(value: float | None, name: str = "rtol") -> float | None:
    """`None` stays `None`; else a Python number that is finite and not negative."""
    if value is None or not is_concrete(value):
        return value
    if isinstance(value, bool) or np.ndim(value) != 0 or not np.isreal(value):
        raise TypeError(f"`{name}` must be a number, got {value!r}.")
    if not (np.isfinite(float(value)) and float(value) >= 0):
        raise ValueError(f"`{name}` must be finite and >= 0, got {value!r}.")
    return value


def check_gram_dtype(value, name: str = "gram_dtype"):
    """`None` stays `None`; else a floating dtype."""
    if value is None:
        return None
    try:
        dtype = jnp.dtype(value)
    except TypeError:
        raise TypeError(f"`{name}` must be a floating dtype or None, got {value!r}.") from None
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"`{name}` must be a floating dtype or None, got {dtype}.")
    return value


def check_finite_scalar(value: ArrayLike, name: str, dtype=None) -> Array:
    """A scalar of `dtype`, refused on the host when concrete and not finite."""
    value = check_scalar(value, name, dtype)
    check_finite(value, name)
    return value


def check_unit_interval(value: float, name: str) -> None:
    """Refuse a concrete value outside the open interval $(0, 1)$ (a level, a confidence)."""
    if not is_concrete(value):
        return
    try:
        inside = 0.0 < float(value) < 1.0
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a number between 0 and 1, got {value!r}.") from None
    if not inside:
        raise ValueError(f"`{name}` must lie strictly between 0 and 1, got {value}.")


def check_choice(value, choices: Sequence, name: str):
    """Refuse a value that is not one of `choices`."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {', '.join(map(repr, choices))}, got {value!r}.")
    return value


def positive_scalars(dtype, who: str, **values: ArrayLike) -> tuple[Array, ...]:
    """The named values as scalars of `dtype`, each positive and finite:
    `positive_scalars(dtype, "forward_jump", T=T, lam=lam)`. A concrete value is checked
    on the host (a one-line `ValueError`); a traced one at run time, under `jit` too."""
    arrays = [check_scalar(v, name, dtype) for name, v in values.items()]
    for name, a in zip(values, arrays):
        check_all_positive(a, name)
    if all(is_concrete(a) for a in arrays):
        return tuple(arrays)
    bad = jnp.zeros((), bool)
    for a in arrays:
        bad = bad | ~((a > 0) & jnp.isfinite(a))
    names = [f"{name} > 0" for name in values]
    need = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    arrays[0] = eqx.error_if(arrays[0], bad, f"{who} needs finite {need}; pass positive values.")
    return tuple(arrays)


def check_levels(sigmas: ArrayLike, dtype, name: str = "sigmas") -> Array:
    """Noise levels: shape `(levels,)` with at least one level, each positive and finite
    (on the host when concrete, else at run time)."""
    sigmas = jnp.asarray(sigmas, dtype)
    if sigmas.ndim != 1 or sigmas.shape[0] == 0:
        raise ValueError(f"`{name}` must have shape (levels,), levels >= 1, got {sigmas.shape}.")
    if is_concrete(sigmas):
        check_all_positive(sigmas, name)
        return sigmas
    return eqx.error_if(
        sigmas,
        jnp.any(~((sigmas > 0) & jnp.isfinite(sigmas))),
        f"the noise levels `{name}` must be positive and finite; drop sigma <= 0.",
    )


def check_gaussian(g, name: str) -> None:
    """Refuse anything but a `jaxflow.data.Gaussian` (by its fields: `_checks` sits below
    the stages), and a concrete one with a non-finite mean or covariance (a Gaussian
    rebuilt by `jax.tree.map` skips its own `__check_init__`)."""
    mean, cov = getattr(g, "mean", None), getattr(g, "cov", None)
    if type(g).__name__ != "Gaussian" or mean is None or cov is None:
        raise TypeError(f"`{name}` must be a `jaxflow.data.Gaussian`, got {type(g).__name__}.")
    check_finite(mean, f"{name}.mean")
    check_finite(cov, f"{name}.cov")


def check_ordered_within(values: ArrayLike | None, start, end, name: str, *, interval: str) -> None:
    """Refuse, on the host, concrete save points that are not 1-D, finite, strictly
    monotone from `start` towards `end`, and inside the closed interval between them."""
    if values is None:
        return
    v = jnp.asarray(values)
    if v.ndim != 1:
        raise ValueError(f"`{name}` must have shape (save,), got {v.shape}.")
    if not all(is_concrete(x) for x in (v, start, end)):
        return
    check_finite(v, name)
    h, a, b = np.asarray(v), float(np.asarray(start)), float(np.asarray(end))
    if np.any(np.diff(h) * np.sign(b - a) <= 0):
        raise ValueError(f"`{name}` must run strictly from {interval}, got {h}.")
    if h.size and (h.max() > max(a, b) or h.min() < min(a, b)):
        raise ValueError(f"`{name}` must lie inside the interval from {interval}, got {h}.")


def _struct_of(x, dtype):
    return jax.ShapeDtypeStruct(x, dtype)


def check_denoiser(denoiser, d: int, dtype, *, y_name: str = "y0") -> None:
    """Refuse, at trace time, a denoiser that does not map one point of `y_name`, shape
    `(d,)` and `dtype`, to one point of the same shape and dtype: a module holding arrays
    of another dtype, a module or function of another dimension, or one that returns
    another shape. One abstract evaluation, no computation."""
    if not callable(denoiser):
        raise TypeError(
            f"`denoiser` must be callable as denoiser(y, sigma), got {type(denoiser).__name__}."
        )
    for leaf in jax.tree.leaves(eqx.filter(denoiser, eqx.is_inexact_array)):
        if leaf.dtype != dtype:
            raise TypeError(
                f"`denoiser` holds {leaf.dtype} arrays but `{y_name}` is {dtype}; cast one "
                "to the other's dtype (jaxflow computes in the dtype of its inputs)."
            )
    y, sigma = _struct_of((d,), dtype), _struct_of((), dtype)
    try:
        out = eqx.filter_eval_shape(_apply_denoiser, denoiser, y, sigma)
    except (TypeError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"`denoiser` fails on one point of `{y_name}` (shape ({d},), {dtype}): {first}"
        ) from None
    shape, out_dtype = getattr(out, "shape", None), getattr(out, "dtype", None)
    if shape != (d,):
        raise ValueError(
            f"`denoiser` must return shape ({d},) for one point of `{y_name}`, got {shape}."
        )
    if out_dtype != dtype:
        raise TypeError(
            f"`denoiser` returns {out_dtype} for `{y_name}` of dtype {dtype}; cast one to "
            "the other's dtype."
        )


@eqx.filter_jit
def _apply_denoiser(denoiser, y, sigma):
    # Jitted so that the abstract evaluation of a denoiser structure already checked is
    # a lookup in the jit cache (a millisecond less on every flow call).
    return denoiser(y, sigma)
