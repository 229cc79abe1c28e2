from collections.abc import Callable

import diffrax as dfx
import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._custom_types import Point, Sigma
from ..data import GaussianStarts
from ._integrate import as_solver, check_batch, integrate, uses_grid
from ._schedules import AbstractSchedule, as_schedule
from ._solution import FlowSolution


def edm_vector_field(sigma: Sigma, y: Point, denoiser: Callable) -> Point:
    r"""The probability-flow ODE in EDM form, $dy/d\sigma = (y - D(y; \sigma)) / \sigma$."""
    return (y - denoiser(y, sigma)) / sigma


def _check_levels(sigma_max, sigma_min, dtype):
    sigma_max = jnp.asarray(sigma_max, dtype)
    sigma_min = jnp.asarray(sigma_min, dtype)
    if sigma_max.ndim or sigma_min.ndim:
        raise ValueError("`sigma_max` and `sigma_min` must be scalars; vmap over a sweep.")
    sigma_max = eqx.error_if(
        sigma_max,
        ~((sigma_max > sigma_min) & (sigma_min > 0)),
        "probability_flow needs sigma_max > sigma_min > 0.",
    )
    return sigma_max, sigma_min


def probability_flow(
    denoiser: Callable[[Point, Sigma], Point],
    y0: Float[Array, "batch d"] | GaussianStarts,
    *,
    sigma_max: Float[ArrayLike, ""],
    sigma_min: Float[ArrayLike, ""],
    steps: int = 64,
    solver: str | dfx.AbstractSolver = "heun",
    schedule: str | AbstractSchedule = "geometric",
    save_sigmas: Float[ArrayLike, " save"] | None = None,
    chunk_size: int | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-6,
    max_steps: int = 4096,
    throw: bool = True,
    progress: bool = False,
) -> FlowSolution:
    r"""Integrate the variance-exploding probability flow from $\sigma_{\max}$ down to
    $\sigma_{\min}$ for a batch of starts (SCIENCE.md Z4; Karras et al. 2022, eq. 4):

    $$\frac{dy}{d\sigma} = \frac{y - D(y; \sigma)}{\sigma}.$$

    With $r = \ln(\sigma_{\max}/\sigma)$ this is the score flow $dy/dr = D(y; \sigma(r)) - y$
    with a denoiser that sharpens as $\sigma$ falls, run for the finite time
    $R = \ln(\sigma_{\max}/\sigma_{\min})$: [Z]'s early stopping by the scheduler.

    **Main arguments:**

    - `denoiser`: any callable `(y, sigma) -> x_hat` on one point of shape `(d,)`: a
      [`jaxflow.denoisers.AbstractDenoiser`][], a user's `eqx.Module` or a function.
      The solve compiles once per denoiser *structure*: modules with the same shapes
      share a compilation whatever their weights, but a plain function is part of the
      compiled program, so a new function object (a fresh `lambda` or closure on each
      call) compiles again. Wrap closed-over arrays in an `eqx.Module` to avoid it.
    - `y0`: the starts $y(\sigma_{\max})$, shape `(batch, d)`, or a
      [`jaxflow.data.GaussianStarts`][] drawn chunk by chunk.
    - `sigma_max`, `sigma_min`: the noise levels to integrate between, $\sigma_{\max} >
      \sigma_{\min} > 0$. JAX scalars, so a sweep does not recompile.
    - `steps`: the number of solver steps on the schedule's grid (fixed-grid solvers), or
      the hint for the first step (adaptive ones). Default 64.

    **Other arguments:**

    - `solver`: `"euler"`, `"heun"` (EDM's second-order method, the default), `"tsit5"`
      (adaptive, with a PID controller), or any `diffrax.AbstractSolver`.
    - `schedule`: `"geometric"` (default) or `"karras"` ($\rho = 7$), or an
      [`jaxflow.flows.AbstractSchedule`][]. Used by the fixed-grid solvers.
    - `save_sigmas`: noise levels (decreasing, inside the interval) at which to save the
      trajectory, for plots; no other step is stored. Default: endpoints only.
    - `chunk_size`: solve at most this many starts at once; memory stays flat in the batch
      size and the endpoints are identical to one unchunked solve. Default: one chunk.
    - `rtol`, `atol`, `max_steps`: the adaptive solver's tolerances and step budget.
    - `throw`: raise if any trajectory fails (default); else read `result` per trajectory.
    - `progress`: show a progress bar over chunks.

    **Returns:** a [`jaxflow.flows.FlowSolution`][]; `ys` are the endpoints $y(\sigma_{\min})$.

    **Raises:** `ValueError`/`TypeError` for a malformed `y0` or option; an
    `EquinoxRuntimeError` unless $\sigma_{\max} > \sigma_{\min} > 0$; `RuntimeError` for
    failed trajectories when `throw=True`.
    """
    check_batch(y0)
    solver = as_solver(solver)
    sigma_max, sigma_min = _check_levels(sigma_max, sigma_min, y0.dtype)
    grid = as_schedule(schedule).grid(sigma_max, sigma_min, steps) if uses_grid(solver) else None
    return integrate(
        edm_vector_field,
        denoiser,
        y0,
        t0=sigma_max,
        t1=sigma_min,
        grid=grid,
        solver=solver,
        rtol=rtol,
        atol=atol,
        save_ts=save_sigmas,
        max_steps=max_steps,
        chunk_size=chunk_size,
        progress=progress,
        throw=throw,
        desc="probability flow",
    )
