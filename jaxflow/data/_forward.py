import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, ArrayLike, Bool, Float, Real

from .._custom_types import PRNGKey
from ._gaussian import Gaussian


def _check_points(x0, name: str = "x0") -> None:
    shape = getattr(x0, "shape", None)
    if shape is None or len(shape) != 2:
        raise ValueError(f"`{name}` must have shape (n, d), got shape {shape}.")
    if not jnp.issubdtype(x0.dtype, jnp.floating):
        raise TypeError(f"`{name}` must be floating point, got dtype {x0.dtype}.")


def _weights(mask, n: int, dtype) -> Float[Array, " n"]:
    """Row weights, 1 for the points in use and 0 for padding."""
    if mask is None:
        return jnp.ones(n, dtype)
    mask = jnp.asarray(mask)
    if mask.shape != (n,):
        raise ValueError(f"`mask` must have shape ({n},) to match `x0`, got {mask.shape}.")
    return mask.astype(dtype)


def masked_moments(
    x0: Float[Array, "n d"], mask=None
) -> tuple[Float[Array, " d"], Float[Array, " d"], Float[Array, "n d"]]:
    """The mean, the unbiased per-coordinate variance and the centred points (zero rows
    for padding) of the points that `mask` keeps."""
    w = _weights(mask, x0.shape[0], x0.dtype)
    count = jnp.sum(w)
    mean = (w @ x0) / count
    centred = (x0 - mean) * w[:, None]
    return mean, jnp.sum(centred**2, axis=0) / (count - 1), centred


def _check_draws(draws: int) -> None:
    if not isinstance(draws, int) or draws < 1:
        raise ValueError(f"`draws` must be a positive int, got {draws!r}.")


def ou_coefficients(
    T: Real[Array, ""], lam: Real[Array, ""]
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    r"""The signal and noise scales of [H]'s one-jump forward process (SCIENCE.md H1),

    $$a = e^{-T}, \qquad c^2 = \ell\,(1 - e^{-2T}), \qquad \ell = \lambda e^{-2T},$$

    so that $x_T = a x_0 + c z$. Returns $(a, c^2)$.
    """
    a = jnp.exp(-T)
    return a, lam * a**2 * -jnp.expm1(-2 * T)


@eqx.filter_jit
def forward_jump(
    key: PRNGKey,
    x0: Float[Array, "n d"],
    *,
    T: Real[ArrayLike, ""],
    lam: Real[ArrayLike, ""],
    draws: int = 1,
) -> Float[Array, "n draws d"]:
    r"""Noisy copies of the training points after [H]'s one-jump forward process
    (SCIENCE.md H1), an Ornstein-Uhlenbeck marginal:

    $$x_T = e^{-T} x_0 + \sqrt{\ell\,(1 - e^{-2T})}\; z, \qquad \ell = \lambda e^{-2T},
    \qquad z \sim \mathcal{N}(0, I_d).$$

    **Arguments:**

    - `key`: PRNG key.
    - `x0`: the clean training points, shape `(n, d)`.
    - `T`: the diffusion time $T > 0$ (a JAX scalar, so a sweep does not recompile).
      [H]'s default is 2.
    - `lam`: $\lambda > 0$, the noise scale; [H]'s default is 1.
    - `draws`: the number $k$ of independent noise draws per point. Default 1, as in [H].

    **Returns:** $x_T$, shape `(n, draws, d)`; row `i` holds the copies of `x0[i]`.

    **Raises:** `ValueError`/`TypeError` for a malformed `x0` or `draws`; an
    `EquinoxRuntimeError` unless $T > 0$ and $\lambda > 0$.
    """
    _check_points(x0)
    _check_draws(draws)
    T = jnp.asarray(T, x0.dtype)
    lam = jnp.asarray(lam, x0.dtype)
    T = eqx.error_if(T, (T <= 0) | (lam <= 0), "forward_jump needs T > 0 and lam > 0.")
    a, c2 = ou_coefficients(T, lam)
    z = jr.normal(key, (x0.shape[0], draws, x0.shape[1]), x0.dtype)
    return a * x0[:, None, :] + jnp.sqrt(c2) * z


@eqx.filter_jit
def forward_ve(
    key: PRNGKey,
    x0: Float[Array, "n d"],
    sigmas: Real[Array, " levels"],
    *,
    draws: int = 1,
) -> Float[Array, "levels n draws d"]:
    r"""Noisy copies of the training points at several levels of the variance-exploding
    (EDM) forward process, $x_\sigma = x_0 + \sigma z$ (SCIENCE.md Z4, H4).

    Every level gets its own independent draws $z$: one training set of noisy copies
    per noise level, as when one denoiser is trained per level.

    **Arguments:**

    - `key`: PRNG key.
    - `x0`: the clean training points, shape `(n, d)`.
    - `sigmas`: the noise levels, shape `(levels,)`, each $> 0$.
    - `draws`: the number $k$ of noise draws per point and level. Default 1.

    **Returns:** $x_\sigma$, shape `(levels, n, draws, d)`.
    """
    _check_points(x0)
    _check_draws(draws)
    sigmas = jnp.asarray(sigmas, x0.dtype)
    if sigmas.ndim != 1:
        raise ValueError(f"`sigmas` must have shape (levels,), got {sigmas.shape}.")
    sigmas = eqx.error_if(sigmas, jnp.any(sigmas <= 0), "forward_ve needs every sigma > 0.")
    z = jr.normal(key, (sigmas.shape[0], x0.shape[0], draws, x0.shape[1]), x0.dtype)
    return x0[None, :, None, :] + sigmas[:, None, None, None] * z


@eqx.filter_jit
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
    [H]'s start $\mathcal{N}(e^{-T} \bar x_0, v_T I)$ (SCIENCE.md H1). With
    `matched=False` it is EDM's $\mathcal{N}(0, \sigma_{\max}^2 I)$, which ignores the data.

    **Arguments:**

    - `x0`: the clean training points, shape `(n, d)`, $n \ge 2$.
    - `sigma_max`: the flow's largest noise level.
    - `matched`: the moment-matched start (default) or EDM's centred one.
    - `mask`: optional booleans of shape `(n,)`; rows where it is `False` are ignored.

    **Returns:** a [`jaxflow.data.Gaussian`][].
    """
    _check_points(x0)
    n, d = x0.shape
    if n < 2:
        raise ValueError(f"`x0` needs at least 2 points for a variance, got n={n}.")
    sigma_max = jnp.asarray(sigma_max, x0.dtype)
    if matched:
        mean, var, _ = masked_moments(x0, mask)
        var = jnp.mean(var) + sigma_max**2
    else:
        mean = jnp.zeros(d, x0.dtype)
        var = sigma_max**2
    return Gaussian(mean, var * jnp.eye(d, dtype=x0.dtype))
