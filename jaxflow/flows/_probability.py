from collections.abc import Callable

import diffrax as dfx
import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._checks import (
    check_denoiser,
    check_int,
    check_optional_int,
    check_ordered_within,
    check_positive,
    is_concrete,
)
from .._custom_types import Point, Sigma
from ..data import GaussianStarts
from ._heun import ExplicitHeun
from ._integrate import as_controller, as_solver, batch_dim, check_batch, integrate, uses_grid
from ._schedules import AbstractSchedule, as_schedule, Geometric
from ._solution import FlowSolution


def edm_vector_field(sigma: Sigma, y: Point, denoiser: Callable) -> Point:
    r"""The probability-flow ODE in EDM form, $dy/d\sigma = (y - D(y; \sigma)) / \sigma$
    (Karras et al. 2022, eq. 4 with $s(t) = 1$, $\sigma(t) = t$)."""
    return (y - denoiser(y, sigma)) / sigma


def _check_levels(sigma_max, sigma_min, dtype, who: str = "probability_flow"):
    sigma_max = jnp.asarray(sigma_max, dtype)
    sigma_min = jnp.asarray(sigma_min, dtype)
    if sigma_max.ndim or sigma_min.ndim:
        raise ValueError("`sigma_max` and `sigma_min` must be scalars; vmap over a sweep.")
    check_positive(sigma_min, "sigma_min")
    check_positive(sigma_max, "sigma_max")
    if is_concrete(sigma_max) and is_concrete(sigma_min):
        if not float(sigma_max) > float(sigma_min):
            raise ValueError(
                f"`sigma_max` must exceed `sigma_min`, got sigma_max={float(sigma_max)} and "
                f"sigma_min={float(sigma_min)}; the flow runs from sigma_max down to sigma_min."
            )
        return sigma_max, sigma_min
    sigma_max = eqx.error_if(
        sigma_max,
        ~((sigma_max > sigma_min) & (sigma_min > 0) & jnp.isfinite(sigma_max)),
        f"{who} needs finite sigma_max > sigma_min > 0.",
    )
    return sigma_max, sigma_min


def probability_flow(
    denoiser: Callable[[Point, Sigma], Point],
    y0: Float[Array, "batch d"] | GaussianStarts,
    *,
    sigma_max: Float[ArrayLike, ""],
    sigma_min: Float[ArrayLike, ""],
    steps: int = 64,
    solver: dfx.AbstractSolver | str = ExplicitHeun(),
    schedule: AbstractSchedule | str = Geometric(),
    stepsize_controller: dfx.AbstractStepSizeController = dfx.ConstantStepSize(),
    save_sigmas: Float[ArrayLike, " save"] | None = None,
    chunk_size: int | None = None,
    max_steps: int = 4096,
    throw: bool = True,
    progress: bool = False,
) -> FlowSolution:
    r"""Integrate the variance-exploding probability flow from $\sigma_{\max}$ down to
    $\sigma_{\min}$ for a batch of starts.

    The ODE is the EDM form of the probability flow (Karras et al. 2022, NeurIPS,
    arXiv 2206.00364, eq. 4 with $s(t) = 1$, $\sigma(t) = t$):

    $$\frac{dy}{d\sigma} = \frac{y - D(y; \sigma)}{\sigma}, \qquad
    y(\sigma_{\max}) = y_0.$$

    With $r = \ln(\sigma_{\max}/\sigma)$ it is the score flow $dy/dr = D(y; \sigma(r)) - y$
    with a denoiser that sharpens as $\sigma$ falls, run for the finite time
    $R = \ln(\sigma_{\max}/\sigma_{\min})$: the early stopping by the scheduler of
    [Z] (Zeno et al., ICML 2025, arXiv 2506.19031, Sec. 4). The schedule only
    reparametrises time; $\sigma_{\max}$, $\sigma_{\min}$ and where the steps fall matter.

    Differentiable (`jax.grad`, `eqx.filter_grad`) in `y0`, the noise levels and the
    denoiser's arrays, and usable under `jax.jit` and `jax.vmap`.

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
    - `steps`: the number of fixed steps on the schedule's grid. Default 64. Unused by
        an adaptive `stepsize_controller`.

    **Other arguments:**

    - `solver`: a `diffrax.AbstractSolver`. Default
        [`jaxflow.flows.ExplicitHeun`][]`()`: Heun's method, EDM's second-order sampler
        (Karras et al. 2022, Algorithm 1). The strings `"euler"`, `"heun"` and `"tsit5"`
        are aliases of `diffrax.Euler()`, `ExplicitHeun()` and `diffrax.Tsit5()`;
        `"tsit5"` with the default controller also means adaptive steps with
        `diffrax.PIDController(rtol=1e-6, atol=1e-6, pcoeff=0.3, icoeff=0.4)`.
    - `schedule`: the grid of noise levels for fixed steps, an
        [`jaxflow.flows.AbstractSchedule`][]. Default [`jaxflow.flows.Geometric`][]`()`
        (uniform steps in $r$). The strings `"geometric"` and `"karras"` (or `"edm"`:
        [`jaxflow.flows.Karras`][]`()`, $\rho = 7$) are aliases.
    - `stepsize_controller`: how the solver steps, as in `diffrax.diffeqsolve`.
        Default `diffrax.ConstantStepSize()`: `steps` fixed steps on the schedule's grid
        (constant in the schedule's parametrisation of $\sigma$). `diffrax.StepTo(ts)`
        steps on `ts` (decreasing from $\sigma_{\max}$ to $\sigma_{\min}$; `steps` and
        `schedule` unused). An adaptive controller such as
        `diffrax.PIDController(rtol=..., atol=...)` adapts the steps of an adaptive
        solver within `max_steps`.
    - `save_sigmas`: noise levels (decreasing, inside the interval) at which to save the
        trajectory, for plots; no other step is stored. Default: endpoints only.
    - `chunk_size`: solve at most this many starts at once; memory stays flat in the
        batch size and the endpoints are bitwise identical to one unchunked solve.
        Default: one chunk.
    - `max_steps`: the adaptive controller's step budget. Default 4096.
    - `throw`: whether to raise if any trajectory fails (default `True`), as in
        `diffrax.diffeqsolve`; the check is part of the traced program, so it also works
        under `jax.jit`. Under `jax.vmap`, or to keep the rest of a batch, pass
        `throw=False` and read each trajectory's `result`.
    - `progress`: show a progress bar over chunks.

    **Returns:**

    A [`jaxflow.flows.FlowSolution`][]; `ys` are the endpoints $y(\sigma_{\min})$ and
    `result` the status of each trajectory, a [`jaxflow.flows.RESULTS`][]:
    `max_steps_reached` where an adaptive solve ran out of steps, `nonfinite_state`
    where a saved state is inf or NaN.

    **Raises:**

    - `ValueError`/`TypeError` at trace time for a malformed, empty or non-finite `y0`,
        a denoiser that does not map a point of `y0` to a point of the same shape and
        dtype, a count (`steps`, `chunk_size`, `max_steps`) that is not a positive int,
        `save_sigmas` outside the interval, or another malformed option;
    - `ValueError` for concrete noise levels unless $\sigma_{\max} > \sigma_{\min} > 0$
        (finite), `equinox.EquinoxRuntimeError` for traced ones;
    - with `throw=True`, `equinox.EquinoxRuntimeError` (a `RuntimeError`) if a
        trajectory failed, with the message of its `result`. Under `eqx.filter_jit` too;
        a plain `jax.jit` re-raises it as a JAX error with the same message.
    """
    check_batch(y0)
    check_denoiser(denoiser, batch_dim(y0), y0.dtype)
    controller = as_controller(stepsize_controller, solver)
    solver = as_solver(solver)
    steps = check_int(steps, "steps", minimum=1)
    chunk_size = check_optional_int(chunk_size, "chunk_size")
    max_steps = check_int(max_steps, "max_steps", minimum=1)
    sigma_max, sigma_min = _check_levels(sigma_max, sigma_min, y0.dtype)
    check_ordered_within(
        save_sigmas, sigma_max, sigma_min, "save_sigmas", interval="sigma_max down to sigma_min"
    )
    if uses_grid(controller):
        controller = dfx.StepTo(ts=as_schedule(schedule).grid(sigma_max, sigma_min, steps))
    return integrate(
        edm_vector_field,
        denoiser,
        y0,
        t0=sigma_max,
        t1=sigma_min,
        solver=solver,
        stepsize_controller=controller,
        save_ts=save_sigmas,
        max_steps=max_steps,
        chunk_size=chunk_size,
        progress=progress,
        throw=throw,
        desc="probability flow",
    )
