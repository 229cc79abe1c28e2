import jax.numpy as jnp
import jax.random as jr
from jaxtyping import ArrayLike

from .._checks import check_all_positive, check_finite, check_int, check_key
from .._custom_types import PRNGKey
from ._dataset import Dataset


def _float_dtype(dtype):
    dtype = jnp.result_type(float) if dtype is None else jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"`dtype` must be a floating dtype, got {dtype}.")
    return dtype


def _lengths(lengths: ArrayLike, n: int, dtype) -> jnp.ndarray:
    lengths = jnp.asarray(lengths, dtype)
    if lengths.shape not in ((), (n,)):
        raise ValueError(f"`lengths` must be a scalar or have shape ({n},), got {lengths.shape}.")
    lengths = jnp.broadcast_to(lengths, (n,))
    check_all_positive(lengths, "lengths")
    return lengths


def _check_sizes(n: int, d: int, *, orthogonal: bool = True) -> None:
    check_int(n, "n", minimum=1)
    check_int(d, "d", minimum=1)
    if orthogonal and n > d:
        raise ValueError(
            f"At most d mutually orthogonal directions exist: got `n` = {n} > `d` = {d}. "
            "Lower n or raise d."
        )


def _orthonormal_rows(key: PRNGKey | None, n: int, d: int, rotate: bool, dtype):
    if not rotate:
        return jnp.eye(n, d, dtype=dtype)
    if key is None:
        raise ValueError("`rotate=True` needs a PRNG `key` for the random rotation.")
    check_key(key)
    q, r = jnp.linalg.qr(jr.normal(key, (d, n), dtype))
    # Fix the signs so that the rotation is Haar-distributed.
    return (q * jnp.sign(jnp.diagonal(r))).T


def orthogonal(
    n: int,
    d: int,
    *,
    key: PRNGKey | None = None,
    lengths: ArrayLike = 1.0,
    rotate: bool = False,
    dtype=None,
) -> Dataset:
    r"""$n$ mutually orthogonal training points in $\mathbb{R}^d$ ([Z], Section 2;
    docs/models.md#closed-forms).

    $x_k = L_k q_k$ with orthonormal $q_k$: the first $n$ coordinate axes, or a
    Haar-random orthonormal set when `rotate=True`.

    **Arguments:**

    - `n`, `d`: number of points and dimension, $n \le d$.
    - `key`: PRNG key; only used (and then needed) when `rotate=True`.
    - `lengths`: $L_k > 0$, a scalar or shape `(n,)`. Default 1.
    - `rotate`: draw a random orientation instead of the coordinate axes.
    - `dtype`: floating dtype; defaults to JAX's default float.

    **Returns:** a [`jaxflow.data.Dataset`][] with `points` of shape `(n, d)`.

    **Raises:** `ValueError` if $n > d$ or a length is not positive.
    """
    _check_sizes(n, d)
    dtype = _float_dtype(dtype)
    directions = _orthonormal_rows(key, n, d, rotate, dtype)
    return Dataset(_lengths(lengths, n, dtype)[:, None] * directions)


def obtuse_simplex(
    n: int,
    d: int,
    *,
    key: PRNGKey | None = None,
    lengths: ArrayLike = 1.0,
    beta: float = 0.5,
    apex: ArrayLike | None = None,
    rotate: bool = False,
    dtype=None,
) -> Dataset:
    r"""An obtuse simplex $x_0, \dots, x_n$ in $\mathbb{R}^d$ ([Z], Section 2;
    docs/models.md#closed-forms).

    Edges leaving the apex are $e_k = L_k\, v_k / |v_k|$ with
    $v_k = q_k - (\beta / n) \sum_j q_j$ for orthonormal $q_k$, so that
    $e_i \cdot e_j \propto (\beta^2 - 2\beta)/n \le 0$ for $i \ne j$: right angles at
    $\beta = 0$, obtuse for $0 < \beta < 2$.

    **Arguments:**

    - `n`, `d`: number of edges and dimension, $n \le d$ (the simplex has $n + 1$ points).
    - `key`: PRNG key; only used (and then needed) when `rotate=True`.
    - `lengths`: edge lengths $L_k > 0$, scalar or shape `(n,)`.
    - `beta`: obtuseness in $[0, 2)$, away from 1 (where the edges sum to zero and the
      simplex is flat). Default 0.5.
    - `apex`: the point $x_0$, shape `(d,)`; default the origin.
    - `rotate`, `dtype`: as in [`jaxflow.data.orthogonal`][].

    **Returns:** a `Dataset` with `simplex=True` and `points` of shape `(n + 1, d)`,
    the apex first.
    """
    _check_sizes(n, d)
    if not 0.0 <= beta < 2.0:
        raise ValueError(f"`beta` must lie in [0, 2) for obtuse angles, got {beta}.")
    if abs(beta - 1.0) < 1e-3:
        # The Gram matrix of the edges has the eigenvalue (1 - beta)^2 / n along sum_j q_j.
        raise ValueError(
            f"`beta` = {beta} makes the edges (nearly) sum to zero: the simplex is flat. "
            "Pick beta away from 1."
        )
    dtype = _float_dtype(dtype)
    q = _orthonormal_rows(key, n, d, rotate, dtype)
    v = q - (beta / n) * jnp.sum(q, axis=0)
    edges = _lengths(lengths, n, dtype)[:, None] * v / jnp.linalg.norm(v, axis=1, keepdims=True)
    x0 = jnp.zeros(d, dtype) if apex is None else jnp.asarray(apex, dtype)
    if x0.shape != (d,):
        raise ValueError(f"`apex` must have shape ({d},), got {x0.shape}.")
    check_finite(x0, "apex")
    return Dataset(jnp.concatenate([x0[None], x0 + edges]), simplex=True)


def isotropic_gaussian(
    n: int, d: int, *, key: PRNGKey, mean: ArrayLike = 0.0, std: ArrayLike = 1.0, dtype=None
) -> Dataset:
    r"""$n$ i.i.d. draws from $\mathcal{N}(m \mathbf{1}, s^2 I_d)$ ([H];
    docs/models.md#linear-one-step-model).

    **Arguments:**

    - `n`, `d`: number of points and dimension.
    - `key`: PRNG key.
    - `mean`: $m$, a scalar or shape `(d,)`. Default 0.
    - `std`: $s > 0$. Default 1.
    - `dtype`: floating dtype; defaults to JAX's default float.
    """
    _check_sizes(n, d, orthogonal=False)
    check_key(key)
    check_all_positive(std, "std")
    check_finite(mean, "mean")
    dtype = _float_dtype(dtype)
    if jnp.shape(mean) not in ((), (d,)):
        raise ValueError(f"`mean` must be a scalar or have shape ({d},), got {jnp.shape(mean)}.")
    z = jr.normal(key, (n, d), dtype)
    return Dataset(jnp.asarray(mean, dtype) + jnp.asarray(std, dtype) * z)
