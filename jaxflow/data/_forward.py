import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, ArrayLike, Bool, Float, Real

from .._checks import (
    check_key,
    check_levels,
    check_points,
    check_positive,
    check_positive_int,
    mask_weights,
    positive_scalars,
)
from .._custom_types import PRNGKey
from .._numerics import divide_by_scalar, weighted_mean
from ._gaussian import Gaussian


def masked_moments(
    x0: Float[Array, "n d"], mask=None
) -> tuple[Float[Array, " d"], Float[Array, " d"], Float[Array, "n d"]]:
    """The mean, the unbiased per-coordinate variance and the centred points of a
    training set.

    **Arguments:** `x0` of shape `(n, d)`; optional booleans `mask` of shape `(n,)`
    (rows where it is `False` are padding and ignored).

    **Returns:** `(mean, var, centred)`, shapes `(d,)`, `(d,)` and `(n, d)`; padding rows
    of `centred` are zero.
    """
    x0 = check_points(x0)
    w = mask_weights(mask, x0.shape[0], x0.dtype, min_rows=2)
    mean = weighted_mean(w, x0)
    centred = (x0 - mean) * w[:, None]
    # The sum of squares as a product with the weights, like the mean: as a column
    # reduction, XLA:CPU summed it in another order in a program split across devices.
    return mean, divide_by_scalar(w @ (centred * centred), jnp.sum(w) - 1), centred


def ou_coefficients(
    T: Real[Array, ""], lam: Real[Array, ""]
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    r"""The signal and noise scales of [H]'s one-jump forward process ([H];
    docs/models.md#linear-one-step-model),

    $$a = e^{-T}, \qquad c^2 = \ell\,(1 - e^{-2T}), \qquad \ell = \lambda e^{-2T},$$

    so that $x_T = a x_0 + c z$. Returns $(a, c^2)$.
    """
    a = jnp.exp(-T)
    return a, lam * a**2 * -jnp.expm1(-2 * T)


def forward_jump(
    x0: Float[Array, "n d"],
    *,
    key: PRNGKey,
    T: Real[ArrayLike, ""],
    lam: Real[ArrayLike, ""],
    draws: int = 1,
) -> Float[Array, "n draws d"]:
    r"""Noisy copies of the training points after [H]'s one-jump forward process
    ([H]; docs/models.md#linear-one-step-model), an Ornstein-Uhlenbeck marginal:

    $$x_T = e^{-T} x_0 + \sqrt{\ell\,(1 - e^{-2T})}\; z, \qquad \ell = \lambda e^{-2T},
    \qquad z \sim \mathcal{N}(0, I_d).$$

    **Arguments:**

    - `x0`: the clean training points, shape `(n, d)`.
    - `key`: PRNG key.
    - `T`: the diffusion time $T > 0$ (a JAX scalar, so a sweep does not recompile).
      [H]'s default is 2.
    - `lam`: $\lambda > 0$, the noise scale; [H]'s default is 1.
    - `draws`: the number $k$ of independent noise draws per point. Default 1, as in [H].

    **Returns:** $x_T$, shape `(n, draws, d)`; row `i` holds the copies of `x0[i]`.

    **Raises:** `ValueError`/`TypeError` for a malformed or non-finite `x0`, a `draws`
    that is not a positive int, a `key` that is not a PRNG key, or a concrete `T` or
    `lam` that is not positive and finite; an `EquinoxRuntimeError` for a traced one.
    """
    x0 = check_points(x0)
    check_key(key)
    draws = check_positive_int(draws, "draws")
    T, lam = positive_scalars(x0.dtype, "forward_jump", T=T, lam=lam)
    return _forward_jump(x0, key, T, lam, draws)


@eqx.filter_jit
def _forward_jump(x0, key, T, lam, draws: int):
    a, c2 = ou_coefficients(T, lam)
    z = jr.normal(key, (x0.shape[0], draws, x0.shape[1]), x0.dtype)
    return a * x0[:, None, :] + jnp.sqrt(c2) * z


def forward_ve(
    x0: Float[Array, "n d"],
    sigmas: Real[Array, " levels"],
    *,
    key: PRNGKey,
    draws: int = 1,
) -> Float[Array, "levels n draws d"]:
    r"""Noisy copies of the training points at several levels of the variance-exploding
    (EDM) forward process, $x_\sigma = x_0 + \sigma z$ ([Z], Section 4;
    docs/models.md#probability-flow, docs/models.md#diffusion-steps).

    Every level gets its own independent draws $z$: one training set of noisy copies
    per noise level, as when one denoiser is trained per level.

    **Arguments:**

    - `x0`: the clean training points, shape `(n, d)`.
    - `sigmas`: the noise levels, shape `(levels,)`, each $> 0$.
    - `key`: PRNG key.
    - `draws`: the number $k$ of noise draws per point and level. Default 1.

    **Returns:** $x_\sigma$, shape `(levels, n, draws, d)`.
    """
    x0 = check_points(x0)
    check_key(key)
    draws = check_positive_int(draws, "draws")
    sigmas = check_levels(sigmas, x0.dtype)
    return _forward_ve(x0, sigmas, key, draws)


@eqx.filter_jit
def _forward_ve(x0, sigmas, key, draws: int):
    z = jr.normal(key, (sigmas.shape[0], x0.shape[0], draws, x0.shape[1]), x0.dtype)
    return x0[None, :, None, :] + sigmas[:, None, None, None] * z


def ve_start(
    x0: Float[Array, "n d"],
    *,
    sigma_max: Real[ArrayLike, ""],
    matched: bool = True,
    mask: Bool[ArrayLike, " n"] | None = None,
) -> Gaussian:
    r"""The start distribution of a variance-exploding probability flow from a training
    set, a Gaussian.

    With `matched=True` (default) it is the isotropic Gaussian matched to the first two
    moments of the forward marginal at $\sigma_{\max}$,
    $\mathcal{N}(\bar x_0, (\bar v + \sigma_{\max}^2) I)$, where $\bar v$ is the mean of the
    unbiased per-coordinate variances of $x_0$: the variance-exploding counterpart of
    [H]'s start $\mathcal{N}(e^{-T} \bar x_0, v_T I)$ ([H];
    docs/models.md#linear-one-step-model). With `matched=False` it is EDM's $\mathcal{N}(0,
    \sigma_{\max}^2 I)$, which ignores the data.

    **Arguments:**

    - `x0`: the clean training points, shape `(n, d)`, $n \ge 2$.
    - `sigma_max`: the flow's largest noise level.
    - `matched`: the moment-matched start (default) or EDM's centred one.
    - `mask`: optional booleans of shape `(n,)`; rows where it is `False` are ignored.

    **Returns:** a [`jaxflow.data.Gaussian`][].
    """
    x0 = check_points(x0, min_points=2)
    sigma_max = check_positive(jnp.asarray(sigma_max, x0.dtype), "sigma_max")
    if not isinstance(matched, bool):
        raise TypeError(f"`matched` must be True or False, got {matched!r}.")
    if mask is not None:
        mask_weights(mask, x0.shape[0], x0.dtype, min_rows=2)
    return _ve_start(x0, sigma_max, matched, mask)


@eqx.filter_jit
def _ve_start(x0, sigma_max, matched: bool, mask) -> Gaussian:
    d = x0.shape[1]
    if matched:
        mean, var, _ = masked_moments(x0, mask)
        var = jnp.mean(var) + sigma_max**2
    else:
        mean = jnp.zeros(d, x0.dtype)
        var = sigma_max**2
    return Gaussian(mean, var * jnp.eye(d, dtype=x0.dtype))
