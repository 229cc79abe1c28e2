import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from ..data import Gaussian
from ..denoisers import AffineDenoiser, PiecewiseAffine
from ._integrate import as_solver
from ._probability import _check_levels
from ._schedules import AbstractSchedule, as_schedule


def _field(denoiser: AffineDenoiser | PiecewiseAffine, sigma: Float[Array, ""]):
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


@eqx.filter_jit
def gaussian_probability_flow(
    denoiser: AffineDenoiser | PiecewiseAffine,
    start: Gaussian,
    *,
    sigma_max: Float[ArrayLike, ""],
    sigma_min: Float[ArrayLike, ""],
    steps: int = 64,
    solver: str | dfx.AbstractSolver = "heun",
    schedule: str | AbstractSchedule = "geometric",
) -> Gaussian:
    r"""Push a Gaussian exactly through the discretised probability flow of an affine
    denoiser (SCIENCE.md Z4, H4).

    With $D(y; \sigma) = W_\sigma y + b_\sigma$ the EDM field
    $dy/d\sigma = (y - D(y; \sigma))/\sigma = F_\sigma y + g_\sigma$ is affine in $y$, so
    every Euler or Heun step from $\sigma_i$ to $\sigma_{i+1}$ ($h = \sigma_{i+1} - \sigma_i$)
    is an affine map $y \mapsto A_i y + c_i$:

    $$\text{Euler: } A_i = I + h F_{\sigma_i}, \quad c_i = h g_{\sigma_i}; \qquad
    \text{Heun: } A_i = I + \tfrac h2 \big(F_{\sigma_i} + F_{\sigma_{i+1}}(I + h F_{\sigma_i})\big),
    \quad c_i = \tfrac h2 \big(g_{\sigma_i} + h F_{\sigma_{i+1}} g_{\sigma_i} + g_{\sigma_{i+1}}\big).$$

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

    - `solver`: `"euler"` or `"heun"` (default), or a `diffrax.Euler`/`diffrax.Heun`.
    - `schedule`: as in [`jaxflow.flows.probability_flow`][]; default `"geometric"`.

    **Returns:** the law of $y(\sigma_{\min})$, a [`jaxflow.data.Gaussian`][].

    **Raises:** `ValueError` for another solver or a non-Gaussian start; an
    `EquinoxRuntimeError` unless $\sigma_{\max} > \sigma_{\min} > 0$.
    """
    if not isinstance(start, Gaussian):
        raise ValueError(f"`start` must be a `jaxflow.data.Gaussian`, got {type(start).__name__}.")
    if not isinstance(denoiser, AffineDenoiser | PiecewiseAffine):
        raise ValueError(
            f"`denoiser` must be an `AffineDenoiser` or `PiecewiseAffine`, got {type(denoiser).__name__}."
        )
    solver = as_solver(solver)
    if type(solver) not in (dfx.Euler, dfx.Heun):
        raise ValueError(f"`solver` must be 'euler' or 'heun' for exact propagation, got {solver!r}.")
    heun = type(solver) is dfx.Heun
    dtype = start.mean.dtype
    sigma_max, sigma_min = _check_levels(sigma_max, sigma_min, dtype)
    grid = as_schedule(schedule).grid(sigma_max, sigma_min, steps)

    def step(carry, levels):
        mean, cov = carry
        a, c = _step_map(denoiser, levels[0], levels[1], heun)
        cov = a @ cov @ a.T
        return (a @ mean + c, 0.5 * (cov + cov.T)), None

    (mean, cov), _ = jax.lax.scan(step, (start.mean, start.cov), jnp.stack([grid[:-1], grid[1:]], -1))
    return Gaussian(mean, cov)
