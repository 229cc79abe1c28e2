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
from ._solution import FlowSolution


def score_vector_field(t, y: Point, args) -> Point:
    r"""The score flow at a fixed noise level, $dy/dt = D(y; \sigma) - y = \sigma^2 s(y)$,
    with `args = (denoiser, sigma)`."""
    del t
    denoiser, sigma = args
    return denoiser(y, sigma) - y


def score_flow(
    denoiser: Callable[[Point, Sigma], Point],
    y0: Float[Array, "batch d"] | GaussianStarts,
    *,
    sigma: Float[ArrayLike, ""],
    t1: Float[ArrayLike, ""],
    steps: int = 256,
    solver: dfx.AbstractSolver | str = ExplicitHeun(),
    stepsize_controller: dfx.AbstractStepSizeController = dfx.ConstantStepSize(),
    save_ts: Float[ArrayLike, " save"] | None = None,
    chunk_size: int | None = None,
    max_steps: int = 4096,
    throw: bool = True,
    progress: bool = False,
) -> FlowSolution:
    r"""Integrate the score flow at a fixed noise level $\sigma$ from time 0 to $t_1$ for a
    batch of starts.

    The ODE is gradient ascent on the log-density smoothed at level $\sigma$, written
    with Tweedie's formula $D(y; \sigma) = y + \sigma^2 \nabla \log p_\sigma(y)$ ([Z]:
    Zeno et al., ICML 2025, arXiv 2506.19031, Sec. 4):

    $$\frac{dy}{dt} = D(y; \sigma) - y = \sigma^2 \nabla \log p_\sigma(y), \qquad y(0) = y_0.$$

    For the min-norm denoiser of orthogonal data ([`jaxflow.denoisers.MinNormOrthogonal`][])
    each hyperbox vertex is a stable point and the flow ends at the nearest one: round
    $u_n \cdot y_0 / L_n$ at 1/2 ([`jaxflow.flows.score_flow_limit`][]).

    **Main arguments:**

    - `denoiser`: any callable `(y, sigma) -> x_hat` on one point of shape `(d,)`, as in
        [`jaxflow.flows.probability_flow`][].
    - `y0`: the starts, shape `(batch, d)`, or a [`jaxflow.data.GaussianStarts`][].
    - `sigma`: the fixed noise level, a JAX scalar.
    - `t1`: the flow time, $t_1 > 0$; the approach to a vertex slows near the
        hyperbox's boundary, so take it long (tens of units).
    - `steps`: the number of uniform fixed steps on $[0, t_1]$. Default 256. Unused by an
        adaptive `stepsize_controller`.

    **Other arguments:**

    - `solver`: a `diffrax.AbstractSolver` or a string alias; default
        [`jaxflow.flows.ExplicitHeun`][]`()`. As in [`jaxflow.flows.probability_flow`][].
    - `stepsize_controller`: default `diffrax.ConstantStepSize()`, `steps` uniform steps;
        or `diffrax.StepTo(ts)` from 0 to $t_1$, or an adaptive controller. As in
        [`jaxflow.flows.probability_flow`][].
    - `save_ts`: times in $(0, t_1)$ at which to save the trajectory. Default: endpoints
        only.
    - `chunk_size`, `max_steps`, `throw`, `progress`: as in
        [`jaxflow.flows.probability_flow`][].

    **Returns:**

    A [`jaxflow.flows.FlowSolution`][]; `ys` are the endpoints $y(t_1)$ and `result` the
    status of each trajectory.

    **Raises:**

    - `ValueError`/`TypeError` at trace time for a malformed `y0`, denoiser or option,
        as in [`jaxflow.flows.probability_flow`][];
    - `ValueError` for a concrete `t1` or `sigma` that is not positive and finite, or
        `save_ts` outside $[0, t_1]$; `equinox.EquinoxRuntimeError` for a traced one;
    - with `throw=True`, `equinox.EquinoxRuntimeError` if a trajectory failed.
    """
    check_batch(y0)
    check_denoiser(denoiser, batch_dim(y0), y0.dtype)
    controller = as_controller(stepsize_controller, solver)
    solver = as_solver(solver)
    steps = check_int(steps, "steps", minimum=1)
    chunk_size = check_optional_int(chunk_size, "chunk_size")
    max_steps = check_int(max_steps, "max_steps", minimum=1)
    dtype = y0.dtype
    sigma = check_positive(jnp.asarray(sigma, dtype), "sigma")
    t1 = check_positive(jnp.asarray(t1, dtype), "t1")
    if not is_concrete(t1) or not is_concrete(sigma):
        t1 = eqx.error_if(
            t1, ~((t1 > 0) & jnp.isfinite(t1) & (sigma > 0)), "score_flow needs t1 > 0, sigma > 0."
        )
    check_ordered_within(save_ts, jnp.zeros((), dtype), t1, "save_ts", interval="0 up to t1")
    if uses_grid(controller):
        controller = dfx.StepTo(ts=jnp.linspace(0.0, 1.0, steps + 1, dtype=dtype) * t1)
    return integrate(
        score_vector_field,
        (denoiser, sigma),
        y0,
        t0=0.0,
        t1=t1,
        solver=solver,
        stepsize_controller=controller,
        save_ts=save_ts,
        max_steps=max_steps,
        chunk_size=chunk_size,
        progress=progress,
        throw=throw,
        desc="score flow",
    )
