import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_gaussian, check_int, check_same_dtype
from ..data import Gaussian
from ..denoisers import AbstractAffineDenoiser
from ._heun import ExplicitHeun
from ._integrate import as_solver, SOLVERS
from ._probability import _check_levels
from ._schedules import AbstractSchedule, as_schedule, Geometric


# The fixed-grid methods whose steps are affine maps: diffrax's and the flows' own.
_EULER = (dfx.Euler, type(SOLVERS["euler"]))
_HEUN = (dfx.Heun, type(SOLVERS["heun"]))


def _field(denoiser: AbstractAffineDenoiser, sigma: Float[Array, ""]):
    # The EDM field (y - W y - b) / sigma = F y + g is affine in y.
    at = denoiser.at(sigma)
    eye = jnp.eye(at.bias.shape[-1], dtype=at.bias.dtype)
    return (eye - at.weight) / sigma, -at.bias / sigma


def _step_map(denoiser, s0, s1, heun: bool):
    """The affine map y -> A y + c of one Euler or Heun step from s0 to s1."""
    h = s1 - s0
    f0, g0 = _field(denoiser, s0)
    eye = jnp.eye(f0.shape[-1], dtype=f0.dtype)
    if not heun:
        return eye + h * f0, h * g0
    # Heun (explicit trapezoidal rule, diffrax.Heun): k1 = f(s0, y),
    # k2 = f(s1, y + h k1), y1 = y + h/2 (k1 + k2).
    f1, g1 = _field(denoiser, s1)
    pred, pred_c = eye + h * f0, h * g0
    return eye + 0.5 * h * (f0 + f1 @ pred), 0.5 * h * (g0 + f1 @ pred_c + g1)


def gaussian_probability_flow(
    denoiser: AbstractAffineDenoiser,
    start: Gaussian,
    *,
    sigma_max: Float[ArrayLike, ""],
    sigma_min: Float[ArrayLike, ""],
    steps: int = 64,
    solver: dfx.AbstractSolver | str = ExplicitHeun(),
    schedule: AbstractSchedule | str = Geometric(),
) -> Gaussian:
    r"""Push a Gaussian exactly through the discretised probability flow of an affine
    denoiser: the probability flow of Karras et al. (2022, eq. 4) with the affine
    denoisers of [H] (Halder, arXiv 2411.17807), one per noise level.

    With $D(y; \sigma) = W_\sigma y + b_\sigma$ the EDM field
    $dy/d\sigma = (y - D(y; \sigma))/\sigma = F_\sigma y + g_\sigma$ is affine in $y$, so
    every Euler or Heun step from $\sigma_i$ to $\sigma_{i+1}$ ($h = \sigma_{i+1} - \sigma_i$)
    is an affine map $y \mapsto A_i y + c_i$:

    $$\text{Euler: } A_i = I + h F_{\sigma_i}, \quad c_i = h g_{\sigma_i}; \qquad
    \text{Heun: } A_i = I + \tfrac h2 \big(F_{\sigma_i} + F_{\sigma_{i+1}}(I + h F_{\sigma_i})\big),
    \quad c_i = \tfrac h2 \big(g_{\sigma_i} + h F_{\sigma_{i+1}} g_{\sigma_i}
    + g_{\sigma_{i+1}}\big).$$

    A Gaussian start $\mathcal{N}(\mu, \Sigma)$ leaves as $\mathcal{N}(A\mu + c, A \Sigma A^\top)$:
    the law of [`jaxflow.flows.probability_flow`][]'s endpoints on the same grid, with no
    sampling error. Differentiable in the start, the denoiser and the noise levels.

    **Main arguments:**

    - `denoiser`: an [`jaxflow.denoisers.AffineDenoiser`][] or a
      [`jaxflow.denoisers.PiecewiseAffine`][] (fitted on the same grid, so that every
      stage evaluates at a fitted level).
    - `start`: the law of $y(\sigma_{\max})$, a [`jaxflow.data.Gaussian`][], e.g. from
      [`jaxflow.data.ve_start`][].
    - `sigma_max`, `sigma_min`: the noise levels to integrate between.
    - `steps`: the number of solver steps. Default 64.

    **Other arguments:**

    - `solver`: `diffrax.Euler()`, `diffrax.Heun()` or [`jaxflow.flows.ExplicitHeun`][]`()`
      (the default; the same method as `diffrax.Heun`), or the aliases `"euler"`, `"heun"`.
    - `schedule`: an [`jaxflow.flows.AbstractSchedule`][] or its alias, as in
      [`jaxflow.flows.probability_flow`][]; default [`jaxflow.flows.Geometric`][]`()`.

    **Returns:** the law of $y(\sigma_{\min})$, a [`jaxflow.data.Gaussian`][].

    **Raises:** `ValueError` for another solver, a non-Gaussian start, a denoiser of
    another dimension, a `steps` that is not a positive int, or concrete noise levels
    unless $\sigma_{\max} > \sigma_{\min} > 0$ (an `EquinoxRuntimeError` for traced
    ones); `TypeError` for a denoiser of another dtype.

    **Example:** the exact KL divergence of a 16-step flow with noise-averaged affine
    denoisers, and its gradient with respect to $\sigma_{\max}$:

    ```python
    import jax, jax.numpy as jnp, jax.random as jr
    import jaxflow

    jax.config.update("jax_enable_x64", True)
    d, n, steps, sigma_min = 20, 60, 16, 0.002
    p = jaxflow.data.Gaussian.isotropic(d, mean=10.0)
    x0 = p.sample(n, key=jr.key(0))

    def kl(sigma_max):
        grid = jaxflow.flows.Karras().grid(sigma_max, jnp.asarray(sigma_min), steps)
        denoiser = jaxflow.training.wiener_piecewise_affine(x0, grid)
        start = jaxflow.data.ve_start(x0, sigma_max=sigma_max)
        q = jaxflow.flows.gaussian_probability_flow(
            denoiser, start, sigma_max=sigma_max, sigma_min=sigma_min, steps=steps,
            schedule="karras",
        )
        return jaxflow.estimators.kl_divergence(q, p)

    value, slope = jax.value_and_grad(kl)(jnp.asarray(80.0))
    ```
    """
    if not isinstance(start, Gaussian):
        raise ValueError(f"`start` must be a `jaxflow.data.Gaussian`, got {type(start).__name__}.")
    if not isinstance(denoiser, AbstractAffineDenoiser):
        raise ValueError(
            "`denoiser` must be an `AffineDenoiser` or `PiecewiseAffine`, "
            f"got {type(denoiser).__name__}."
        )
    solver = as_solver(solver)
    if not isinstance(solver, _EULER + _HEUN):
        raise ValueError(
            f"`solver` must be 'euler' or 'heun' for exact propagation, got {solver!r}."
        )
    heun = isinstance(solver, _HEUN)
    check_gaussian(start, "start")
    dtype = start.mean.dtype
    d = start.mean.shape[-1]
    if denoiser.bias.shape[-1] != d:
        raise ValueError(
            f"`denoiser` has dimension {denoiser.bias.shape[-1]} but `start` has dimension {d}."
        )
    check_same_dtype(start.mean, "start", denoiser.bias, "denoiser")
    steps = check_int(steps, "steps", minimum=1)
    schedule = as_schedule(schedule)
    sigma_max, sigma_min = _check_levels(sigma_max, sigma_min, dtype, "gaussian_probability_flow")
    return _gaussian_probability_flow(denoiser, start, sigma_max, sigma_min, steps, schedule, heun)


@eqx.filter_jit
def _gaussian_probability_flow(denoiser, start, sigma_max, sigma_min, steps: int, schedule, heun):
    grid = schedule.grid(sigma_max, sigma_min, steps)
    return propagate_on_grid(denoiser, start, grid, heun=heun)


def propagate_on_grid(
    denoiser: AbstractAffineDenoiser,
    start: Gaussian,
    grid: Float[Array, " levels"],
    *,
    heun: bool = True,
) -> Gaussian:
    r"""[`jaxflow.flows.gaussian_probability_flow`][] on an explicit decreasing grid of
    noise levels (one Euler or Heun step between neighbours).

    A repeated level is a step of length zero, which is exactly the identity map
    ($A = I$, $c = 0$): grids for different numbers of steps, padded to one length by
    repeating $\sigma_{\min}$, then share one compilation.
    """

    def step(carry, levels):
        mean, cov = carry
        a, c = _step_map(denoiser, levels[0], levels[1], heun)
        cov = a @ cov @ a.T
        return (a @ mean + c, 0.5 * (cov + cov.T)), None

    (mean, cov), _ = jax.lax.scan(
        step, (start.mean, start.cov), jnp.stack([grid[:-1], grid[1:]], -1)
    )
    return Gaussian(mean, cov)
